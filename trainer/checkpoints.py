"""Resume from the newest checkpoint that is whole; make what a resume reads survive a power cut.

A power cut or a full disk can leave the newest `ckpt-N.data-*` truncated, or the
`checkpoint` index file empty (TensorFlow renames it into place without an fsync). Either
used to make every resume fail although older checkpoints were intact. So:

- `repair_index` runs before the CheckpointManager is built (it refuses to start on an
  unreadable index): a damaged index is moved aside and rebuilt from the ckpt-N files.
- `restore_newest` tries the checkpoints newest first and logs which one it used and why
  it passed over the others; a damaged one is renamed `damaged-ckpt-N.*` so it is kept
  for a look but never tried again.
- `fsync_saved` flushes a new checkpoint's files, the index and the folder to disk.

Only TensorFlow and the standard library: the trainer ships alone.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable

import tensorflow as tf

from trainer.sysutil import fsync_path as _fsync

INDEX = "checkpoint"
_CKPT_RE = re.compile(r"ckpt-(\d+)\.index\Z")


def _is_url(path: str) -> bool:
    return "://" in path


def _steps_on_disk(ckpt_dir: str) -> list[int]:
    try:
        names = tf.io.gfile.listdir(ckpt_dir)
    except tf.errors.NotFoundError:
        return []
    return sorted((int(m.group(1)) for n in names if (m := _CKPT_RE.match(n.rstrip("/")))), reverse=True)


def candidates(ckpt_dir: str) -> list[str]:
    """Checkpoint prefixes, newest (highest step) first: what the index lists and what is on disk."""
    return [os.path.join(ckpt_dir, f"ckpt-{n}") for n in _steps_on_disk(ckpt_dir)]


def has_checkpoint(ckpt_dir: str) -> bool:
    return bool(_steps_on_disk(ckpt_dir))


def repair_index(ckpt_dir: str, log: Callable[[str], None]) -> None:
    """If the `checkpoint` index cannot be read, move it aside and write one from the files."""
    path = os.path.join(ckpt_dir, INDEX)
    if not tf.io.gfile.exists(path):
        return
    try:
        state = tf.train.get_checkpoint_state(ckpt_dir)
        if state is not None and state.model_checkpoint_path:
            return
        why = "it names no checkpoint"
    except (ValueError, tf.errors.OpError) as exc:
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    tf.io.gfile.rename(path, path + ".damaged", overwrite=True)
    found = candidates(ckpt_dir)
    if found:
        tf.compat.v1.train.update_checkpoint_state(ckpt_dir, found[0],
                                                   all_model_checkpoint_paths=list(reversed(found)))
        if not _is_url(ckpt_dir):
            _fsync(os.path.join(ckpt_dir, INDEX))
            _fsync(ckpt_dir)
    log(f"checkpoint index {path} was unreadable ({why}); moved to {INDEX}.damaged and rebuilt from "
        f"{len(found)} checkpoint file(s) on disk")


def restore_newest(ckpt: tf.train.Checkpoint, ckpt_dir: str, log: Callable[[str], None],
                   set_aside: bool = True) -> str | None:
    """Restore the newest checkpoint that loads; None if there is none at all.

    Raises ValueError naming every checkpoint and why it failed if none loads (the caller
    turns that into the run's error).
    """
    failures: list[tuple[str, str, BaseException]] = []
    for prefix in candidates(ckpt_dir):
        try:
            ckpt.restore(prefix).assert_existing_objects_matched()
        except (ValueError, AssertionError, IndexError, EOFError, OSError, tf.errors.OpError) as exc:
            failures.append((prefix, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
                             exc))
            continue
        for bad, why, _ in failures:
            moved = set_aside and _set_aside(bad)      # only the chief renames: workers share the dir
            log(f"checkpoint {os.path.basename(bad)} could not be read ({why}); "
                f"{'moved to damaged-' + os.path.basename(bad) + '.*' if moved else 'skipped'}")
        if failures:
            log(f"resumed from the older checkpoint {os.path.basename(prefix)}")
        return prefix
    if failures:
        raise ValueError("no checkpoint in " + ckpt_dir + " could be restored: "
                         + "; ".join(f"{os.path.basename(p)}: {why}" for p, why, _ in failures))
    return None


def _set_aside(prefix: str) -> bool:
    """ckpt-N.index and ckpt-N.data-* -> damaged-ckpt-N.*, so no later resume tries them."""
    folder, base = os.path.split(prefix)
    moved = False
    for f in tf.io.gfile.glob(prefix + ".*"):
        try:
            tf.io.gfile.rename(f, os.path.join(folder, "damaged-" + os.path.basename(f)), overwrite=True)
            moved = True
        except tf.errors.OpError:
            pass
    return moved


def fsync_saved(prefix: str) -> None:
    """fsync a just-saved checkpoint's files, the index and the folder (local paths only:
    object stores have no fsync, and their writes are durable once the call returns)."""
    if _is_url(prefix):
        return
    folder = os.path.dirname(prefix)
    for f in tf.io.gfile.glob(prefix + ".*"):
        _fsync(f)
    _fsync(os.path.join(folder, INDEX))
    _fsync(folder)


__all__: list[Any] = ["candidates", "has_checkpoint", "repair_index", "restore_newest", "fsync_saved"]
