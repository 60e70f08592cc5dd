"""Read access to a job dir or dataset wherever it lives: a local folder or a GCS prefix.

Job dirs are self-describing (see docs/contracts.md), so the TUI and CLI read a cloud
job exactly like a local one through this small interface. The GCS implementation lives
in core/vertex/ and is created by `open_store`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class Store(Protocol):
    """A read-mostly view of one folder (local path or gs://bucket/prefix)."""

    uri: str

    def exists(self, rel: str) -> bool: ...
    def read_bytes(self, rel: str) -> bytes: ...
    def read_range(self, rel: str, start: int, end: int | None = None) -> bytes: ...
    def size(self, rel: str) -> int: ...
    def list(self, rel: str = "") -> list[str]:
        """Names (not paths) directly under rel, sorted."""
        ...


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def _p(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def exists(self, rel: str) -> bool:
        return self._p(rel).exists()

    def read_bytes(self, rel: str) -> bytes:
        return self._p(rel).read_bytes()

    def read_range(self, rel: str, start: int, end: int | None = None) -> bytes:
        with open(self._p(rel), "rb") as f:
            f.seek(start)
            return f.read() if end is None else f.read(max(0, end - start))

    def size(self, rel: str) -> int:
        return self._p(rel).stat().st_size

    def list(self, rel: str = "") -> list[str]:
        p = self._p(rel)
        return sorted(x.name for x in p.iterdir()) if p.is_dir() else []


def open_store(uri: str) -> Store:
    if uri.startswith("gs://"):
        from core.vertex.storage import GcsStore  # only when a cloud job is looked at
        return GcsStore(uri)
    return LocalStore(uri)
