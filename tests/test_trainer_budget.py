"""A run's clock, its best evaluation and its stop rule, on the real trainer (tiny preset).

What a user relies on: `--max-minutes` ends the run by training time; the export is the
best evaluation's model, not merely the last; a run whose SWD stops improving says so
(status.json, the log) and, with --stop-when-stalled, ends there.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.models import run_trainer

pytestmark = pytest.mark.slow


def rows(job: Path, kind: str) -> list[dict]:
    out = [json.loads(x) for x in (job / "metrics.jsonl").read_text().splitlines()]
    return [r for r in out if r["kind"] == kind]


def test_max_minutes_ends_the_run_by_training_time(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    job = tmp_path / "job"
    proc = run_trainer(tiny_dataset_dir, job, "--max-steps", "100000", "--max-minutes", "0.01",
                       "--eval-minutes", "0.005", "--log-every", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "JOB_STATE_SUCCEEDED"
    assert 1 < status["step"] < 100000
    train = rows(job, "train")
    assert train[-1]["step"] == status["step"]
    assert train[-1]["train_minutes"] >= 0.01 > train[-2]["train_minutes"]
    evals = rows(job, "eval")
    assert len(evals) >= 2 and evals[-1]["step"] == status["step"]
    assert "time budget of 0.01 minutes reached" in proc.stdout
    info = json.loads((job / "model" / "genml.json").read_text())
    assert info["last_step"] == status["step"]


def test_stalled_run_stops_and_exports_its_best_evaluation(tmp_path: Path,
                                                           tiny_dataset_dir: Path) -> None:
    # Learning rates of 0 for the decoder and encoder: every evaluation scores the same
    # model, so the first is the best and each later one counts towards the stall.
    job = tmp_path / "job"
    proc = run_trainer(tiny_dataset_dir, job, "--max-steps", "60", "--eval-every", "6",
                       "--lr-g", "0", "--lr-e", "0", "--patience", "2", "--stop-when-stalled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = rows(job, "eval")
    assert [r["step"] for r in evals] == [6, 12, 18]
    assert [r["evals_since_best"] for r in evals] == [0, 1, 2]
    assert all(r["best_step"] == 6 and r["best_swd"] == evals[0]["swd"] for r in evals)
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "JOB_STATE_SUCCEEDED" and status["step"] == 18
    assert status["stalled"] is True and status["best_step"] == 6
    assert "stalled: no better SWD in 2 evaluations" in proc.stdout
    info = json.loads((job / "model" / "genml.json").read_text())
    assert info["step"] == 6 and info["last_step"] == 18
    assert info["metrics"]["swd"] == pytest.approx(evals[0]["swd"])
    assert [p.name for p in (job / "checkpoints" / "best").glob("best-*.index")] == ["best-6.index"]


def test_the_export_is_the_best_evaluation(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    job = tmp_path / "job"
    proc = run_trainer(tiny_dataset_dir, job, "--max-steps", "24", "--eval-every", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = rows(job, "eval")
    best = evals[0]
    for r in evals[1:]:                 # a new best must beat the old one by 1%
        if r["swd"] < best["swd"] * 0.99:
            best = r
    info = json.loads((job / "model" / "genml.json").read_text())
    assert info["step"] == best["step"] and info["last_step"] == 24
    assert evals[-1]["best_step"] == best["step"]
    assert info["metrics"]["swd"] == pytest.approx(best["swd"])
