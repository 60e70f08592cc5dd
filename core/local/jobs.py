"""Local training jobs: submit, reconcile, cancel, resume, logs.

Each job gets a small detached supervisor (`python -m core.local.runner JOB_ID`, see
runner.py) in its own session, so it outlives the terminal, an SSH drop and the TUI. The
supervisor waits for a concurrency slot, runs `python -m trainer.task` as its child and
records the final state. This module is what the CLI/TUI process does: it never waits on
a job; it writes the registry row, starts the supervisor and returns.

Reconcile runs on every backend open: a job that claims to be QUEUED/RUNNING but whose
supervisor and trainer are both gone (checked by pid, kernel start time and command line,
see procs.py) gets its final state from status.json, or FAILED with its last log lines.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import core
from core.backend import LogChunk, TrainOptions
from core.errors import AlreadyExists, InvalidInput, InvalidState, NotFound
from core.jobdir import JobDir, failure_message
from core.local import logs, procs
from core.registry import Registry
from core.types import Job, JobState
from core.workspace import Workspace
from trainer.contract import DATASET_MANIFEST, TRAIN_LOG

SPAWN_GRACE_S = 60.0     # a row without a supervisor pid yet is "starting" for this long


def new_job_id(registry: Registry, dataset: str, now: float | None = None, jobs_dir: Path | None = None) -> str:
    """Readable and sortable: DATASET-YYYYMMDD-HHMMSS, with -2, -3... when taken (in the
    registry, or on disk by a job dir whose registry row is gone)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-.") or "job"
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now or time.time()))}"
    taken = {j.id for j in registry.list_jobs()}

    def free(job_id: str) -> bool:
        return job_id not in taken and not (jobs_dir is not None and (jobs_dir / job_id).exists())

    if free(base):
        return base
    n = 2
    while not free(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def code_root() -> Path:
    """The folder holding the core/ and trainer/ packages (a checkout or site-packages)."""
    return Path(core.__file__).resolve().parent.parent


def child_env(ws: Workspace) -> dict[str, str]:
    env = dict(os.environ)
    env["GENML_HOME"] = str(ws.root)
    root = str(code_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")     # keep train.log about training, not TF's start-up chatter
    return env


def spawn_runner(ws: Workspace, registry: Registry, job: Job) -> int:
    """Start the detached supervisor and record its identity (pid + kernel start time)."""
    job_dir = Path(job.job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    with open(job_dir / TRAIN_LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "core.local.runner", job.id],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(ws.root), env=child_env(ws), start_new_session=True, close_fds=True)
    remote = dict(job.remote, runner_start=procs.start_time(proc.pid))
    registry.update_job(job.id, pid=proc.pid, remote=remote)
    return proc.pid


def submit(ws: Workspace, registry: Registry, dataset: str, options: TrainOptions) -> Job:
    ds = registry.get_dataset(dataset)
    if not (Path(ds.path) / DATASET_MANIFEST).exists():
        raise InvalidState(f"The dataset {dataset!r} is incomplete (no {DATASET_MANIFEST} in {ds.path}).",
                           f"Add it again: genml dataset rm {dataset} && genml dataset add PATH --name {dataset}.")
    options = options.for_dataset(ds)    # checked (the trainer's own parser too) before a process starts
    args = options.trainer_args()
    opts: dict[str, Any] = {k: v for k, v in vars(options).items() if v not in (None, [], "")}
    opts["args"] = args
    now = time.time()
    for _ in range(20):   # another process may take the same second's id between list and insert
        job_id = new_job_id(registry, dataset, now, ws.jobs_dir)
        job = Job(id=job_id, dataset=dataset, state=JobState.QUEUED, backend="local", created=now,
                  job_dir=str(ws.job_dir(job_id)), options=opts, max_steps=options.max_steps or 0,
                  remote={"spawned_at": now})
        try:
            registry.add_job(job)
            break
        except AlreadyExists:
            continue
    else:  # pragma: no cover - twenty collisions in one second
        raise InvalidState("Could not pick a free job id.", "Try again.")
    spawn_runner(ws, registry, job)
    return registry.get_job(job.id)


def _ours(job: Job) -> tuple[bool, bool]:
    """(supervisor alive, trainer alive) for a job, each checked by pid, start time and command line."""
    runner = procs.is_ours(job.pid, job.id, job.remote.get("runner_start"))
    tpid = job.remote.get("trainer_pid")
    trainer = bool(tpid) and procs.is_ours(tpid, job.id, job.remote.get("trainer_start"))
    return runner, trainer


def final_state_from_dir(job: Job) -> tuple[JobState, str]:
    """What a job whose processes are gone ended as: status.json if it says so, else FAILED."""
    jd = JobDir(job.job_dir)
    status = jd.status()
    state = status.get("state", "")
    if state == JobState.SUCCEEDED.value and jd.has_model():
        return JobState.SUCCEEDED, ""
    if state == JobState.CANCELLED.value or job.state is JobState.CANCELLING:
        return JobState.CANCELLED, ""
    return JobState.FAILED, failure_message(
        "The job's process ended without finishing (killed, out of memory, or the machine restarted).",
        status.get("error") or "", logs.last_lines(Path(job.job_dir) / TRAIN_LOG, 10))


def reconcile(registry: Registry, now: float | None = None) -> list[str]:
    """Settle jobs whose processes died without recording an end. Returns the ids it changed."""
    now = now or time.time()
    changed = []
    for job in registry.list_jobs(JobState.actives()):
        if job.backend != "local":
            continue
        if job.pid is None and now - float(job.remote.get("spawned_at", job.created)) < SPAWN_GRACE_S:
            continue   # its supervisor is being started right now
        runner, trainer = _ours(job)
        if runner or trainer:
            continue
        state, error = final_state_from_dir(job)
        step = JobDir(job.job_dir).progress().get("step", job.step)
        if registry.update_job(job.id, expect=[job.state], state=state, error=error, ended=now, step=step):
            changed.append(job.id)
    return changed


def refresh(job: Job) -> Job:
    """Overlay live progress from status.json on a running job's registry row."""
    if job.state in (JobState.RUNNING, JobState.CANCELLING) and job.backend == "local":
        for key, value in JobDir(job.job_dir).progress().items():
            setattr(job, key, value)
    return job


def cancel(registry: Registry, job_id: str) -> Job:
    job = registry.get_job(job_id)
    if job.state.terminal:
        raise InvalidState(f"Job {job_id} has already ended ({job.state.short}).",
                           "Only queued or running jobs can be cancelled.")
    if job.state in (JobState.QUEUED, JobState.PENDING):
        if registry.update_job(job_id, expect=[job.state], state=JobState.CANCELLED, ended=time.time(),
                               error="Cancelled before it started."):
            procs.signal_if_ours(job.pid, job.id, signal.SIGTERM, job.remote.get("runner_start"))
            return registry.get_job(job_id)
        return cancel(registry, job_id)   # it started meanwhile: cancel the running job
    registry.update_job(job_id, expect=[JobState.RUNNING], state=JobState.CANCELLING)
    # the supervisor forwards SIGTERM to the trainer, which checkpoints and exits 143
    if not procs.signal_if_ours(job.pid, job.id, signal.SIGTERM, job.remote.get("runner_start")):
        procs.signal_if_ours(job.remote.get("trainer_pid"), job.id, signal.SIGTERM, job.remote.get("trainer_start"))
    reconcile(registry)
    return registry.get_job(job_id)


def resume(ws: Workspace, registry: Registry, job_id: str) -> Job:
    job = registry.get_job(job_id)
    if job.state is JobState.SUCCEEDED:
        raise InvalidState(f"Job {job_id} already succeeded.",
                           "Deploy it with `genml models deploy JOB`, or train a new job with more steps.")
    if not job.state.terminal:
        raise InvalidState(f"Job {job_id} is still {job.state.short}.", "Wait for it to end, or cancel it first.")
    if job.backend != "local":
        raise InvalidState(f"Job {job_id} ran on {job.backend}, not on this machine.",
                           "Resume it with --backend vertex.")
    registry.get_dataset(job.dataset)   # still there?
    remote = {k: v for k, v in job.remote.items() if k not in ("trainer_pid", "trainer_start", "runner_start")}
    remote["spawned_at"] = time.time()
    remote["resumed"] = int(remote.get("resumed", 0)) + 1
    if not registry.update_job(job_id, expect=[job.state], state=JobState.QUEUED, error="", ended=None,
                               pid=None, remote=remote):
        raise InvalidState(f"Job {job_id} changed while resuming.", "Look at `genml jobs show` and try again.")
    with open(Path(job.job_dir) / TRAIN_LOG, "ab") as log:
        log.write(f"genml: {time.strftime('%H:%M:%S')} resuming job {job_id} from its last checkpoint\n".encode())
    spawn_runner(ws, registry, registry.get_job(job_id))
    return registry.get_job(job_id)


def read_log(registry: Registry, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk:
    job = registry.get_job(job_id)
    path = Path(job.job_dir) / TRAIN_LOG
    done = job.state.terminal
    if cursor is None:
        lines, pos = logs.tail(path, max_lines, include_partial=done)
    else:
        try:
            pos = int(cursor)
        except (TypeError, ValueError):
            raise InvalidInput(f"{cursor!r} is not a log cursor.", "Pass back the cursor read_log returned.") from None
        lines, pos = logs.forward(path, pos, max_lines, include_partial=done)
    return LogChunk(lines=lines, cursor=pos)


def get(registry: Registry, job_id: str) -> Job:
    try:
        return refresh(registry.get_job(job_id))
    except NotFound:
        matches = [j for j in registry.list_jobs() if j.id.startswith(job_id)]
        if len(matches) == 1:
            return refresh(matches[0])
        raise
