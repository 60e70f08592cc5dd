"""Writes that survive a crash: temporary name, fsync, rename.

A reader never sees half a file: it sees the old one or the new one.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from core.errors import StorageError
from trainer.sysutil import fsync_path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)   # mkstemp makes 0600; keep the user's umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise storage_error(exc, path) from exc
    fsync_dir(path.parent)


def _read_umask() -> int:
    """os.umask can only be read by setting it; do it once, at import, before threads exist."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
UMASK = _UMASK          # for other writers of temp files (core/batch.py)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


fsync_dir = fsync_path        # the one fsync helper (trainer/sysutil.py); here callers fsync folders


def storage_error(exc: OSError, path: str | os.PathLike[str]) -> StorageError:
    """Turn an OSError into a message that names the file and the way out."""
    if exc.errno == errno.ENOSPC:
        return StorageError(f"The disk is full while writing {path}.",
                            "Free some space (or point GENML_HOME at a bigger disk) and run the command again; "
                            "nothing was half-written.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"Permission denied writing {path}.",
                            "Check the folder's permissions or set GENML_HOME to a folder you own.")
    if exc.errno == errno.EROFS:
        return StorageError(f"{path} is on a read-only file system.", "Set GENML_HOME to a writable folder.")
    return StorageError(f"Could not write {path}: {exc.strerror or exc}.", "Check the disk and try again.")
