"""The detached supervisor of one local training job: `python -m core.local.runner JOB_ID`.

Started by core/local/jobs.py in its own session (so it survives the terminal). It
1. waits in JOB_STATE_QUEUED for a concurrency slot: `max_concurrent_jobs` lock files
   under jobs/.slots taken with flock, which the kernel releases if we die, so a crashed
   job can never hold a slot; queued jobs start oldest first;
2. runs `python -m trainer.task` as its child, output appended to jobs/ID/train.log;
3. mirrors the trainer's progress (status.json) into the registry while it runs;
4. records the final state from the exit code and status.json (docs/contracts.md:
   0 succeeded, 2 bad input, 1 other failure, 143 after SIGTERM = cancelled).
SIGTERM to this process (what `genml jobs cancel` sends) is forwarded to the trainer,
which checkpoints and stops. Every state change is a compare-and-set on the registry so
a concurrent cancel or reconcile is never overwritten.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from core import config as config_mod
from core.errors import GenmlError
from core.jobdir import JobDir, failure_message
from core.local import jobs as jobs_mod
from core.local import logs, procs
from core.registry import Registry
from core.types import Job, JobState
from core.workspace import Workspace
from trainer.contract import DEFAULT_PRESET, MODEL, SAVED_MODEL, TRAIN_LOG

POLL_S = 0.5
PROGRESS_EVERY_S = 2.0


class Runner:
    def __init__(self, ws: Workspace, job_id: str) -> None:
        self.ws = ws
        self.registry = Registry(ws.registry_path)
        self.job_id = job_id
        self.child: subprocess.Popen[bytes] | None = None
        self.cancel_requested = False
        self.slot: IO[bytes] | None = None
        self.log = open(Path(self.job.job_dir) / TRAIN_LOG, "ab", buffering=0)

    @property
    def job(self) -> Job:
        return self.registry.get_job(self.job_id)

    def say(self, text: str) -> None:
        self.log.write(f"genml: {time.strftime('%H:%M:%S')} {text}\n".encode())

    def on_sigterm(self, signum: int, frame: object) -> None:
        self.cancel_requested = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    # ---- 1. a slot --------------------------------------------------------------------
    def _try_slot(self, slots: int) -> IO[bytes] | None:
        d = self.ws.jobs_dir / ".slots"
        d.mkdir(exist_ok=True)
        for i in range(slots):
            f = open(d / f"slot-{i}.lock", "ab")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return f
            except OSError:
                f.close()
        return None

    def _my_turn(self, slots: int) -> bool:
        """Oldest queued first: start only if fewer older jobs wait than slots are free."""
        jobs_mod.reconcile(self.registry)
        queued = sorted(self.registry.list_jobs([JobState.QUEUED]),
                        key=lambda j: (float(j.remote.get("spawned_at", j.created)), j.id))
        ahead = next((i for i, j in enumerate(queued) if j.id == self.job_id), 0)
        running = len([j for j in self.registry.list_jobs([JobState.RUNNING, JobState.CANCELLING])
                       if j.backend == "local"])
        return ahead == 0 or ahead < slots - running

    def wait_for_slot(self) -> bool:
        announced = False
        while True:
            job = self.job
            if job.state is not JobState.QUEUED or self.cancel_requested:
                if job.state is JobState.QUEUED:
                    self.registry.update_job(self.job_id, expect=[JobState.QUEUED], state=JobState.CANCELLED,
                                             ended=time.time(), error="Cancelled before it started.")
                    job = self.job
                self.say("cancelled while queued" if job.state is JobState.CANCELLED
                         else f"not starting: the job is now {job.state.short}")
                return False
            slots = config_mod.load().max_concurrent_jobs
            f = self._try_slot(slots)
            if f is not None and self._my_turn(slots):
                self.slot = f
                return True
            if f is not None:
                f.close()
            if not announced:
                self.say(f"queued: waiting for one of {slots} training slot(s) "
                         "(set [local] max_concurrent_jobs in the config to change)")
                announced = True
            time.sleep(POLL_S)

    # ---- 2. the trainer ---------------------------------------------------------------
    def trainer_command(self, job: Job) -> list[str]:
        ds = self.registry.get_dataset(job.dataset)
        args = list(job.options.get("args") or ["--preset", job.options.get("preset", DEFAULT_PRESET)])
        return [sys.executable, "-m", "trainer.task", "--data-dir", ds.path, "--job-dir", job.job_dir, *args]

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_sigterm)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if not self.wait_for_slot():
            return 0
        now = time.time()
        if not self.registry.update_job(self.job_id, expect=[JobState.QUEUED], state=JobState.RUNNING, started=now):
            self.say(f"not starting: the job is now {self.job.state.short}")
            return 0
        job = self.job
        try:
            cmd = self.trainer_command(job)
        except GenmlError as exc:
            self.finish(JobState.FAILED, f"{exc.message}", 0)
            return 1
        self.say("starting: " + " ".join(cmd))
        env = jobs_mod.child_env(self.ws)
        try:
            self.child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                          cwd=job.job_dir, env=env, close_fds=True)
        except OSError as exc:
            self.finish(JobState.FAILED, f"Could not start the trainer: {exc}", 0)
            return 1
        remote = dict(job.remote, trainer_pid=self.child.pid, trainer_start=procs.start_time(self.child.pid))
        self.registry.update_job(self.job_id, remote=remote)
        if self.cancel_requested:          # SIGTERM arrived between the slot and the Popen
            self.child.send_signal(signal.SIGTERM)
        rc = self.watch()
        return self.settle(rc)

    def watch(self) -> int:
        assert self.child is not None
        jd = JobDir(self.job.job_dir)
        while True:
            try:
                return self.child.wait(timeout=PROGRESS_EVERY_S)
            except subprocess.TimeoutExpired:
                values = jd.progress()
                if values:
                    self.registry.update_job(self.job_id, expect=[JobState.RUNNING, JobState.CANCELLING], **values)

    # ---- 3. the end -------------------------------------------------------------------
    def settle(self, rc: int) -> int:
        job = self.job
        jd = JobDir(job.job_dir)
        status = jd.status()
        step = int(status.get("step", job.step) or 0)
        self.say(f"trainer exited with code {rc}")
        if rc == 0 and jd.has_model():
            self.finish(JobState.SUCCEEDED, "", step)
        elif rc == 0:
            self.finish(JobState.FAILED, f"The trainer finished but wrote no model ({MODEL}/{SAVED_MODEL}).", step)
        elif rc in (143, -signal.SIGTERM) or status.get("state") == JobState.CANCELLED.value:
            self.finish(JobState.CANCELLED, "Cancelled; resume with `genml jobs resume`." if self.cancel_requested
                        else "Stopped by SIGTERM; resume with `genml jobs resume`.", step)
        else:
            seen = (f"The trainer was killed by signal {signal.Signals(-rc).name}." if rc < 0
                    else f"The trainer failed (exit code {rc}).")
            self.finish(JobState.FAILED, failure_message(seen, status.get("error") or "",
                                                         logs.last_lines(Path(job.job_dir) / TRAIN_LOG, 10)), step)
        return 0

    def finish(self, state: JobState, error: str, step: int) -> None:
        self.registry.update_job(self.job_id, expect=[JobState.RUNNING, JobState.CANCELLING, JobState.QUEUED],
                                 state=state, error=error, ended=time.time(), step=step)
        self.say(f"job {state.short}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m core.local.runner JOB_ID", file=sys.stderr)
        return 2
    ws = Workspace.open(os.environ.get("GENML_HOME"))
    try:
        return Runner(ws, argv[0]).run()
    except GenmlError as exc:
        print(f"genml: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
