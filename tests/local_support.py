"""Helpers for the local backend's tests (tests/test_local_*.py, test_predict, test_serve, ...)."""
from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Callable, TypeVar

from core.registry import Registry
from core.types import Dataset, Job, JobState
from core.workspace import Workspace

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def register_tiny_dataset(ws: Workspace, name: str = "tiny", count: int = 40) -> Dataset:
    """A small demo dataset (stored for 32x32) built by the datasets area's catalog and registered."""
    from core.datasets import catalog
    return catalog.demo(ws, Registry(ws.registry_path), name, count, image_size=32, workers=1)


def add_finished_job(ws: Workspace, source_job_dir: Path, job_id: str = "tiny-20260101-000000",
                     dataset: str = "tiny", state: JobState = JobState.SUCCEEDED) -> Job:
    """A registry row for a copy of a finished job dir (tests must not touch the session fixture)."""
    dst = ws.job_dir(job_id)
    shutil.copytree(source_job_dir, dst)
    job = Job(id=job_id, dataset=dataset, state=state, created=time.time(), job_dir=str(dst),
              options={"preset": "tiny", "args": ["--preset", "tiny"]}, step=12, max_steps=12)
    Registry(ws.registry_path).add_job(job)
    return job


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
