"""Datasets in a local workspace: add, demo, remove, read (called by core/local/backend.py).

A dataset is built in `tmp/dataset-NAME.building` inside the workspace (same file system)
and renamed to `datasets/NAME` only once its manifest is written, then registered. A
Ctrl-C or kill at any moment therefore leaves either nothing or a stale build folder that
the next run for that name deletes before starting over ("cleanly redoes"). A lock file
per name stops two processes building the same name at once.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from core.backend import Progress, ProgressFn
from core.datasets import build as build_mod
from core.datasets import manifest as manifest_mod
from core.datasets.images import Options
from core.errors import AlreadyExists, InvalidInput, InvalidState, NotFound, StorageError
from core.registry import Registry, valid_name
from core.types import Dataset
from core.workspace import Workspace
from trainer.contract import CROPS, DEFAULT_CROP, DEFAULT_IMAGE_SIZE, IMAGE_SIZES

DEMO_SEED = 0


def check_name(name: str) -> None:
    if not valid_name(name, 64):
        raise InvalidInput(f"{name!r} is not a usable dataset name.",
                           "Use letters, digits, '.', '_' or '-' (up to 64), starting with a letter or digit.")


def check_options(crop: str, image_size: int) -> Options:
    if crop not in CROPS:
        raise InvalidInput(f"Unknown crop {crop!r}.", f"Use --crop {' or --crop '.join(CROPS)}.")
    if image_size not in IMAGE_SIZES:
        raise InvalidInput(f"Image size {image_size} is not supported.",
                           f"Use one of {', '.join(map(str, IMAGE_SIZES))} (the sizes the trainer builds).")
    return Options(image_size=image_size, crop=crop)


_BUSY: set[tuple[str, str]] = set()          # (workspace, name) being built by this process
_BUSY_LOCK = threading.Lock()


def _busy(name: str) -> InvalidState:
    return InvalidState(f"Another genml process is building dataset {name!r} right now.",
                        "Wait for it to finish, or stop it, then run this again.")


@contextlib.contextmanager
def _name_lock(ws: Workspace, name: str) -> Iterator[None]:
    """One build per name: a set for threads of this process, a file lock for other processes.
    The file lock is a POSIX record lock (lockf), not flock: it belongs to this process only,
    so forked workers never keep it alive after the parent has died."""
    import fcntl
    key = (str(ws.root), name)
    with _BUSY_LOCK:
        if key in _BUSY:
            raise _busy(name)
        _BUSY.add(key)
    try:
        ws.tmp_dir.mkdir(parents=True, exist_ok=True)
        with open(ws.tmp_dir / f"dataset-{name}.lock", "a") as f:
            try:
                fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise _busy(name) from None
            try:
                yield
            finally:
                fcntl.lockf(f.fileno(), fcntl.LOCK_UN)
    finally:
        with _BUSY_LOCK:
            _BUSY.discard(key)


def _discard(ws: Workspace, folder: Path) -> None:
    """Remove a folder by first renaming it aside, so no reader sees it half-deleted."""
    if not folder.exists():
        return
    trash = ws.tmp_dir / f"trash-{folder.name}-{uuid.uuid4().hex[:8]}"
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _refuse_existing(reg: Registry, name: str) -> None:
    try:
        reg.get_dataset(name)
    except NotFound:
        return
    raise AlreadyExists(f"A dataset named {name!r} already exists.",
                        f"Pick another --name, rebuild it with --replace, or remove it first: genml dataset rm {name}")


def check_unused(reg: Registry, name: str, force: bool = False) -> None:
    """Refuse to remove or rebuild a dataset that a queued or running job reads, unless `force`.

    The trainer reads the dataset folder all through a run (every epoch, every eval), so
    swapping or deleting it under the job fails that job, or worse trains it on two
    different datasets."""
    if force:
        return
    users = [j.id for j in reg.list_jobs() if j.dataset == name and not j.state.terminal]
    if users:
        raise InvalidState(f"Dataset {name!r} is in use by {len(users)} unfinished job(s): {', '.join(users[:5])}.",
                           "Wait for them to finish or cancel them (genml jobs cancel JOB), "
                           "or add --force to go ahead anyway (those jobs will likely fail).")


def _create(ws: Workspace, reg: Registry, name: str, options: Options, *, source: str,
            tasks: Any, total: int, pre_skipped: list[dict[str, str]], ignored: int,
            progress: ProgressFn | None, cancel: threading.Event | None, workers: int | None) -> Dataset:
    building = ws.tmp_dir / f"dataset-{name}.building"
    if building.exists():
        shutil.rmtree(building)          # left by a run that was killed: start over cleanly
    try:
        data = build_mod.build(building, tasks, total, options, name=name, source=source,
                               pre_skipped=pre_skipped, ignored=ignored, progress=progress,
                               cancel=cancel, workers=workers)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    counts = data["counts"]
    if counts["train"] + counts["validation"] == 0:
        shutil.rmtree(building, ignore_errors=True)
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in data["skipped"][:5])
        raise InvalidInput(f"No usable images in {source}" + (f" ({reasons})" if reasons else "") + ".",
                           "Point at a folder of .jpg/.png images at least "
                           f"{options.min_side} px on the short side.")
    final = ws.dataset_dir(name)
    try:
        _discard(ws, final)              # an unregistered leftover of a crash between rename and register
        os.replace(building, final)
    except OSError as exc:
        raise StorageError(f"Could not move the new dataset into {final}: {exc.strerror or exc}.",
                           "Check the workspace folder's permissions and free space.") from exc
    ds = Dataset(name=name, path=str(final), created=data["created"], train_count=counts["train"],
                 validation_count=counts["validation"], skipped_count=counts["skipped"],
                 duplicate_count=counts["duplicates"], crop=options.crop, image_size=options.image_size)
    reg.add_dataset(ds, replace=True)
    return ds


def add(ws: Workspace, reg: Registry, source: Path, name: str, *, crop: str = DEFAULT_CROP,
        image_size: int = DEFAULT_IMAGE_SIZE,
        progress: ProgressFn | None = None, cancel: threading.Event | None = None,
        workers: int | None = None, replace: bool = False, force: bool = False) -> Dataset:
    """Scan `source` and build dataset `name` from it. Refuses an existing name unless
    `replace`, which swaps the new dataset in only once it is complete, so a failed or
    cancelled rebuild keeps the old one (and is refused while a job reads it, unless
    `force`). The source folder is only ever read."""
    check_name(name)
    options = check_options(crop, image_size)
    source = Path(source).expanduser()
    if not source.exists():
        raise NotFound(f"{source} does not exist.", "Give the path of a folder of images.")
    if not source.is_dir():
        raise InvalidInput(f"{source} is not a folder.",
                           "Give the path of a folder of images (it is searched recursively).")
    source = source.resolve()
    if not replace:
        _refuse_existing(reg, name)
    else:
        check_unused(reg, name, force)
    with _name_lock(ws, name):
        if progress:
            progress(Progress("scan", 0, 0, str(source)))
        from core.datasets.scan import scan
        found = scan(source, (lambda n: progress(Progress("scan", n, 0, str(source)))) if progress else None)
        if not found.files and not found.skipped:
            raise InvalidInput(f"No images found in {source}.",
                               "genml looks for .jpg, .jpeg and .png files (any case, in sub-folders too).")
        return _create(ws, reg, name, options, source=str(source),
                       tasks=build_mod.file_tasks(str(source), found.files, found.sizes), total=len(found.files),
                       pre_skipped=found.skipped, ignored=found.ignored, progress=progress, cancel=cancel,
                       workers=workers)


def demo(ws: Workspace, reg: Registry, name: str = "demo", count: int = 2000, *,
         progress: ProgressFn | None = None, cancel: threading.Event | None = None,
         image_size: int = DEFAULT_IMAGE_SIZE, workers: int | None = None, replace: bool = False,
         force: bool = False) -> Dataset:
    """A procedural dataset (one coloured shape per picture on a plain background), made offline and deterministic."""
    check_name(name)
    options = check_options(DEFAULT_CROP, image_size)
    if not 1 <= count <= 1_000_000:
        raise InvalidInput(f"--count {count} is out of range.", "Use a count from 1 to 1,000,000.")
    if not replace:
        _refuse_existing(reg, name)
    else:
        check_unused(reg, name, force)
    with _name_lock(ws, name):
        return _create(ws, reg, name, options, source=f"demo:seed={DEMO_SEED}",
                       tasks=build_mod.demo_tasks(count, DEMO_SEED), total=count, pre_skipped=[],
                       ignored=0, progress=progress, cancel=cancel, workers=workers)


def remove(ws: Workspace, reg: Registry, name: str, force: bool = False) -> None:
    ds = reg.get_dataset(name)           # NotFound with a hint when there is none
    check_unused(reg, name, force)
    with _name_lock(ws, name):
        folder = Path(ds.path)
        if folder.exists() and folder.parent == ws.datasets_dir:
            _discard(ws, folder)
        reg.remove_dataset(name)


def manifest(ws: Workspace, reg: Registry, name: str) -> dict[str, Any]:
    ds = reg.get_dataset(name)
    try:
        return manifest_mod.read(Path(ds.path))
    except (OSError, ValueError) as exc:
        raise StorageError(f"The dataset {name!r} at {ds.path} has no readable manifest ({exc}).",
                           f"Rebuild it: genml dataset rm {name}, then add it again.") from exc


def contact_sheet(ws: Workspace, reg: Registry, name: str) -> bytes | None:
    ds = reg.get_dataset(name)
    try:
        return (Path(ds.path) / manifest_mod.CONTACT_SHEET).read_bytes()
    except OSError:
        return None


def build_folder(out_dir: Path, *, count: int | None = None, source: Path | None = None,
                 image_size: int = DEFAULT_IMAGE_SIZE, crop: str = DEFAULT_CROP, name: str = "demo",
                 workers: int | None = None) -> Path:
    """Build a dataset folder outside any workspace/registry (tests, benchmarks, the trainer's
    own checks): from `source`, or `count` demo images. Returns the folder."""
    options = check_options(crop, image_size)
    out_dir = Path(out_dir)
    if (out_dir / manifest_mod.MANIFEST).exists():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + f".building-{os.getpid()}-{time.monotonic_ns()}")
    if source is not None:
        from core.datasets.scan import scan
        found = scan(source)
        tasks, total = build_mod.file_tasks(str(Path(source).resolve()), found.files, found.sizes), len(found.files)
        pre, ignored, src = found.skipped, found.ignored, str(Path(source).resolve())
    else:
        tasks, total = build_mod.demo_tasks(count or 0, DEMO_SEED), count or 0
        pre, ignored, src = [], 0, f"demo:seed={DEMO_SEED}"
    try:
        build_mod.build(tmp, tasks, total, options, name=name, source=src, pre_skipped=pre,
                        ignored=ignored, workers=workers)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
