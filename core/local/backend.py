"""The embedded local backend (skeleton: datasets delegate to core/datasets/catalog.py;
jobs, models and prediction are filled in by the local-backend work, issue 4)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from core import config as config_mod
from core.backend import BatchResult, LogChunk, Predictor, ProgressFn, TrainOptions
from core.registry import Registry
from core.types import Dataset, Job, ModelVersion
from core.workspace import Workspace


class LocalBackend:
    name = "local"

    def __init__(self, workspace: Workspace, cfg: config_mod.Config | None = None) -> None:
        self.ws = workspace
        self.cfg = cfg or config_mod.load()
        self.registry = Registry(workspace.registry_path)

    # ---- datasets (core/datasets/catalog.py) -------------------------------------
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

    def add_dataset(self, source: Path, name: str, *, crop: str = "random", image_size: int = 64,
                    progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> Dataset:
        from core.datasets import catalog
        return catalog.add(self.ws, self.registry, Path(source), name, crop=crop, image_size=image_size,
                           progress=progress, cancel=cancel)

    def make_demo_dataset(self, name: str = "demo", count: int = 2000, *, progress: ProgressFn | None = None,
                          cancel: threading.Event | None = None) -> Dataset:
        from core.datasets import catalog
        return catalog.demo(self.ws, self.registry, name, count, progress=progress, cancel=cancel)

    def remove_dataset(self, name: str) -> None:
        from core.datasets import catalog
        catalog.remove(self.ws, self.registry, name)

    # ---- jobs, models, prediction: issue 4 ---------------------------------------
    def submit_job(self, dataset: str, options: TrainOptions) -> Job:
        raise NotImplementedError

    def list_jobs(self) -> list[Job]:
        return self.registry.list_jobs()

    def get_job(self, job_id: str) -> Job:
        return self.registry.get_job(job_id)

    def cancel_job(self, job_id: str) -> Job:
        raise NotImplementedError

    def resume_job(self, job_id: str) -> Job:
        raise NotImplementedError

    def read_log(self, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk:
        raise NotImplementedError

    def deploy(self, job_id: str, name: str | None = None) -> ModelVersion:
        raise NotImplementedError

    def list_models(self) -> list[ModelVersion]:
        return self.registry.list_models()

    def get_model(self, ref: str) -> ModelVersion:
        raise NotImplementedError

    def undeploy(self, ref: str) -> ModelVersion:
        raise NotImplementedError

    def remove_model(self, ref: str) -> None:
        raise NotImplementedError

    def predictor(self, ref: str) -> Predictor:
        raise NotImplementedError

    def batch_predict(self, ref: str, input_path: Path, output_dir: Path, *,
                      progress: ProgressFn | None = None) -> BatchResult:
        raise NotImplementedError
