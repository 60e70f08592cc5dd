"""One damaged checkpoint no longer kills a job (issue 12, item 6).

The finished tiny job has ckpt-6 and ckpt-12. A power cut can truncate the newest data
file or empty the `checkpoint` index (nothing was fsynced); resuming must fall back to
what is whole, say which checkpoint it used and why, and finish.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures.models import run_trainer

pytestmark = pytest.mark.slow


@pytest.fixture
def job(tmp_path: Path, tiny_job_dir: Path) -> Path:
    dst = tmp_path / "job"
    shutil.copytree(tiny_job_dir, dst)
    shutil.rmtree(dst / "model")                       # so the resumed run must export again
    return dst


def _status(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


def test_a_truncated_newest_checkpoint_falls_back_to_the_older_one(job: Path, tiny_dataset_dir: Path) -> None:
    ck = job / "checkpoints"
    assert sorted(p.name for p in ck.glob("ckpt-*.index")) == ["ckpt-12.index", "ckpt-6.index"]
    data = next(ck.glob("ckpt-12.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    proc = run_trainer(tiny_dataset_dir, job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr                  # log lines go to stdout, warnings to stderr
    assert "checkpoint ckpt-12 could not be read" in said
    assert "resumed from the older checkpoint ckpt-6" in said
    assert "resumed from step 6" in said
    assert _status(job)["state"] == "JOB_STATE_SUCCEEDED" and (job / "model" / "saved_model.pb").exists()
    assert any(p.name.startswith("damaged-ckpt-12.") for p in ck.iterdir())
    assert (ck / "ckpt-12.index").exists()             # saved again by the resumed run


def test_an_empty_checkpoint_index_is_rebuilt_from_the_files(job: Path, tiny_dataset_dir: Path) -> None:
    (job / "checkpoints" / "checkpoint").write_bytes(b"")
    proc = run_trainer(tiny_dataset_dir, job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr
    assert "was unreadable" in said and "rebuilt from 2 checkpoint file(s)" in said
    assert "resumed from step 12" in said
    assert _status(job)["state"] == "JOB_STATE_SUCCEEDED"
    assert (job / "checkpoints" / "checkpoint.damaged").exists()


def test_when_every_checkpoint_is_damaged_the_error_names_each(job: Path, tiny_dataset_dir: Path) -> None:
    for data in (job / "checkpoints").glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    proc = run_trainer(tiny_dataset_dir, job)
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = _status(job)["error"]
    assert "no checkpoint in" in err and "ckpt-12:" in err and "ckpt-6:" in err and "move" in err
