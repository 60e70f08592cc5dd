"""The dataset half of the Backend protocol, written once for every backend.

Datasets are built and kept on this machine by core/datasets/catalog.py whichever
backend is in use. A backend that keeps a copy elsewhere (Vertex AI mirrors each dataset
to its bucket) overrides the three hooks instead of the seven methods.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from core.backend import ProgressFn
from core.registry import Registry
from core.types import Dataset
from core.workspace import Workspace
from trainer.contract import DEFAULT_CROP, DEFAULT_IMAGE_SIZE


class DatasetMethods:
    ws: Workspace
    registry: Registry

    # ---- hooks (no-ops for a backend that trains where the datasets are) ----------
    def _before_dataset_build(self) -> None:
        """Runs before a build starts: fail early (e.g. an unusable bucket) rather than after it."""

    def _after_dataset_build(self, name: str, progress: ProgressFn | None,
                             cancel: threading.Event | None) -> None:
        """Runs once a dataset is built and registered (e.g. to upload it)."""

    def _before_dataset_remove(self, name: str) -> None:
        """Runs before the local copy is removed (e.g. to delete a cloud copy)."""

    # ---- Backend ------------------------------------------------------------------
    def list_datasets(self) -> list[Dataset]:
        return self.registry.list_datasets()

    def get_dataset(self, name: str) -> Dataset:
        return self.registry.get_dataset(name)

    def dataset_manifest(self, name: str) -> dict[str, Any]:
        from core.datasets import catalog
        return catalog.manifest(self.ws, self.registry, name)

    def contact_sheet(self, name: str) -> bytes | None:
        from core.datasets import catalog
        return catalog.contact_sheet(self.ws, self.registry, name)

    def add_dataset(self, source: Path, name: str, *, crop: str = DEFAULT_CROP,
                    image_size: int = DEFAULT_IMAGE_SIZE,
                    progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                    replace: bool = False, force: bool = False) -> Dataset:
        from core.datasets import catalog
        self._before_dataset_build()
        ds = catalog.add(self.ws, self.registry, Path(source), name, crop=crop, image_size=image_size,
                         progress=progress, cancel=cancel, replace=replace, force=force)
        self._after_dataset_build(name, progress, cancel)
        return ds

    def make_demo_dataset(self, name: str = "demo", count: int = 2000, *, progress: ProgressFn | None = None,
                          cancel: threading.Event | None = None, replace: bool = False,
                          force: bool = False) -> Dataset:
        from core.datasets import catalog
        self._before_dataset_build()
        ds = catalog.demo(self.ws, self.registry, name, count, progress=progress, cancel=cancel, replace=replace,
                          force=force)
        self._after_dataset_build(name, progress, cancel)
        return ds

    def remove_dataset(self, name: str, force: bool = False) -> None:
        """Refused while an unfinished job reads the dataset, unless `force`; checked before
        any hook, so a cloud copy is not deleted either."""
        from core.datasets import catalog
        self.registry.get_dataset(name)
        catalog.check_unused(self.registry, name, force)
        self._before_dataset_remove(name)
        catalog.remove(self.ws, self.registry, name, force=force)
