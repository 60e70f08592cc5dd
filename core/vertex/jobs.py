"""Training on Vertex AI: a CustomJob running the trainer package, mirrored in the registry.

The job dir is gs://BUCKET/genml/jobs/ID/, read through GcsStore, so every pane shows a
cloud job like a local one. The local registry is a cache: non-terminal jobs are
refreshed from Vertex AI when they are read, and a submission interrupted between
registering the job and hearing back from customJobs.create is adopted on the next read.
"""
from __future__ import annotations

import secrets
import time
from typing import Any

from core.backend import LogChunk, TrainOptions
from core.errors import CloudError, GenmlError, InvalidInput, InvalidState, NotFound
from core.jobdir import JobDir, failure_message
from core.types import Job, JobState, ModelVersion
from core.vertex import datasets, images, preflight
from core.vertex import logs as cloud_logs
from core.vertex import storage as gcs
from core.vertex.context import Context, label, last, timestamp

SUBMIT_GRACE_S = 300     # a job with no CustomJob this long after submission failed to submit


def upload_trainer(ctx: Context) -> str:
    """The trainer sdist in the bucket, by content digest (uploaded once per version)."""
    from google.api_core import exceptions as gexc

    from core.vertex.packaging import build_sdist
    digest, fname, data = build_sdist()
    uri = ctx.settings.gs("packages", digest, fname)
    bucket, key = gcs.split_uri(uri)
    blob = ctx.clients.storage.bucket(bucket).blob(key)
    try:
        if not blob.exists():
            blob.upload_from_string(data, content_type="application/gzip", checksum="crc32c")
    except gexc.GoogleAPIError as exc:
        raise CloudError(f"Could not upload the trainer package to {uri}: {exc}.", "Try `genml vertex check`.") from exc
    return uri


def _launch(ctx: Context, package_uri: str, trainer_args: list[str]) -> dict[str, Any]:
    """The containerSpec that runs the trainer: a public TensorFlow image, the package from /gcs."""
    image = ctx.settings.training_image_uri()
    return {"imageUri": image, "command": ["python3", "-c", images.LAUNCHER],
            "args": [ctx.settings.gcs_mount(package_uri), *trainer_args]}


def custom_job_body(ctx: Context, job_id: str, dataset: str, options: TrainOptions,
                    package_uri: str) -> dict[str, Any]:
    """The CustomJob: pool 0 is the chief; --replicas N adds N-1 workers in pool 1.

    --replicas, when given (1 included), wins over the profile's `replicas`.
    """
    s = ctx.settings
    job_uri = s.gs("jobs", job_id)
    args = ["--data-dir", s.gcs_mount(ctx.dataset_uri(dataset)), "--job-dir", s.gcs_mount(job_uri),
            *options.trainer_args()]
    machine: dict[str, Any] = {"machineType": options.machine_type or s.machine_type}
    if s.uses_gpu:
        machine.update(acceleratorType=s.accelerator_type, acceleratorCount=s.accelerator_count)
    replicas = options.replicas if options.replicas is not None else s.replicas
    if replicas < 1:
        raise InvalidInput(f"--replicas must be at least 1, not {replicas}.", "Use 1 for a single machine.")
    pools: list[dict[str, Any]] = [{"machineSpec": machine, "replicaCount": "1",
                                    "containerSpec": _launch(ctx, package_uri, args),
                                    "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100}}]
    if replicas > 1:
        pools.append(dict(pools[0], replicaCount=str(replicas - 1)))
    job_spec: dict[str, Any] = {"workerPoolSpecs": pools, "baseOutputDirectory": {"outputUriPrefix": job_uri}}
    if s.service_account:
        job_spec["serviceAccount"] = s.service_account
    return {"displayName": f"genml-{job_id}", "jobSpec": job_spec,
            "labels": {"genml": "1", "genml-job": label(job_id), "genml-dataset": label(dataset)}}


def _with_package(ctx: Context, pool: dict[str, Any], package_uri: str) -> dict[str, Any]:
    """A saved worker pool, re-pointed at a freshly uploaded package (a job saved before
    genml left the prebuilt images moves from pythonPackageSpec to containerSpec)."""
    if "containerSpec" in pool:
        trainer_args = list(pool["containerSpec"].get("args", []))[1:]
    else:
        trainer_args = list((pool.get("pythonPackageSpec") or {}).get("args", []))
    out = {k: v for k, v in pool.items() if k not in ("pythonPackageSpec", "containerSpec")}
    out["containerSpec"] = _launch(ctx, package_uri, trainer_args)
    return out


def _find_custom_job(ctx: Context, display_name: str) -> dict[str, Any] | None:
    req = ctx.clients.aiplatform.customJobs().list(parent=ctx.settings.parent,
                                                   filter=f'display_name="{display_name}"', pageSize=10)
    found = ctx.clients.call(req, "Looking for the submitted job").get("customJobs", [])
    return found[0] if found else None


def submit(ctx: Context, dataset: str, options: TrainOptions) -> Job:
    ds = ctx.registry.get_dataset(dataset)
    options = options.for_dataset(ds)      # checked here, before any upload or cloud call
    s = preflight.ready(ctx)
    images.require_available(s.training_image_uri(), "submit the training job", ctx.today())
    preflight.billing_notice(ctx)
    datasets.upload(ctx, dataset)
    package = upload_trainer(ctx)
    job_id = time.strftime("vx-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)
    body = custom_job_body(ctx, job_id, dataset, options, package)
    opts = {k: v for k, v in vars(options).items() if v not in (None, [], "")}
    job = Job(id=job_id, dataset=ds.name, state=JobState.QUEUED, backend="vertex", created=time.time(),
              job_dir=s.gs("jobs", job_id), options=opts, max_steps=int(options.max_steps or 0),
              remote={"profile": s.name, "project": s.project, "region": s.region, "package": package,
                      "body": body})
    ctx.registry.add_job(job)
    return _create(ctx, job, body)


def _create(ctx: Context, job: Job, body: dict[str, Any]) -> Job:
    req = ctx.clients.aiplatform.customJobs().create(parent=ctx.settings.parent, body=body)
    try:
        created = ctx.clients.call(req, "Submitting the training job",
                                   before_retry=lambda: _find_custom_job(ctx, body["displayName"]))
    except GenmlError as exc:
        ctx.registry.update_job(job.id, state=JobState.FAILED, ended=time.time(), error=exc.message)
        raise
    remote = dict(job.remote, name=created["name"], job_id=last(created["name"]),
                  console=f"https://console.cloud.google.com/vertex-ai/locations/{ctx.settings.region}/"
                          f"training/{last(created['name'])}/cpu?project={ctx.settings.project}")
    remote.setdefault("history", []).append(created["name"])
    ctx.registry.update_job(job.id, remote=remote, state=JobState.parse(created.get("state", JobState.QUEUED.value)),
                            error="", ended=None)
    return ctx.registry.get_job(job.id)


def vertex_job(ctx: Context, job_id: str) -> Job:
    job = ctx.registry.get_job(job_id)
    if job.backend != "vertex":
        raise NotFound(f"Job {job_id} is a {job.backend} job, not a Vertex AI one.",
                       f"Use `genml --backend {job.backend} jobs ...`.")
    return job


def refresh(ctx: Context, job: Job, force: bool = False) -> Job:
    """Update a job from Vertex AI (state, times, error) and from its job dir (step, speed)."""
    name = job.remote.get("name")
    if not name and not job.state.terminal:
        return _recover_submission(ctx, job)
    if not name or (job.state.terminal and job.remote.get("final")):
        return job
    now = time.monotonic()
    if now - ctx.refreshed.get(job.id, -1e9) < (0.0 if force else ctx.settings.refresh_interval_s):
        return job
    ctx.refreshed[job.id] = now
    cj = ctx.clients.call(ctx.clients.aiplatform.customJobs().get(name=name), f"Reading job {job.id}")
    state = JobState.parse(cj.get("state", JobState.PENDING.value))
    values: dict[str, Any] = {"state": state, "started": timestamp(cj.get("startTime")),
                              "ended": timestamp(cj.get("endTime"))}
    jd = JobDir(gcs.GcsStore(job.job_dir, ctx.clients.storage))
    if state is JobState.RUNNING or state.terminal:
        values.update(jd.progress())
    if state.terminal:
        remote = dict(job.remote, final=True)
        if state is JobState.FAILED:
            # Vertex's own message is usually just "replica workerpool0-0 exited with a non-zero
            # status"; the trainer's status.json and its stderr say why.
            tail = cloud_logs.last_errors(ctx.clients, last(name), since=job.created)
            values["error"] = failure_message((cj.get("error") or {}).get("message", ""),
                                              jd.status().get("error") or "", "\n".join(tail),
                                              log_title="Last errors in the log")
        values["remote"] = remote
    ctx.registry.update_job(job.id, **values)
    return ctx.registry.get_job(job.id)


def _recover_submission(ctx: Context, job: Job) -> Job:
    """genml stopped between registering a job and hearing back from customJobs.create:
    adopt the CustomJob if it exists, else call the submission failed after a grace period."""
    body = job.remote.get("body") or {}
    found = _find_custom_job(ctx, body.get("displayName", f"genml-{job.id}")) if body else None
    if found:
        remote = dict(job.remote, name=found["name"], job_id=last(found["name"]))
        remote.setdefault("history", []).append(found["name"])
        ctx.registry.update_job(job.id, remote=remote, state=JobState.parse(found.get("state", JobState.QUEUED.value)))
        return ctx.registry.get_job(job.id)
    if time.time() - job.created > SUBMIT_GRACE_S:
        ctx.registry.update_job(job.id, state=JobState.FAILED, ended=time.time(),
                                error="The submission to Vertex AI did not complete.")
        return ctx.registry.get_job(job.id)
    return job


def mine(ctx: Context, item: Job | ModelVersion) -> bool:
    """A Vertex AI record of this profile: saved with its name, or (records from before
    profiles were saved) with its project and region."""
    if item.backend != "vertex":
        return False
    remote = item.remote or {}
    if remote.get("profile"):
        return bool(remote["profile"] == ctx.settings.name)
    return bool(remote.get("project", ctx.settings.project) == ctx.settings.project
                and remote.get("region", ctx.settings.region) == ctx.settings.region)


def list_jobs(ctx: Context) -> list[Job]:
    """This profile's jobs, refreshed from Vertex AI; what genml knew when it cannot ask
    (then `ctx.last_refresh_error` says why, for the all-backends list)."""
    out = []
    ctx.last_refresh_error = ""
    try:
        ctx.settings.validate()
        ctx.clients.credentials          # no network for a key file or ADC; says so when there are none
    except GenmlError as exc:
        ctx.last_refresh_error = exc.message
        return [j for j in ctx.registry.list_jobs() if mine(ctx, j)]
    for j in ctx.registry.list_jobs():
        if not mine(ctx, j):
            continue
        try:
            out.append(refresh(ctx, j))
        except GenmlError as exc:
            ctx.last_refresh_error = exc.message
            out.append(j)       # offline, throttled, no credentials: show what we knew
    return out


def get(ctx: Context, job_id: str) -> Job:
    return refresh(ctx, vertex_job(ctx, job_id))


def cancel(ctx: Context, job_id: str) -> Job:
    job = refresh(ctx, vertex_job(ctx, job_id), force=True)
    if job.state.terminal:
        raise InvalidState(f"Job {job_id} has already ended ({job.state.short}).", "Nothing to cancel.")
    name = job.remote.get("name")
    if not name:                      # never reached Vertex AI
        ctx.registry.update_job(job_id, state=JobState.CANCELLED, ended=time.time())
        return ctx.registry.get_job(job_id)
    ctx.clients.call(ctx.clients.aiplatform.customJobs().cancel(name=name, body={}), f"Cancelling job {job_id}")
    ctx.registry.update_job(job_id, state=JobState.CANCELLING)
    ctx.refreshed.pop(job_id, None)
    return ctx.registry.get_job(job_id)


def resume(ctx: Context, job_id: str) -> Job:
    """A CustomJob cannot be restarted, so a new one runs on the same job dir; the trainer
    resumes from the checkpoints there."""
    job = refresh(ctx, vertex_job(ctx, job_id), force=True)
    if job.state not in (JobState.FAILED, JobState.CANCELLED):
        raise InvalidState(f"Job {job_id} is {job.state.short}; only failed or cancelled jobs can be resumed.",
                           "Wait for it to end, or cancel it first.")
    preflight.ready(ctx)
    images.require_available(ctx.settings.training_image_uri(), "resume the training job", ctx.today())
    preflight.billing_notice(ctx)
    body = dict(job.remote.get("body") or {})
    if not body:
        raise InvalidState(f"Job {job_id} has no saved request to resume from.", "Submit a new job.")
    body["displayName"] = f"genml-{job_id}-r{len(job.remote.get('history', []))}"
    package = upload_trainer(ctx)
    body["jobSpec"] = dict(body["jobSpec"], workerPoolSpecs=[
        _with_package(ctx, p, package) for p in body["jobSpec"]["workerPoolSpecs"]])
    remote = {k: v for k, v in job.remote.items() if k != "final"}
    ctx.registry.update_job(job_id, state=JobState.QUEUED, ended=None, error="", remote=remote)
    ctx.refreshed.pop(job_id, None)
    return _create(ctx, ctx.registry.get_job(job_id), body)


def read_log(ctx: Context, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk:
    job = vertex_job(ctx, job_id)
    numeric = job.remote.get("job_id")
    if not numeric:
        return LogChunk([], cursor)
    chunk = cloud_logs.read(ctx.clients, str(numeric), cursor, max_lines, since=job.created)
    if not chunk.lines and (cursor or {}).get("ns") is None and not (cursor or {}).get("noted") \
            and job.state in (JobState.QUEUED, JobState.PENDING):
        # the commonest question about a new cloud job: why is the log empty?
        chunk.lines = ["(genml) Vertex AI is provisioning machines; the log starts when the job runs. "
                       "This often takes a few minutes."]
        chunk.cursor = dict(chunk.cursor, noted=True)
    return chunk
