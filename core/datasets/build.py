"""The streaming pipeline: tasks -> worker processes -> sharded TFRecords + manifest.

Memory stays bounded whatever the image count: tasks go to the pool in small batches
with at most a fixed window in flight, results come back in order (so the output is
deterministic) as small PNGs, and are written out immediately; only hashes, paths and
two ints per image are kept. Worker processes come from a forkserver (spawn where there
is none) so a threaded parent (the TUI) is never forked.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Generator, Iterable, Iterator, Sequence

from core import atomic
from core.backend import Progress, ProgressFn
from core.datasets import contact_sheet, manifest as manifest_mod
from core.datasets.images import Options, Processed
from core.datasets.tasks import Task, process_batch
from core.datasets.writer import ShardedWriter, example_bytes
from core.errors import GenmlError

BATCH = 8               # tasks per worker call at most ...
BATCH_BYTES = 1 << 20   # ... or fewer when the files are big, so big photos spread over all workers
WINDOW_PER_WORKER = 3   # batches in flight per worker


class Cancelled(GenmlError):
    """The person (or the UI) asked to stop; nothing half-built is left behind."""

    exit_code = 130


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    # Ctrl-C goes to the whole process group; only the parent decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # If the parent is killed (kill -9), die with it rather than linger holding its files.
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _context() -> mp.context.BaseContext:
    """fork when this process has a single thread (the CLI): workers start in milliseconds and
    share the parent's loaded modules. A threaded parent (the TUI) must not fork, so it gets a
    forkserver (spawn where there is none), which starts from a fresh interpreter."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return mp.get_context("fork")
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["core.datasets.images", "core.datasets.demo"])
        return ctx
    return mp.get_context("spawn")


def _batches(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    batch: list[Task] = []
    nbytes = 0
    for t in tasks:
        batch.append(t)
        nbytes += t[3] if t[0] == "file" else 0
        if len(batch) == size or nbytes >= BATCH_BYTES:
            yield batch
            batch, nbytes = [], 0
    if batch:
        yield batch


def _executor(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Cancelled.", "Run the same command again to start over.")


def run_tasks(tasks: Iterable[Task], options: Options, workers: int | None = None,
              cancel: threading.Event | None = None) -> Generator[Processed, None, None]:
    """Process tasks in order; workers=1 processes them in this process (no pool).

    If a worker dies (a decoder crash, the kernel's OOM killer), the batches in flight are
    redone one task at a time in a fresh pool, and the task that kills its worker again is
    reported as skipped: one poisonous file never stops the run.
    """
    workers = workers or default_workers()
    if workers <= 1:
        for batch in _batches(tasks, BATCH):
            _check(cancel)
            yield from process_batch(options, batch)
        return
    pool = _executor(workers)
    ok = False
    try:
        pending: deque[tuple[list[Task], Future[list[Processed]]]] = deque()
        it = _batches(tasks, BATCH)
        window = workers * WINDOW_PER_WORKER
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                else:
                    pending.append((nxt, pool.submit(process_batch, options, nxt)))
            if not pending:
                break
            batch, future = pending.popleft()
            while True:
                _check(cancel)
                try:
                    results = future.result(timeout=0.1)
                    break
                except FutureTimeout:
                    continue
                except BrokenProcessPool:
                    pool.shutdown(wait=True, cancel_futures=True)
                    redo = [batch] + [b for b, _ in pending]
                    pending.clear()
                    results, pool = _isolate(redo[0], options, workers, cancel)
                    pending.extend((b, pool.submit(process_batch, options, b)) for b in redo[1:])
                    break
            yield from results
        ok = True
    finally:
        if ok:
            pool.shutdown(wait=True)
        else:
            _kill(pool)


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop now (Ctrl-C, cancel, an error): waiting for running batches could take long, and
    a KeyboardInterrupt inside a Future wait can leave the executor unable to join cleanly."""
    processes = list(getattr(pool, "_processes", {}).values())
    for p in processes:
        try:
            p.terminate()
        except (OSError, AttributeError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.join(timeout=5)


def _isolate(batch: list[Task], options: Options, workers: int,
             cancel: threading.Event | None) -> tuple[list[Processed], ProcessPoolExecutor]:
    """Run the tasks of a batch that broke the pool one by one; returns a healthy pool."""
    out: list[Processed] = []
    pool = _executor(workers)
    for task in batch:
        _check(cancel)
        try:
            out += pool.submit(process_batch, options, [task]).result()
        except BrokenProcessPool:
            pool.shutdown(wait=True)
            rel = task[2] if task[0] == "file" else f"demo image {task[2]}"
            out.append(Processed(rel=str(rel), reason="crashed the image decoder (or ran out of memory)"))
            pool = _executor(workers)
    return out, pool


def build(folder: Path, tasks: Iterable[Task], total: int, options: Options, *, name: str, source: str,
          pre_skipped: Sequence[dict[str, str]] = (), ignored: int = 0,
          progress: ProgressFn | None = None, cancel: threading.Event | None = None,
          workers: int | None = None) -> dict[str, Any]:
    """Write a complete dataset into `folder` (which must be empty); return its manifest.

    The manifest is written last, so an interrupted build leaves a folder that no reader
    treats as a dataset; the caller builds in a temporary folder and renames it into place.
    """
    folder.mkdir(parents=True, exist_ok=True)
    writers = {s: ShardedWriter(folder, s) for s in ("train", "validation")}
    seen: dict[str, str] = {}
    skipped = list(pre_skipped)
    duplicates: list[dict[str, str]] = []
    stats = manifest_mod.Stats()
    sampler = contact_sheet.Sampler()
    done, last = 0, 0.0
    results = run_tasks(tasks, options, workers, cancel)
    try:
        for p in results:
            done += 1
            if not p.ok:
                skipped.append({"path": p.rel, "reason": p.reason})
            elif p.sha256 in seen:
                duplicates.append({"path": p.rel, "duplicate_of": seen[p.sha256]})
            else:
                seen[p.sha256] = p.rel
                writers[manifest_mod.split_of(p.sha256)].write(example_bytes(p))
                stats.add(p)
                sampler.offer(p.sha256, p.png)
            now = time.monotonic()
            if progress and (now - last > 0.1 or done == total):
                last = now
                progress(Progress("process", done, total, p.rel))
            _check(cancel)
        shards = {s: w.finish() for s, w in writers.items()}
    except BaseException:
        results.close()         # stops the worker pool now, not when garbage is collected
        for w in writers.values():
            w.abort()
        raise
    if progress:
        progress(Progress("finish", done, total, "contact sheet and manifest"))
    sheet = contact_sheet.render(sampler.images())
    if sheet:
        atomic.write_bytes(folder / manifest_mod.CONTACT_SHEET, sheet)
    data = manifest_mod.make(name, source, options, scanned=total + len(pre_skipped), ignored=ignored,
                             shards=shards, counts={s: w.count for s, w in writers.items()},
                             skipped=skipped, duplicates=duplicates, stats=stats)
    atomic.write_json(folder / manifest_mod.MANIFEST, data)
    return data


def file_tasks(root: str, files: Sequence[str], sizes: Sequence[int] | None = None) -> Iterator[Task]:
    for i, rel in enumerate(files):
        yield ("file", root, rel, sizes[i] if sizes else 0)


def demo_tasks(count: int, seed: int = 0, size: int | None = None) -> Iterator[Task]:
    from core.datasets.demo import RENDER_SIZE
    for i in range(count):
        yield ("demo", seed, i, size or RENDER_SIZE)
