"""Sharded TFRecord writing with names that only exist once a shard is complete.

Shards are written as `SPLIT-NNNNN.tfrecord.partial` and renamed to the contract's
`SPLIT-NNNNN-of-MMMMM.tfrecord` by `finish()`, after an fsync: the total is only known at
the end (we stream), and a reader globbing `*.tfrecord` can never pick up half a shard.
The whole dataset folder is also built aside and renamed into place (see catalog.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from core.atomic import fsync_dir, storage_error
from core.datasets.images import Processed
from core.datasets.tfrecord import encode_example, frame

SHARD_RECORDS = 1000
SHARD_BYTES = 64 * 1024 * 1024


def example_bytes(p: Processed) -> bytes:
    """The tf.train.Example of docs/contracts.md for one stored image."""
    return encode_example({
        "image/encoded": p.png,
        "image/format": b"png",
        "image/height": p.height,
        "image/width": p.width,
        "image/filename": p.rel.encode("utf-8", "backslashreplace"),
        "image/sha256": p.sha256.encode("ascii"),
    })


class ShardedWriter:
    """Appends examples of one split, rolling over to a new shard at ~1000 records or ~64 MB."""

    def __init__(self, folder: Path, split: str, max_records: int = SHARD_RECORDS,
                 max_bytes: int = SHARD_BYTES) -> None:
        self.folder, self.split = folder, split
        self.max_records, self.max_bytes = max_records, max_bytes
        self.count = 0
        self._partials: list[Path] = []
        self._file: BinaryIO | None = None
        self._records = self._bytes = 0

    def write(self, record: bytes) -> None:
        if self._file is None or self._records >= self.max_records or self._bytes >= self.max_bytes:
            self._roll()
        data = frame(record)
        assert self._file is not None
        try:
            self._file.write(data)
        except OSError as exc:
            raise storage_error(exc, self._partials[-1]) from exc
        self._records += 1
        self._bytes += len(data)
        self.count += 1

    def _roll(self) -> None:
        self._close()
        path = self.folder / f"{self.split}-{len(self._partials):05d}.tfrecord.partial"
        try:
            self._file = open(path, "wb")
        except OSError as exc:
            raise storage_error(exc, path) from exc
        self._partials.append(path)
        self._records = self._bytes = 0

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
                self._file = None

    def finish(self) -> list[str]:
        """Close, and give every shard its final name. An empty split gets one empty shard
        so readers that glob `SPLIT-*.tfrecord` always find the split."""
        if not self._partials:
            self._roll()
        self._close()
        total = len(self._partials)
        names = []
        for i, partial in enumerate(self._partials):
            name = f"{self.split}-{i:05d}-of-{total:05d}.tfrecord"
            os.replace(partial, self.folder / name)
            names.append(name)
        fsync_dir(self.folder)
        return names

    def abort(self) -> None:
        try:
            self._close()
        except OSError:
            pass
        for p in self._partials:
            try:
                p.unlink()
            except OSError:
                pass
