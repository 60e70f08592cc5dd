"""Killed runs resume: SIGKILL mid-run, then SIGTERM (checkpoint + CANCELLED + 143), then finish."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.models import ROOT, trainer_env

pytestmark = pytest.mark.slow

MAX_STEPS = 40


def start(data: Path, job: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer.task", "--data-dir", str(data), "--job-dir", str(job),
           "--preset", "tiny", "--max-steps", str(MAX_STEPS), "--checkpoint-every", "3",
           "--log-every", "1", "--sample-every", "100", "--eval-every", "100"]
    return subprocess.Popen(cmd, cwd=ROOT, env=trainer_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited ({proc.returncode}) before {what}:\n"
                                 f"{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def status(job: Path) -> dict:
    try:
        return json.loads((job / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def checkpoint_steps(job: Path) -> list[int]:
    return sorted(int(p.name[5:-6]) for p in (job / "checkpoints").glob("ckpt-*.index"))


def test_sigkill_then_sigterm_then_resume_to_the_same_step_count(tmp_path: Path,
                                                                  tiny_dataset_dir: Path) -> None:
    job = tmp_path / "job"

    first = start(tiny_dataset_dir, job)
    wait_for(lambda: (job / "checkpoints" / "checkpoint").exists() and status(job).get("step", 0) >= 4,
             first, "the first checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    killed_at = status(job)["step"]
    assert status(job)["state"] == "JOB_STATE_RUNNING"     # a SIGKILL leaves it as it was

    second = start(tiny_dataset_dir, job)
    wait_for(lambda: status(job).get("step", 0) >= killed_at + 2 and status(job).get("pid") == second.pid,
             second, "progress after the resume")
    second.send_signal(signal.SIGTERM)
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 143, out[-3000:]
    assert "resumed from step" in out
    st = status(job)
    assert st["state"] == "JOB_STATE_CANCELLED"
    assert checkpoint_steps(job)[-1] == st["step"] > killed_at    # SIGTERM wrote a checkpoint

    third = start(tiny_dataset_dir, job)
    out, _ = third.communicate(timeout=180)
    assert third.returncode == 0, out[-3000:]
    st = status(job)
    assert st["state"] == "JOB_STATE_SUCCEEDED" and st["step"] == MAX_STEPS
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == list(range(1, MAX_STEPS + 1))          # no step lost, none counted twice
    assert checkpoint_steps(job)[-1] == MAX_STEPS
    info = json.loads((job / "model" / "genml.json").read_text())
    assert info["step"] == MAX_STEPS
