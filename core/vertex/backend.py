"""The Vertex AI backend: the same Backend interface as the local one, run in Google Cloud.

Datasets are built locally (core/datasets/catalog, like the local backend) and mirrored
to gs://BUCKET/genml/datasets/NAME/. Training is a CustomJob running the trainer sdist
on a prebuilt TensorFlow container; its job dir is gs://BUCKET/genml/jobs/ID/ and is
read through GcsStore, so every pane shows a cloud job like a local one. Deploying is
models:upload + a new endpoint + deployModel, three long-running operations whose names
are saved in the registry's `remote` column after each step: a deploy interrupted by a
crash or a deadline continues where it stopped when it is run again.

The local registry is a cache of the cloud resources genml created; the cloud is the
truth, and non-terminal jobs are refreshed from it when they are read.
"""
from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from core import atomic
from core import config as config_mod
from core.backend import BatchResult, LogChunk, Progress, ProgressFn, TrainOptions
from core.errors import CloudError, GenmlError, InvalidInput, InvalidState, NotFound
from core.jobdir import JobDir
from core.registry import Registry, parse_model_ref
from core.types import Dataset, Job, JobState, ModelVersion
from core.vertex import logs as cloud_logs
from core.vertex import storage as gcs
from core.vertex.clients import Clients
from core.vertex.predict import VertexPredictor, check_instance
from core.vertex.settings import Settings, bucket_location_ok
from core.workspace import Workspace

BILLING_NOTICE = (
    "Vertex AI and Cloud Storage are billable Google Cloud services: training jobs bill per machine-hour "
    "while they run, a deployed model bills per node-hour until you undeploy it (`genml models undeploy`), "
    "batch prediction bills per node-hour, and the bucket bills for what it stores. See docs/vertex.md for "
    "typical costs. (Shown once.)")


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _last(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class VertexBackend:
    name = "vertex"

    def __init__(self, profile: dict[str, Any], ws: Workspace, cfg: config_mod.Config | None = None,
                 *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile = dict(profile)
        self.ws = ws
        self.cfg = cfg or config_mod.load()
        self.settings = Settings.from_profile(self.profile)
        self.settings.name = str(self.profile.get("name", "vertex"))
        self.registry = Registry(ws.registry_path)
        self.clients = Clients(self.settings, sleep=sleep)
        gcs.set_default_factory(lambda: self.clients.storage)
        self._sleep = sleep
        self._bucket_checked = False
        self._refreshed: dict[str, float] = {}
        self.on_notice: Callable[[str], None] = lambda text: print(f"note: {text}", file=sys.stderr)

    # ---- preconditions ----------------------------------------------------------------
    @property
    def _state_dir(self) -> Path:
        return self.ws.root / "vertex"

    def billing_notice(self) -> None:
        """Say once per workspace, before the first billable call, that this costs money."""
        marker = self._state_dir / "billing-notice-shown"
        if marker.exists():
            return
        self.on_notice(BILLING_NOTICE)
        atomic.write_text(marker, f"{time.time()}\n")

    def check_bucket(self) -> str:
        """The bucket exists and sits where the jobs will run; checked before anything is submitted."""
        s = self.settings.validate()
        from google.api_core import exceptions as gexc
        try:
            bucket = self.clients.storage.get_bucket(s.bucket)
        except gexc.NotFound as exc:
            raise CloudError(f"The bucket gs://{s.bucket} does not exist.",
                             f"Create it in the job region: `gcloud storage buckets create gs://{s.bucket} "
                             f"--project {s.project} --location {s.region}`.") from exc
        except gexc.Forbidden as exc:
            # Storage Object Admin alone may use the bucket but not read its metadata (storage.buckets.get)
            try:
                list(self.clients.storage.list_blobs(s.bucket, max_results=1))
            except gexc.GoogleAPIError:
                raise CloudError(f"No access to the bucket gs://{s.bucket} ({exc.message}).",
                                 "Grant the account Storage Admin (or Storage Object Admin and Storage Bucket "
                                 "Viewer) on the bucket, or pick another with `genml vertex configure --bucket NAME`."
                                 ) from exc
            self.on_notice(f"genml could not read where gs://{s.bucket} is (no storage.buckets.get permission); "
                           f"make sure it is in {s.region}, or grant Storage Bucket Viewer so genml can check.")
            self._bucket_checked = True
            return "unknown"
        except gexc.GoogleAPIError as exc:
            raise CloudError(f"Cannot read the bucket gs://{s.bucket}: {exc}.", "Try `genml vertex check`.") from exc
        location = str(bucket.location or "")
        if not bucket_location_ok(location, s.region):
            raise CloudError(f"The bucket gs://{s.bucket} is in {location}, but jobs run in {s.region}; Vertex AI "
                             "needs them in the same region (and traffic between regions is billed).",
                             f"Use a bucket in {s.region} (`gcloud storage buckets create gs://NAME --location "
                             f"{s.region}` then `genml vertex configure --bucket NAME`), or set region = "
                             f"\"{location.lower()}\" in the profile.")
        self._bucket_checked = True
        return location

    def _ready(self) -> Settings:
        s = self.settings.validate()
        if not self._bucket_checked:
            self.check_bucket()
        return s

    def check(self) -> list[tuple[str, bool, str]]:
        """`genml vertex check`: each thing that must work, whether it does, and what to do if not."""
        results: list[tuple[str, bool, str]] = []

        def step(label: str, fn: Callable[[], str]) -> bool:
            try:
                results.append((label, True, fn()))
                return True
            except GenmlError as exc:
                results.append((label, False, str(exc)))
                return False

        if not step("profile", lambda: f"project {self.settings.validate().project}, region "
                                       f"{self.settings.region}, bucket gs://{self.settings.bucket}"):
            return results
        from core.vertex.clients import describe_credentials
        if not step("credentials", lambda: describe_credentials(self.settings, self.clients.credentials)):
            return results
        step("bucket", lambda: f"gs://{self.settings.bucket} in {self.check_bucket()}")
        step("Vertex AI API", lambda: (self.clients.call(self.clients.aiplatform.customJobs().list(
            parent=self.settings.parent, pageSize=1), "Listing training jobs", deadline_s=30), "reachable")[1])
        step("Cloud Logging API", lambda: (self.clients.call(self.clients.logging.entries().list(body={
            "resourceNames": [f"projects/{self.settings.project}"], "pageSize": 1,
            "filter": 'resource.type="ml_job"'}), "Reading logs", deadline_s=30, retry=False), "reachable")[1])
        return results

    def billable_resources(self) -> dict[str, list[dict[str, Any]]]:
        """What genml started that may still be billing: running jobs and endpoints with models.

        Read from Vertex AI itself (by the `genml` label), not from the local registry, so it
        also finds what another machine or a lost registry left behind.
        """
        s, ai, c = self.settings.validate(), self.clients.aiplatform, self.clients
        running = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING")
        jobs = c.call(ai.customJobs().list(parent=s.parent, filter='labels.genml="1"', pageSize=100),
                      "Listing training jobs").get("customJobs", [])
        batch = c.call(ai.batchPredictionJobs().list(parent=s.parent, filter='labels.genml="1"', pageSize=100),
                       "Listing batch prediction jobs").get("batchPredictionJobs", [])
        eps = c.call(ai.endpoints().list(parent=s.parent, filter='labels.genml="1"', pageSize=100),
                     "Listing endpoints").get("endpoints", [])
        return {
            "training": [{"name": j["name"], "display_name": j.get("displayName", ""), "state": j.get("state", "")}
                         for j in jobs if j.get("state") in running],
            "batch": [{"name": j["name"], "display_name": j.get("displayName", ""), "state": j.get("state", "")}
                      for j in batch if j.get("state") in running],
            "endpoints": [{"name": e["name"], "display_name": e.get("displayName", ""),
                           "deployed_models": len(e.get("deployedModels", []))}
                          for e in eps if e.get("deployedModels")],
        }

    # ---- datasets -------------------------------------------------------------------
    def dataset_uri(self, name: str) -> str:
        return self.settings.gs("datasets", name)

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
                    progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                    replace: bool = False) -> Dataset:
        from core.datasets import catalog
        self._ready()
        ds = catalog.add(self.ws, self.registry, Path(source), name, crop=crop, image_size=image_size,
                         progress=progress, cancel=cancel, replace=replace)
        self.upload_dataset(name, progress=progress, cancel=cancel)
        return ds

    def make_demo_dataset(self, name: str = "demo", count: int = 2000, *, progress: ProgressFn | None = None,
                          cancel: threading.Event | None = None, replace: bool = False) -> Dataset:
        from core.datasets import catalog
        self._ready()
        ds = catalog.demo(self.ws, self.registry, name, count, progress=progress, cancel=cancel, replace=replace)
        self.upload_dataset(name, progress=progress, cancel=cancel)
        return ds

    def upload_dataset(self, name: str, *, progress: ProgressFn | None = None,
                       cancel: threading.Event | None = None) -> gcs.TransferStats:
        """Mirror a local dataset to the bucket; objects already there with the same CRC32C are skipped."""
        self._ready()
        ds = self.registry.get_dataset(name)
        local = Path(ds.path)
        if not (local / "manifest.json").exists():
            raise InvalidState(f"The dataset {name!r} at {local} is incomplete (no manifest.json).",
                               "Build it again with `genml dataset add`.")
        self.billing_notice()
        return gcs.upload_dir(self.clients.storage, local, self.dataset_uri(name), progress=progress,
                              cancel=cancel, stage="upload dataset", delete_extra=True)

    def remove_dataset(self, name: str) -> None:
        """Removes the cloud copy and the local one."""
        from core.datasets import catalog
        from google.api_core import exceptions as gexc
        self.settings.validate()
        bucket, prefix = gcs.split_uri(self.dataset_uri(name))
        try:
            for blob in list(self.clients.storage.list_blobs(bucket, prefix=prefix + "/")):
                blob.delete()
        except gexc.GoogleAPIError as exc:
            raise CloudError(f"Could not delete {self.dataset_uri(name)}: {exc}.", "Try again.") from exc
        catalog.remove(self.ws, self.registry, name)

    # ---- jobs ---------------------------------------------------------------------------
    def _upload_trainer(self) -> str:
        from core.vertex.packaging import build_sdist
        digest, fname, data = build_sdist()
        uri = self.settings.gs("packages", digest, fname)
        bucket, key = gcs.split_uri(uri)
        blob = self.clients.storage.bucket(bucket).blob(key)
        from google.api_core import exceptions as gexc
        try:
            if not blob.exists():
                blob.upload_from_string(data, content_type="application/gzip", checksum="crc32c")
        except gexc.GoogleAPIError as exc:
            raise CloudError(f"Could not upload the trainer package to {uri}: {exc}.", "Try `genml vertex check`.") from exc
        return uri

    def custom_job_body(self, job_id: str, dataset: str, options: TrainOptions, package_uri: str) -> dict[str, Any]:
        """The CustomJob: pool 0 is the chief; --replicas N adds N-1 workers in pool 1."""
        s = self.settings
        job_uri = s.gs("jobs", job_id)
        args = ["--data-dir", s.gcs_mount(self.dataset_uri(dataset)), "--job-dir", s.gcs_mount(job_uri),
                *options.trainer_args()]
        machine: dict[str, Any] = {"machineType": options.machine_type or s.machine_type}
        if s.uses_gpu:
            machine.update(acceleratorType=s.accelerator_type, acceleratorCount=s.accelerator_count)
        spec = {"executorImageUri": s.training_image_uri(), "packageUris": [package_uri],
                "pythonModule": "trainer.task", "args": args}
        replicas = max(1, options.replicas if options.replicas and options.replicas > 1 else s.replicas)
        pools: list[dict[str, Any]] = [{"machineSpec": machine, "replicaCount": "1", "pythonPackageSpec": spec,
                                        "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100}}]
        if replicas > 1:
            pools.append(dict(pools[0], replicaCount=str(replicas - 1)))
        job_spec: dict[str, Any] = {"workerPoolSpecs": pools, "baseOutputDirectory": {"outputUriPrefix": job_uri}}
        if s.service_account:
            job_spec["serviceAccount"] = s.service_account
        return {"displayName": f"genml-{job_id}", "jobSpec": job_spec,
                "labels": {"genml": "1", "genml-job": job_id.lower()[:63], "genml-dataset": _label(dataset)}}

    def _find_custom_job(self, display_name: str) -> dict[str, Any] | None:
        req = self.clients.aiplatform.customJobs().list(parent=self.settings.parent,
                                                        filter=f'display_name="{display_name}"', pageSize=10)
        jobs = self.clients.call(req, "Looking for the submitted job").get("customJobs", [])
        return jobs[0] if jobs else None

    def submit_job(self, dataset: str, options: TrainOptions) -> Job:
        s = self._ready()
        ds = self.registry.get_dataset(dataset)
        self.billing_notice()
        self.upload_dataset(dataset)
        package = self._upload_trainer()
        job_id = time.strftime("vx-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)
        body = self.custom_job_body(job_id, dataset, options, package)
        opts = {k: v for k, v in vars(options).items() if v not in (None, [], "")}
        job = Job(id=job_id, dataset=ds.name, state=JobState.QUEUED, backend="vertex", created=time.time(),
                  job_dir=s.gs("jobs", job_id), options=opts, max_steps=int(options.max_steps or 0),
                  remote={"profile": s.name, "project": s.project, "region": s.region, "package": package,
                          "body": body})
        self.registry.add_job(job)
        return self._create_custom_job(job, body)

    def _create_custom_job(self, job: Job, body: dict[str, Any]) -> Job:
        req = self.clients.aiplatform.customJobs().create(parent=self.settings.parent, body=body)
        try:
            created = self.clients.call(req, "Submitting the training job",
                                        before_retry=lambda: self._find_custom_job(body["displayName"]))
        except GenmlError as exc:
            self.registry.update_job(job.id, state=JobState.FAILED, ended=time.time(), error=exc.message)
            raise
        remote = dict(job.remote, name=created["name"], job_id=_last(created["name"]),
                      console=f"https://console.cloud.google.com/vertex-ai/locations/{self.settings.region}/"
                              f"training/{_last(created['name'])}/cpu?project={self.settings.project}")
        remote.setdefault("history", []).append(created["name"])
        self.registry.update_job(job.id, remote=remote, state=JobState.parse(created.get("state", "JOB_STATE_QUEUED")),
                                 error="", ended=None)
        return self.registry.get_job(job.id)

    def _vertex_job(self, job_id: str) -> Job:
        job = self.registry.get_job(job_id)
        if job.backend != "vertex":
            raise NotFound(f"Job {job_id} is a {job.backend} job, not a Vertex AI one.",
                           f"Use `genml --backend {job.backend} jobs ...`.")
        return job

    def _refresh(self, job: Job, force: bool = False) -> Job:
        """Update a job from Vertex AI (state, times, error) and from its job dir (step, speed)."""
        name = job.remote.get("name")
        if not name and not job.state.terminal:
            return self._recover_submission(job)
        if not name or (job.state.terminal and job.remote.get("final")):
            return job
        now = time.monotonic()
        if now - self._refreshed.get(job.id, -1e9) < (0.0 if force else self.settings.refresh_interval_s):
            return job
        self._refreshed[job.id] = now
        cj = self.clients.call(self.clients.aiplatform.customJobs().get(name=name), f"Reading job {job.id}")
        state = JobState.parse(cj.get("state", "JOB_STATE_PENDING"))
        values: dict[str, Any] = {"state": state, "started": _ts(cj.get("startTime")), "ended": _ts(cj.get("endTime"))}
        status = JobDir(gcs.GcsStore(job.job_dir, self.clients.storage)).status() if state in (
            JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED) else {}
        for key in ("step", "max_steps", "images_per_sec"):
            if status.get(key) is not None:
                values[key] = status[key]
        if state.terminal:
            remote = dict(job.remote, final=True)
            if state is JobState.FAILED:
                # Vertex's own message is usually just "replica workerpool0-0 exited with a non-zero
                # status"; the trainer's status.json and its stderr say why.
                parts = [(cj.get("error") or {}).get("message", "")]
                if status.get("error"):
                    parts.append(f"trainer: {status['error']}")
                tail = cloud_logs.last_errors(self.clients, _last(name), since=job.created)
                if tail:
                    parts.append("last errors in the log:\n" + "\n".join(tail))
                values["error"] = "\n".join(p for p in parts if p)
            values["remote"] = remote
        self.registry.update_job(job.id, **values)
        return self.registry.get_job(job.id)

    def _recover_submission(self, job: Job) -> Job:
        """genml stopped between registering a job and hearing back from customJobs.create:
        adopt the CustomJob if it exists, else call the submission failed after a grace period."""
        body = job.remote.get("body") or {}
        found = self._find_custom_job(body.get("displayName", f"genml-{job.id}")) if body else None
        if found:
            remote = dict(job.remote, name=found["name"], job_id=_last(found["name"]))
            remote.setdefault("history", []).append(found["name"])
            self.registry.update_job(job.id, remote=remote, state=JobState.parse(found.get("state", "JOB_STATE_QUEUED")))
            return self.registry.get_job(job.id)
        if time.time() - job.created > 300:
            self.registry.update_job(job.id, state=JobState.FAILED, ended=time.time(),
                                     error="The submission to Vertex AI did not complete.")
            return self.registry.get_job(job.id)
        return job

    def list_jobs(self) -> list[Job]:
        jobs = [j for j in self.registry.list_jobs() if j.backend == "vertex"]
        out = []
        for j in jobs:
            try:
                out.append(self._refresh(j))
            except CloudError:
                out.append(j)       # offline or throttled: show what we knew
        return out

    def get_job(self, job_id: str) -> Job:
        return self._refresh(self._vertex_job(job_id))

    def cancel_job(self, job_id: str) -> Job:
        job = self._refresh(self._vertex_job(job_id), force=True)
        if job.state.terminal:
            raise InvalidState(f"Job {job_id} has already ended ({job.state.short}).", "Nothing to cancel.")
        name = job.remote.get("name")
        if not name:                      # never reached Vertex AI
            self.registry.update_job(job_id, state=JobState.CANCELLED, ended=time.time())
            return self.registry.get_job(job_id)
        self.clients.call(self.clients.aiplatform.customJobs().cancel(name=name, body={}), f"Cancelling job {job_id}")
        self.registry.update_job(job_id, state=JobState.CANCELLING)
        self._refreshed.pop(job_id, None)
        return self.registry.get_job(job_id)

    def resume_job(self, job_id: str) -> Job:
        """A CustomJob cannot be restarted, so a new one runs on the same job dir; the trainer resumes
        from the checkpoints there."""
        job = self._refresh(self._vertex_job(job_id), force=True)
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise InvalidState(f"Job {job_id} is {job.state.short}; only failed or cancelled jobs can be resumed.",
                               "Wait for it to end, or cancel it first.")
        self._ready()
        self.billing_notice()
        body = dict(job.remote.get("body") or {})
        if not body:
            raise InvalidState(f"Job {job_id} has no saved request to resume from.", "Submit a new job.")
        body["displayName"] = f"genml-{job_id}-r{len(job.remote.get('history', []))}"
        body["jobSpec"]["workerPoolSpecs"] = [
            dict(p, pythonPackageSpec=dict(p["pythonPackageSpec"], packageUris=[self._upload_trainer()]))
            for p in body["jobSpec"]["workerPoolSpecs"]]
        remote = {k: v for k, v in job.remote.items() if k != "final"}
        self.registry.update_job(job_id, state=JobState.QUEUED, ended=None, error="", remote=remote)
        self._refreshed.pop(job_id, None)
        return self._create_custom_job(self.registry.get_job(job_id), body)

    def read_log(self, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk:
        job = self._vertex_job(job_id)
        numeric = job.remote.get("job_id")
        if not numeric:
            return LogChunk([], cursor)
        chunk = cloud_logs.read(self.clients, str(numeric), cursor, max_lines, since=job.created)
        if not chunk.lines and not (cursor or {}).get("ts") and not (cursor or {}).get("noted") \
                and job.state in (JobState.QUEUED, JobState.PENDING):
            # the commonest question about a new cloud job: why is the log empty?
            chunk.lines = ["(genml) Vertex AI is provisioning machines; the log starts when the job runs. "
                           "This often takes a few minutes."]
            chunk.cursor = dict(chunk.cursor, noted=True)
        return chunk

    # ---- long-running operations ------------------------------------------------------
    def _operations(self, op_name: str) -> Any:
        """The discovery resource whose `get` accepts this operation name (each checks a name pattern)."""
        parts = op_name.split("/")
        res = self.clients.aiplatform
        # projects/P/locations/L[/<collection>/<id>]/operations/O
        for i in range(4, len(parts) - 2, 2):
            res = getattr(res, parts[i])()
        return res.operations()

    def wait_operation(self, op_name: str, what: str, progress: ProgressFn | None = None,
                       deadline_s: float | None = None) -> dict[str, Any]:
        """Poll until done or genml's own deadline; the operation goes on in the cloud either way."""
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.settings.operation_deadline_s)
        delay = min(1.0, self.settings.poll_interval_s)
        polls = 0
        while True:
            op = self.clients.call(self._operations(op_name).get(name=op_name), what)
            if op.get("done"):
                if op.get("error"):
                    e = op["error"]
                    exc = CloudError(f"{what} failed: {e.get('message', e)}.",
                                     "Check the model files in the job dir and the region's quotas; "
                                     "run the command again to retry.")
                    exc.operation_failed = True  # type: ignore[attr-defined]
                    raise exc
                return dict(op.get("response") or {})
            polls += 1
            if progress:
                progress(Progress(what, polls, 0, "waiting for Google Cloud"))
            if time.monotonic() + delay > deadline:
                raise CloudError(f"{what} is still running after genml's deadline ({op_name}).",
                                 "It goes on in Google Cloud; run the same command again to keep waiting "
                                 "(genml remembers where it was).")
            self._sleep(delay)
            delay = min(delay * 2, self.settings.poll_interval_s)

    # ---- models -------------------------------------------------------------------------
    def _vertex_model(self, ref: str) -> ModelVersion:
        name, version = parse_model_ref(ref)
        if version is None:
            cands = [m for m in self.registry.list_models() if m.name == name and m.backend == "vertex"]
            if not cands:
                raise NotFound(f"No Vertex AI model named {name!r}.", "See `genml --backend vertex models list`.")
            cands.sort(key=lambda m: (m.deployed, m.version))
            return cands[-1]
        mv = self.registry.get_model(name, version)
        if mv.backend != "vertex":
            raise NotFound(f"{ref} is a {mv.backend} model, not a Vertex AI one.",
                           f"Use `genml --backend {mv.backend} ...`.")
        return mv

    def deploy(self, job_id: str, name: str | None = None, progress: ProgressFn | None = None) -> ModelVersion:
        job = self.get_job(job_id)
        if job.state is not JobState.SUCCEEDED:
            raise InvalidState(f"Job {job_id} is {job.state.short}; only a finished job has a model to deploy.",
                               "Wait for it to succeed (`genml jobs show`), then deploy.")
        s = self._ready()
        pending = [m for m in self.registry.list_models() if m.backend == "vertex" and m.job_id == job_id
                   and m.remote.get("stage") not in ("deployed", "undeployed")
                   and (name is None or m.name == name)]
        if pending:
            mv = pending[-1]
        else:
            store = gcs.GcsStore(job.job_dir, self.clients.storage)
            jd = JobDir(store)
            if not jd.has_model():
                raise InvalidState(f"Job {job_id} has no exported model in {job.job_dir}/model.",
                                   "The trainer writes it when a job succeeds; check the job's log.")
            info = jd.model_info()
            self.billing_notice()
            mv = self.registry.add_model_version(name or job.dataset, job_id, job.job_dir + "/model", backend="vertex",
                                                 metrics=dict(info.get("metrics") or {}), info=info,
                                                 remote={"stage": "upload", "project": s.project, "region": s.region})
            self.registry.update_model(mv.name, mv.version, deployed=False)
        return self._continue_deploy(mv, progress)

    def _save(self, mv: ModelVersion, **remote: Any) -> ModelVersion:
        mv.remote = dict(mv.remote, **remote)
        self.registry.update_model(mv.name, mv.version, remote=mv.remote)
        return mv

    def _step(self, mv: ModelVersion, op_key: str, start: Callable[[], dict[str, Any]], what: str,
              progress: ProgressFn | None) -> dict[str, Any]:
        """Start an operation once (its name is saved before waiting), then wait for it."""
        if not mv.remote.get(op_key):
            op = start()
            self._save(mv, **{op_key: op["name"]})
        try:
            return self.wait_operation(mv.remote[op_key], what, progress)
        except CloudError as exc:
            if getattr(exc, "operation_failed", False) or getattr(exc, "http_status", 0) == 404:
                self._save(mv, **{op_key: None})      # the next run starts this step afresh
            raise

    def _gone_ok(self, fn: Callable[[], Any]) -> None:
        """Deleting what someone already deleted (e.g. in the console) is not an error."""
        try:
            fn()
        except CloudError as exc:
            if getattr(exc, "http_status", 0) != 404:
                raise

    def _continue_deploy(self, mv: ModelVersion, progress: ProgressFn | None) -> ModelVersion:
        s, ai, c = self.settings, self.clients.aiplatform, self.clients
        label = f"genml-{_label(mv.name)}-v{mv.version}"
        if not mv.remote.get("model"):
            body = {"model": {"displayName": label, "artifactUri": mv.path.rstrip("/") + "/",
                              "containerSpec": {"imageUri": s.serving_image_uri()},
                              "labels": {"genml": "1", "genml-model": _label(mv.name)}}}
            resp = self._step(mv, "upload_op", lambda: c.call(ai.models().upload(parent=s.parent, body=body),
                                                               "Uploading the model"),
                              f"Uploading {mv.ref} to Vertex AI", progress)
            self._save(mv, model=resp["model"], stage="endpoint")
        if not mv.remote.get("endpoint"):
            body = {"displayName": label, "labels": {"genml": "1"}}
            resp = self._step(mv, "endpoint_op", lambda: c.call(ai.endpoints().create(parent=s.parent, body=body),
                                                                 "Creating an endpoint"),
                              f"Creating an endpoint for {mv.ref}", progress)
            self._save(mv, endpoint=resp["name"], stage="deploy")
        if not mv.remote.get("deployed_model_id"):
            body = {"deployedModel": {"model": mv.remote["model"], "displayName": label,
                                      "dedicatedResources": {"machineSpec": {"machineType": s.serving_machine_type},
                                                             "minReplicaCount": 1, "maxReplicaCount": 1}},
                    "trafficSplit": {"0": 100}}
            resp = self._step(mv, "deploy_op", lambda: c.call(
                ai.endpoints().deployModel(endpoint=mv.remote["endpoint"], body=body), "Deploying the model"),
                f"Deploying {mv.ref} (this takes 5-20 minutes)", progress)
            self._save(mv, deployed_model_id=str(resp.get("deployedModel", {}).get("id", "")), stage="deployed")
        self.registry.update_model(mv.name, mv.version, deployed=True)
        return self.registry.get_model(mv.name, mv.version)

    def list_models(self) -> list[ModelVersion]:
        return [m for m in self.registry.list_models() if m.backend == "vertex"]

    def get_model(self, ref: str) -> ModelVersion:
        return self._vertex_model(ref)

    def undeploy(self, ref: str) -> ModelVersion:
        """Stop serving (and billing): undeploy from the endpoint, then delete the endpoint. The Model stays."""
        mv = self._vertex_model(ref)
        ai, c = self.clients.aiplatform, self.clients
        endpoint = mv.remote.get("endpoint")
        if endpoint and mv.remote.get("deployed_model_id"):
            body = {"deployedModelId": mv.remote["deployed_model_id"]}
            self._gone_ok(lambda: self._step(mv, "undeploy_op", lambda: c.call(
                ai.endpoints().undeployModel(endpoint=endpoint, body=body), "Undeploying the model"),
                f"Undeploying {mv.ref}", None))
        if endpoint:
            self._gone_ok(lambda: self._step(mv, "endpoint_delete_op", lambda: c.call(
                ai.endpoints().delete(name=endpoint), "Deleting the endpoint"),
                f"Deleting the endpoint of {mv.ref}", None))
        keep = {k: v for k, v in mv.remote.items() if k in ("model", "project", "region", "upload_op")}
        mv.remote = dict(keep, stage="undeployed")
        self.registry.update_model(mv.name, mv.version, remote=mv.remote, deployed=False)
        return self.registry.get_model(mv.name, mv.version)

    def remove_model(self, ref: str) -> None:
        name, version = parse_model_ref(ref)
        versions = [self._vertex_model(ref)] if version is not None else \
            [m for m in self.list_models() if m.name == name]
        if not versions:
            raise NotFound(f"No Vertex AI model named {name!r}.", "See `genml --backend vertex models list`.")
        for mv in versions:
            if mv.remote.get("endpoint"):
                mv = self.undeploy(mv.ref)
            if mv.remote.get("model"):
                model, m = mv.remote["model"], mv
                self._gone_ok(lambda: self._step(m, "delete_op", lambda: self.clients.call(
                    self.clients.aiplatform.models().delete(name=model), "Deleting the model"),
                    f"Deleting {m.ref} from Vertex AI", None))
            self.registry.remove_model(mv.name, mv.version)

    # ---- prediction -------------------------------------------------------------------
    def predictor(self, ref: str) -> VertexPredictor:
        mv = self._vertex_model(ref)
        if not mv.deployed or not mv.remote.get("endpoint"):
            raise InvalidState(f"{mv.ref} is not deployed on Vertex AI (stage: {mv.remote.get('stage', '?')}).",
                               f"Run `genml --backend vertex models deploy {mv.job_id}` (it resumes an unfinished deploy).")
        return VertexPredictor(self, mv)

    def batch_predict(self, ref: str, input_path: Path, output_dir: Path, *,
                      progress: ProgressFn | None = None) -> BatchResult:
        """Local JSONL in, local folder out; in between, a BatchPredictionJob on the uploaded Model.

        A batch job runs the model's default signature, so lines with embeddings go to Vertex;
        other lines (and malformed ones) get an error line here instead of failing the job.
        The output has the local backend's names: predictions-00000-of-00001.jsonl and
        errors-00000-of-00001.jsonl (plus Vertex's own files under vertex/).
        """
        s = self._ready()
        mv = self._vertex_model(ref)
        if not mv.remote.get("model"):
            raise InvalidState(f"{mv.ref} has not been uploaded to Vertex AI.",
                               f"Run `genml --backend vertex models deploy {mv.job_id}`.")
        emb = int(mv.info.get("embedding_size", 100))
        good: list[str] = []
        local_errors: list[dict[str, Any]] = []
        try:
            lines = Path(input_path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidInput(f"Cannot read {input_path}: {exc.strerror}.", "Give a JSONL file, one instance per line.") from exc
        i = -1
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            i += 1
            try:
                inst = json.loads(line)
            except ValueError as exc:
                local_errors.append({"line": lineno, "key": None, "error": f"instance {i}: not JSON ({exc})"})
                continue
            checked = check_instance(i, inst, emb)
            if isinstance(checked, dict):
                local_errors.append({"line": lineno, **checked})
            elif checked[0] != "generate":
                local_errors.append({"line": lineno, "key": checked[1]["key"],
                                     "error": f"instance {i}: Vertex AI batch prediction runs the generate signature; "
                                              "encode images online with `genml predict`"})
            else:
                good.append(json.dumps(checked[1]))
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        predictions = 0
        files: list[str] = []
        out_lines: list[str] = []
        if good:
            self.billing_notice()
            run = time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)
            base = s.gs("batch", run)
            tmp = self.ws.tmp_dir / f"batch-{run}.jsonl"
            atomic.write_text(tmp, "\n".join(good) + "\n")
            gcs.upload_file(self.clients.storage, tmp, base + "/input.jsonl")
            tmp.unlink(missing_ok=True)
            body = {"displayName": f"genml-{_label(mv.name)}-v{mv.version}-{run}", "model": mv.remote["model"],
                    "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [base + "/input.jsonl"]}},
                    "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": base + "/output"}},
                    "dedicatedResources": {"machineSpec": {"machineType": s.batch_machine_type},
                                           "startingReplicaCount": 1, "maxReplicaCount": 1},
                    "labels": {"genml": "1"}}
            bj = self.clients.call(self.clients.aiplatform.batchPredictionJobs().create(parent=s.parent, body=body),
                                   "Starting batch prediction")
            bj = self._wait_batch(bj["name"], progress)
            out_uri = (bj.get("outputInfo") or {}).get("gcsOutputDirectory", base + "/output")
            raw_dir = output_dir / "vertex"
            for p in gcs.download_prefix(self.clients.storage, out_uri, raw_dir):
                files.append(str(p))
                for line in p.read_text(encoding="utf-8").splitlines():
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if p.name.startswith("prediction.results") or "prediction" in row:
                        pred = dict(row.get("prediction") or {})
                        pred.setdefault("key", (row.get("instance") or {}).get("key"))
                        out_lines.append(json.dumps(pred))
                        predictions += 1
                    elif p.name.startswith("prediction.errors") and "error" in row:
                        local_errors.append({"line": None, "key": (row.get("instance") or {}).get("key"),
                                             "error": str(row.get("error"))})
        # the same names as the local backend's batch output (core/batch.py), in one shard
        preds_path = output_dir / "predictions-00000-of-00001.jsonl"
        errors_path = output_dir / "errors-00000-of-00001.jsonl"
        atomic.write_text(errors_path, "".join(json.dumps(e) + "\n" for e in local_errors))
        atomic.write_text(preds_path, "".join(x + "\n" for x in out_lines))
        return BatchResult(output_dir=str(output_dir), predictions=predictions, errors=len(local_errors),
                           files=[str(preds_path), str(errors_path), *files])

    def _wait_batch(self, name: str, progress: ProgressFn | None) -> dict[str, Any]:
        deadline = time.monotonic() + self.settings.operation_deadline_s
        delay = min(1.0, self.settings.poll_interval_s)
        while True:
            bj = self.clients.call(self.clients.aiplatform.batchPredictionJobs().get(name=name), "Reading batch prediction")
            state = JobState.parse(bj.get("state", "JOB_STATE_PENDING"))
            stats = bj.get("completionStats") or {}
            if progress:
                progress(Progress("batch prediction", int(stats.get("successfulCount", 0) or 0), 0, state.short))
            if state is JobState.SUCCEEDED:
                return bj
            if state.terminal:
                err = (bj.get("error") or {}).get("message", state.short)
                raise CloudError(f"Batch prediction {name} ended {state.short}: {err}.",
                                 "Check the input lines and the model; the job's details are in the console.")
            if time.monotonic() + delay > deadline:
                raise CloudError(f"Batch prediction {name} is still running after genml's deadline.",
                                 "It goes on in Google Cloud; its output will be under gs://"
                                 f"{self.settings.bucket}/genml/batch/.")
            self._sleep(delay)
            delay = min(delay * 2, self.settings.poll_interval_s)


def _label(value: str) -> str:
    """A valid label value: lowercase letters, digits, - and _, at most 63 characters."""
    out = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in value.lower())
    return out[:63] or "x"
