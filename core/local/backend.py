"""The embedded local backend: everything on this machine, nothing to set up.

Datasets delegate to core/datasets/catalog.py; jobs to core/local/jobs.py (detached
supervisors, reconciled on every open); models to core/local/models.py; prediction to
core/predict.py and core/batch.py. docs/local.md explains the choices.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from core import config as config_mod
from core.backend import Backend, BatchResult, LogChunk, Predictor, ProgressFn, TrainOptions
from core.datasets.mixin import DatasetMethods
from core.local import jobs, models
from core.registry import Registry
from core.types import Job, ModelVersion
from core.workspace import Workspace


class LocalBackend(DatasetMethods, Backend):
    name = "local"

    def __init__(self, workspace: Workspace, cfg: config_mod.Config | None = None) -> None:
        self.ws = workspace
        self.cfg = cfg or config_mod.load()
        self.registry = Registry(workspace.registry_path)
        self.reconcile()

    # datasets: DatasetMethods (core/datasets/mixin.py), shared with the Vertex AI backend

    # ---- jobs (core/local/jobs.py + runner.py) ------------------------------------
    RECONCILE_EVERY_S = 5.0

    def reconcile(self) -> list[str]:
        """Settle jobs whose processes died; runs on every open (see jobs.reconcile), and
        again from list_jobs/get_job at most every few seconds, so a long-lived TUI also sees
        a job whose supervisor was killed turn FAILED."""
        self._reconciled = time.monotonic()
        return jobs.reconcile(self.registry)

    def _maybe_reconcile(self) -> None:
        if time.monotonic() - self._reconciled >= self.RECONCILE_EVERY_S:
            self.reconcile()

    def submit_job(self, dataset: str, options: TrainOptions) -> Job:
        return jobs.submit(self.ws, self.registry, dataset, options)

    def list_jobs(self) -> list[Job]:
        self._maybe_reconcile()
        return [jobs.refresh(j) for j in self.registry.list_jobs()]

    def get_job(self, job_id: str) -> Job:
        self._maybe_reconcile()
        return jobs.get(self.registry, job_id)

    def cancel_job(self, job_id: str) -> Job:
        return jobs.cancel(self.registry, self.get_job(job_id).id)

    def resume_job(self, job_id: str) -> Job:
        return jobs.resume(self.ws, self.registry, self.get_job(job_id).id)

    def read_log(self, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk:
        return jobs.read_log(self.registry, self.get_job(job_id).id, cursor, max_lines)

    # ---- models (core/local/models.py) ----------------------------------------------
    def deploy(self, job_id: str, name: str | None = None) -> ModelVersion:
        jobs.reconcile(self.registry)
        return models.deploy(self.registry, self.get_job(job_id), name)

    def list_models(self) -> list[ModelVersion]:
        return self.registry.list_models()

    def get_model(self, ref: str) -> ModelVersion:
        return models.get(self.registry, ref)

    def undeploy(self, ref: str) -> ModelVersion:
        return models.undeploy(self.registry, ref)

    def remove_model(self, ref: str) -> None:
        models.remove(self.registry, ref)

    # ---- prediction (core/predict.py, core/batch.py) --------------------------------
    def predictor(self, ref: str) -> Predictor:
        from core.predict import load_predictor
        return load_predictor(models.get_deployed(self.registry, ref).path)

    def batch_predict(self, ref: str, input_path: Path, output_dir: Path, *,
                      progress: ProgressFn | None = None) -> BatchResult:
        from core import batch
        mv = models.get_deployed(self.registry, ref)
        return batch.run(self.predictor(mv.ref), Path(input_path), Path(output_dir), model_ref=mv.ref,
                         progress=progress)
