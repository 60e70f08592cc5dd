"""The Vertex AI backend: the same Backend interface as the local one, run in Google Cloud.

A facade, like core/local/backend.py, over one module per concern, each taking the
shared Context (core/vertex/context.py):

- datasets: built locally (DatasetMethods, shared with the local backend) and mirrored
  to gs://BUCKET/genml/datasets/NAME/ (core/vertex/datasets.py);
- preflight: profile, credentials, bucket, billing notice, `genml vertex check`;
- jobs: CustomJobs running the trainer package, mirrored in the registry;
- models: upload + endpoint + deployModel, resumable (core/vertex/operations.py waits);
- batch and predict: BatchPredictionJobs and online prediction on an endpoint.

The local registry is a cache of the cloud resources genml created; the cloud is the
truth: non-terminal jobs are refreshed from it when they are read, and models are checked
against it when they are listed or shown (core/vertex/sync.py).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from core import config as config_mod
from core.backend import Backend, BatchResult, Capabilities, LogChunk, ProgressFn, TrainOptions
from core.datasets.mixin import DatasetMethods
from core.jobdir import JobDir
from core.registry import Registry
from core.types import Job, ModelVersion
from core.vertex import batch, datasets, jobs, models, operations, preflight
from core.vertex import storage as gcs
from core.vertex.clients import Clients
from core.vertex.context import Context, profile_name
from core.vertex.predict import VertexPredictor
from core.vertex.settings import Settings
from core.workspace import Workspace

BILLING_NOTICE = preflight.BILLING_NOTICE


class VertexBackend(DatasetMethods, Backend):
    name = "vertex"

    def __init__(self, profile: dict[str, Any], ws: Workspace, cfg: config_mod.Config | None = None,
                 *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile = dict(profile)
        settings = Settings.from_profile(self.profile)
        settings.name = profile_name(self.profile)
        clients = Clients(settings, sleep=sleep)
        gcs.set_default_factory(lambda: clients.storage)
        self.ws = ws
        self.registry = Registry(ws.registry_path)
        self.ctx = Context(ws=ws, cfg=cfg or config_mod.load(), registry=self.registry,
                           settings=settings, clients=clients, sleep=sleep)

    # ---- shared state, for callers and tests --------------------------------------
    @property
    def cfg(self) -> config_mod.Config:
        return self.ctx.cfg

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def clients(self) -> Clients:
        return self.ctx.clients

    @property
    def last_refresh_error(self) -> str:
        """Why the last list_jobs showed cached rows ("" when it reached Vertex AI)."""
        return self.ctx.last_refresh_error

    @property
    def last_models_refresh_error(self) -> str:
        """Why the last list_models showed rows as last seen ("" when it reached Vertex AI)."""
        return self.ctx.models_refresh_error

    @property
    def on_notice(self) -> Callable[[str], None]:
        """Where billing and permission notes go (stderr by default; the TUI shows them)."""
        return self.ctx.on_notice

    @on_notice.setter
    def on_notice(self, fn: Callable[[str], None]) -> None:
        self.ctx.on_notice = fn

    def set_notice_handler(self, fn: Callable[[str], None]) -> None:
        self.ctx.on_notice = fn

    def capabilities(self) -> Capabilities:
        """Cloud machines per job, and `genml vertex check|resources` (check, billable_resources)."""
        return Capabilities(machines=True, cloud=self)

    def job_dir(self, job: Job) -> JobDir:
        """gs://BUCKET/genml/jobs/ID, read with this profile's credentials."""
        return JobDir(gcs.GcsStore(job.job_dir, self.ctx.clients.storage))

    # ---- preflight (core/vertex/preflight.py) ---------------------------------------
    def billing_notice(self) -> None:
        preflight.billing_notice(self.ctx)

    def check_bucket(self) -> str:
        return preflight.check_bucket(self.ctx)

    def check(self) -> list[tuple[str, bool, str]]:
        return preflight.check(self.ctx)

    def billable_resources(self) -> dict[str, list[dict[str, Any]]]:
        return preflight.billable_resources(self.ctx)

    def smoke_check(self, say: Callable[[str], None], confirm: Callable[[], bool]) -> bool | None:
        from core.vertex import smoke
        return smoke.check(self, say, confirm)

    # ---- datasets: DatasetMethods + the cloud copy (core/vertex/datasets.py) --------
    def _before_dataset_build(self) -> None:
        preflight.ready(self.ctx)

    def _after_dataset_build(self, name: str, progress: ProgressFn | None,
                             cancel: threading.Event | None) -> None:
        datasets.upload(self.ctx, name, progress=progress, cancel=cancel)

    def _before_dataset_remove(self, name: str) -> None:
        datasets.remove_cloud_copy(self.ctx, name)

    def dataset_uri(self, name: str) -> str:
        return self.ctx.dataset_uri(name)

    def upload_dataset(self, name: str, *, progress: ProgressFn | None = None,
                       cancel: threading.Event | None = None) -> gcs.TransferStats:
        return datasets.upload(self.ctx, name, progress=progress, cancel=cancel)

    # ---- jobs (core/vertex/jobs.py) ---------------------------------------------------
    def custom_job_body(self, job_id: str, dataset: str, options: TrainOptions, package_uri: str) -> dict[str, Any]:
        return jobs.custom_job_body(self.ctx, job_id, dataset, options, package_uri)

    def submit_job(self, dataset: str, options: TrainOptions) -> Job:
        return jobs.submit(self.ctx, dataset, options)

    def list_jobs(self) -> list[Job]:
        return jobs.list_jobs(self.ctx)

    def get_job(self, job_id: str) -> Job:
        return jobs.get(self.ctx, job_id)

    def cancel_job(self, job_id: str) -> Job:
        return jobs.cancel(self.ctx, job_id)

    def resume_job(self, job_id: str) -> Job:
        return jobs.resume(self.ctx, job_id)

    def read_log(self, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk:
        return jobs.read_log(self.ctx, job_id, cursor, max_lines)

    # ---- models (core/vertex/models.py, operations.py) -------------------------------
    def wait_operation(self, op_name: str, what: str, progress: ProgressFn | None = None,
                       deadline_s: float | None = None) -> dict[str, Any]:
        return operations.wait(self.ctx, op_name, what, progress, deadline_s)

    def deploy(self, job_id: str, name: str | None = None, progress: ProgressFn | None = None) -> ModelVersion:
        return models.deploy(self.ctx, job_id, name, progress)

    def list_models(self) -> list[ModelVersion]:
        return models.list_models(self.ctx)

    def get_model(self, ref: str) -> ModelVersion:
        return models.get_model(self.ctx, ref)

    def undeploy(self, ref: str) -> ModelVersion:
        return models.undeploy(self.ctx, ref)

    def remove_model(self, ref: str) -> None:
        models.remove(self.ctx, ref)

    # ---- prediction (core/vertex/predict.py, batch.py) --------------------------------
    def predictor(self, ref: str) -> VertexPredictor:
        return VertexPredictor(self.ctx.clients, models.deployed(self.ctx, ref))

    def batch_predict(self, ref: str, input_path: Path, output_dir: Path, *,
                      progress: ProgressFn | None = None) -> BatchResult:
        return batch.run(self.ctx, ref, input_path, output_dir, progress=progress)
