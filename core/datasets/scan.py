"""Find the images under a folder, in a stable order, without ever getting stuck.

Symlinks are followed (people link photo folders together), so loops are detected by the
(device, inode) of every folder on the current path. Names starting with a dot are
ignored: they are hidden files, version-control folders and macOS `._` sidecars, never
pictures a person meant to train on. Files whose extension no Pillow plugin claims are
counted as ignored, not reported one by one (folders hold sidecars, notes, videos).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterator

from PIL import Image

from core.datasets.images import MAX_FILE_BYTES


def image_extensions() -> frozenset[str]:
    """Every extension Pillow can open (.jpg .jpeg .png first among them), lower case."""
    Image.init()
    exts = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(exts | {".jpg", ".jpeg", ".png"})


@dataclass
class ScanResult:
    """Candidates (relative POSIX paths) plus what was skipped while walking."""

    files: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)      # bytes, parallel to files (for batching)
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0


def scan(root: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> ScanResult:
    result = ScanResult()
    for rel, reason, size in walk(os.fspath(root)):
        if reason is None:
            result.ignored += 1
        elif reason:
            result.skipped.append({"path": rel, "reason": reason})
        else:
            result.files.append(rel)
            result.sizes.append(size)
            if progress and len(result.files) % 500 == 0:
                progress(len(result.files))
    return result


def walk(root: str) -> Iterator[tuple[str, str | None, int]]:
    """Yield (relative path, reason, bytes): "" for a candidate image, a sentence for a skipped
    entry, None for an ignored one. Depth first, names sorted, so the order is stable."""
    exts = image_extensions()
    st = os.stat(root)
    # stack of (folder path, relative prefix, (dev, ino) of the folders above and itself)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [(root, "", frozenset({(st.st_dev, st.st_ino)}))]
    while stack:
        folder, prefix, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            yield (prefix.rstrip("/") or "."), "unreadable folder: permission denied", 0
            continue
        except OSError as exc:
            yield (prefix.rstrip("/") or "."), f"unreadable folder: {exc.strerror or exc}", 0
            continue
        subfolders = []
        for entry in entries:
            rel = prefix + entry.name
            if entry.name.startswith("."):
                yield rel, None, 0
                continue
            is_image_name = os.path.splitext(entry.name)[1].lower() in exts
            try:
                target = os.stat(entry.path)          # follows symlinks
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    yield rel, "symlink loop: the link points back at itself", 0
                elif exc.errno == errno.ENOENT:
                    yield rel, ("broken symlink: its target does not exist" if is_image_name else None), 0
                elif exc.errno in (errno.EACCES, errno.EPERM):
                    yield rel, "unreadable: permission denied", 0
                else:
                    yield rel, f"unreadable: {exc.strerror or exc}", 0
                continue
            if entry.is_dir():
                key = (target.st_dev, target.st_ino)
                if key in ancestors:
                    yield rel, "symlink loop: this folder link points back at a folder that contains it", 0
                else:
                    subfolders.append((entry.path, rel + "/", ancestors | {key}))
            elif entry.is_file() and is_image_name:
                if target.st_size > MAX_FILE_BYTES:
                    yield rel, (f"too large: {target.st_size / 1e6:.0f} MB, above the limit of "
                                f"{MAX_FILE_BYTES / 1e6:.0f} MB per image file"), 0
                else:
                    yield rel, "", target.st_size
            elif is_image_name and not stat.S_ISDIR(target.st_mode):
                yield rel, "not a regular file (a named pipe, device or socket); only image files are read", 0
            else:
                yield rel, None, 0
        stack.extend(reversed(subfolders))
