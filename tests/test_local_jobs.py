"""Local jobs: ids, logs, reconcile, the concurrency queue, cancel, SIGKILL + resume (real processes)."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.backend import TrainOptions
from core.errors import InvalidState
from core.local import jobs, logs, procs
from core.local.backend import LocalBackend
from core.registry import Registry
from core.types import Job, JobState
from core.workspace import Workspace
from tests.local_support import register_tiny_dataset, wait_for


def _row(ws: Workspace, job_id: str, state: JobState = JobState.RUNNING, **kw: object) -> Job:
    d = ws.job_dir(job_id)
    d.mkdir(parents=True, exist_ok=True)
    job = Job(id=job_id, dataset="x", state=state, created=time.time() - 3600, job_dir=str(d), **kw)  # type: ignore[arg-type]  # Job fields
    Registry(ws.registry_path).add_job(job)
    return job


def _sleeper(marker: str) -> subprocess.Popen[bytes]:
    """A child that holds `marker` in its command line; returned only once it has exec'd
    (between fork and exec /proc/PID/cmdline is still the parent's)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])
    deadline = time.monotonic() + 30
    while not any(marker in a for a in procs.cmdline(p.pid)):
        assert time.monotonic() < deadline, "the child never exec'd"
        time.sleep(0.01)    # polling interval; the condition decides
    return p


def test_job_ids_are_readable_and_never_reused(workspace: Workspace) -> None:
    reg = Registry(workspace.registry_path)
    t = time.mktime((2026, 11, 28, 17, 30, 5, 0, 0, -1))
    first = jobs.new_job_id(reg, "my faces!", t)
    assert first == "my-faces-20261128-173005"
    _row(workspace, first)
    assert jobs.new_job_id(reg, "my faces!", t) == first + "-2"


def test_log_tail_reads_from_the_end_and_follows_by_byte_cursor(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        for i in range(200_000):                      # ~3 MB: tail must not need all of it
            f.write(f"line {i}\n")
    lines, cursor = logs.tail(log, 3)
    assert lines == ["line 199997", "line 199998", "line 199999"]
    assert cursor == log.stat().st_size
    with open(log, "a") as f:
        f.write("new one\nhalf a li")
    lines, cursor2 = logs.forward(log, cursor, 100)
    assert lines == ["new one"]                       # the partial line waits for its newline
    with open(log, "a") as f:
        f.write("ne\n")
    lines, _ = logs.forward(log, cursor2, 100)
    assert lines == ["half a line"]
    lines, c = logs.forward(log, 0, 2)                # max_lines bounds a read
    assert lines == ["line 0", "line 1"] and c == len(b"line 0\nline 1\n")
    assert logs.tail(tmp_path / "missing.log", 5) == ([], 0)


def test_read_log_through_the_backend(workspace: Workspace) -> None:
    job = _row(workspace, "j-1", JobState.SUCCEEDED)
    Path(job.job_dir, "train.log").write_text("".join(f"{i}\n" for i in range(10)) + "last, no newline")
    b = LocalBackend(workspace)
    chunk = b.read_log("j-1", None, 3)
    assert chunk.lines == ["8", "9", "last, no newline"]     # a finished job's partial line is shown
    assert b.read_log("j-1", chunk.cursor).lines == []


def test_process_identity_needs_pid_start_time_and_marker() -> None:
    p = _sleeper("job-abc")
    try:
        st = procs.start_time(p.pid)
        assert st is not None
        assert procs.is_ours(p.pid, "job-abc", st)
        assert not procs.is_ours(p.pid, "job-xyz", st)          # someone else's process
        assert not procs.is_ours(p.pid, "job-abc", st + 1)      # same pid, different process (reused)
    finally:
        p.kill()
        p.wait()
    assert not procs.alive(p.pid)


def test_a_process_still_in_exec_is_ours_by_its_start_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after Popen returns, /proc/PID/cmdline can still be empty (exec closes the
    close-on-exec pipe Popen waits on before the kernel places the new argv): a reconcile
    in that moment must not take the job's new supervisor for a stranger and fail the job.
    The moment cannot be hit on demand, so the empty command line is stood in for."""
    p = _sleeper("job-abc")
    try:
        st = procs.start_time(p.pid)
        monkeypatch.setattr(procs, "cmdline", lambda pid: [])
        assert procs.is_ours(p.pid, "job-abc", st)
        assert not procs.is_ours(p.pid, "job-abc", st + 1)      # a reused pid still is not
        assert not procs.is_ours(p.pid, "job-abc")              # nor an unknown start time
    finally:
        p.kill()
        p.wait()


def test_reconcile_fails_a_job_whose_processes_died_with_its_last_log_lines(workspace: Workspace) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass", "dead-1"])
    dead.wait()
    job = _row(workspace, "dead-1", pid=dead.pid, remote={"runner_start": 1})
    Path(job.job_dir, "train.log").write_text("step 1\nstep 2\nTraceback: out of memory\n")
    LocalBackend(workspace)                                   # every open reconciles
    got = Registry(workspace.registry_path).get_job("dead-1")
    assert got.state is JobState.FAILED
    assert "out of memory" in got.error and "ended without finishing" in got.error
    assert got.ended


def test_a_long_lived_backend_notices_a_job_dying(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _sleeper("later-1")
    _row(workspace, "later-1", pid=p.pid, remote={"runner_start": procs.start_time(p.pid)})
    b = LocalBackend(workspace)                               # e.g. the TUI, open for hours
    assert b.get_job("later-1").state is JobState.RUNNING
    p.kill()
    p.wait()
    monkeypatch.setattr(LocalBackend, "RECONCILE_EVERY_S", 0.0)
    assert [j.state for j in b.list_jobs()] == [JobState.FAILED]


def test_reconcile_keeps_live_jobs_and_catches_reused_pids(workspace: Workspace) -> None:
    p = _sleeper("live-1 live-2")
    try:
        _row(workspace, "live-1", pid=p.pid, remote={"runner_start": procs.start_time(p.pid)})
        _row(workspace, "live-2", pid=p.pid, remote={"runner_start": (procs.start_time(p.pid) or 0) + 7})
        reg = Registry(workspace.registry_path)
        assert jobs.reconcile(reg) == ["live-2"]
        assert reg.get_job("live-1").state is JobState.RUNNING
        assert reg.get_job("live-2").state is JobState.FAILED
    finally:
        p.kill()
        p.wait()


def test_reconcile_takes_the_final_state_from_status_json(workspace: Workspace) -> None:
    job = _row(workspace, "done-1", pid=None)
    d = Path(job.job_dir)
    (d / "model").mkdir()
    (d / "model" / "saved_model.pb").write_bytes(b"x")
    (d / "status.json").write_text(json.dumps({"state": "JOB_STATE_SUCCEEDED", "step": 12}))
    reg = Registry(workspace.registry_path)
    jobs.reconcile(reg)
    got = reg.get_job("done-1")
    assert got.state is JobState.SUCCEEDED and got.step == 12


def test_a_job_being_spawned_is_left_alone(workspace: Workspace) -> None:
    _row(workspace, "new-1", JobState.QUEUED, pid=None, remote={"spawned_at": time.time()})
    reg = Registry(workspace.registry_path)
    assert jobs.reconcile(reg) == []
    assert jobs.reconcile(reg, now=time.time() + 3600) == ["new-1"]


def test_jobs_queue_for_a_slot_start_when_it_frees_and_cancel_in_either_state(workspace: Workspace) -> None:
    """Real supervisors: two jobs wait in QUEUED while the only slot is taken; one is cancelled
    while queued; the other starts its trainer when the slot frees and is cancelled while
    running (SIGTERM forwarded to the trainer, CANCELLED recorded). That the trainer writes a
    checkpoint on SIGTERM is the trainer's own test."""
    register_tiny_dataset(workspace, "fake")             # a real dataset: the trainer must live until cancelled
    from core import config
    config.save(config.Config(max_concurrent_jobs=1))    # the default depends on the core count
    slots = workspace.jobs_dir / ".slots"
    slots.mkdir()
    holder = open(slots / "slot-0.lock", "ab")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    b = LocalBackend(workspace)
    long = TrainOptions(preset="tiny", max_steps=1_000_000)
    first = b.submit_job("fake", long)
    second = b.submit_job("fake", long)
    try:
        assert first.state is JobState.QUEUED and first.pid and second.id != first.id
        for job in (first, second):
            log = Path(job.job_dir) / "train.log"
            wait_for(lambda: "queued: waiting" in log.read_text(), 30, what="the supervisors to queue")
        assert LocalBackend(workspace).get_job(first.id).state is JobState.QUEUED     # reconcile leaves them
        assert b.cancel_job(second.id).state is JobState.CANCELLED
        wait_for(lambda: not procs.alive(second.pid), 30, what="the cancelled supervisor to exit")
        with pytest.raises(InvalidState):
            b.cancel_job(second.id)
    finally:
        holder.close()                                      # the slot frees: the first job starts

    running = wait_for(lambda: (j := b.get_job(first.id)).state is JobState.RUNNING
                       and j.remote.get("trainer_pid") and j, 30, what="the first job to start")
    tpid = running.remote["trainer_pid"]
    try:
        assert procs.is_ours(tpid, first.id, running.remote["trainer_start"]), (
            tpid, first.id, running.remote, procs.alive(tpid), procs.start_time(tpid), procs.cmdline(tpid))
        assert b.cancel_job(first.id).state in (JobState.CANCELLING, JobState.CANCELLED)
    finally:
        if b.get_job(first.id).state is JobState.RUNNING:   # a failed check above: leave no trainer behind
            b.cancel_job(first.id)
    wait_for(lambda: b.get_job(first.id).state is JobState.CANCELLED, 30, what="CANCELLED")
    wait_for(lambda: not procs.alive(tpid) and not procs.alive(first.pid), 30, what="both processes to exit")


def test_refusals_name_the_state(workspace: Workspace) -> None:
    _row(workspace, "ok-1", JobState.SUCCEEDED)
    b = LocalBackend(workspace)
    with pytest.raises(InvalidState, match="already succeeded"):
        b.resume_job("ok-1")
    with pytest.raises(InvalidState, match="already ended"):
        b.cancel_job("ok-1")
    assert b.get_job("ok").id == "ok-1"                      # a unique prefix is enough


@pytest.mark.slow
def test_sigkill_is_reconciled_to_failed_and_resume_finishes_the_job(workspace: Workspace) -> None:
    """One real tiny job: SIGKILL the supervisor and trainer -> FAILED on the next open -> resume -> SUCCEEDED."""
    register_tiny_dataset(workspace)
    b = LocalBackend(workspace)
    opts = TrainOptions(preset="tiny", max_steps=100, extra_args=["--checkpoint-every", "5", "--eval-every", "100"])
    job = b.submit_job("tiny", opts)
    ckpts = Path(job.job_dir) / "checkpoints"

    def checkpointed() -> bool:
        return ckpts.is_dir() and any(n.endswith(".index") for n in os.listdir(ckpts))

    wait_for(checkpointed, 120, what="a first checkpoint")
    trainer_pid = b.registry.get_job(job.id).remote["trainer_pid"]   # recorded when the supervisor started it
    os.killpg(job.pid, signal.SIGKILL)                    # supervisor and trainer: no chance to record anything
    # Both must be gone: a reconcile rightly keeps a job RUNNING while its trainer still exits
    # (a TensorFlow process can take a moment to die; waiting on the supervisor alone failed CI once).
    wait_for(lambda: not procs.alive(job.pid) and not procs.alive(trainer_pid), 30, what="the kill")
    step_killed = json.loads((Path(job.job_dir) / "status.json").read_text())["step"]
    assert step_killed < 100
    failed = LocalBackend(workspace).get_job(job.id)      # a fresh open reconciles
    assert failed.state is JobState.FAILED
    assert "ended without finishing" in failed.error and "Last log lines" in failed.error

    b.resume_job(job.id)
    from click.testing import CliRunner

    from tui.cli import cli
    followed = CliRunner().invoke(cli, ["jobs", "logs", job.id, "-f", "-n", "0"])   # returns when the job ends
    assert followed.exit_code == 0, followed.output
    done = LocalBackend(workspace).get_job(job.id)
    # On a rare failure (CI, 2026-12-04) the follow printed nothing: say what the job did.
    train_log = (Path(job.job_dir) / "train.log").read_text()
    why = (followed.output, done.state, done.error, train_log[-2000:])
    assert "step 100/100" in followed.stdout and followed.stdout.rstrip().endswith("job SUCCEEDED"), why
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.step == 100
    assert "resuming job" in train_log
