"""--ema-probes: more EMA copies of the decoder, evaluated beside the exported one.

They exist to compare EMA lengths within one run (benchmarks/quality.py), so what must
hold is that they measure the same thing as the main EMA and leave training alone.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer import presets

TIMING = {"wall_time", "elapsed", "images_per_sec", "train_minutes", "seconds"}


def rows(job: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (job / "metrics.jsonl").read_text().splitlines()]


def test_probes_parse_and_refuse_what_is_not_a_decay() -> None:
    assert presets.resolve("tiny", {"ema_probes": " 0.9995, 0.9999 "}).ema_probes == "0.9995,0.9999"
    assert presets.resolve("tiny", {}).ema_probes == ""
    for bad in ("0.99,1.0", "fast", "0.9,0.9", "-0.1"):
        with pytest.raises(ValueError, match="--ema-probes"):
            presets.resolve("tiny", {"ema_probes": bad})


@pytest.mark.slow
def test_a_probe_at_the_main_decay_scores_the_same_and_training_is_unchanged(
        tmp_path: Path, tiny_dataset_dir: Path, tiny_job_dir: Path) -> None:
    """tiny's --ema-decay is 0.9: the 0.9 probe must score exactly the main EMA's SWD, the
    0.5 probe something else, and every training row and main score must match the same
    run without probes (tiny_job_dir: the tiny preset at the default seed)."""
    tf = pytest.importorskip("tensorflow")
    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    proc = run_trainer(tiny_dataset_dir, job, "--ema-probes", "0.9,0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [r for r in rows(job) if r["kind"] == "eval"]
    assert evals
    for r in evals:
        assert set(r["probe_swd"]) == {"0.9", "0.5"}
        assert r["probe_swd"]["0.9"] == r["swd"]
        assert r["probe_swd"]["0.5"] != r["swd"]
    plain = rows(tiny_job_dir)
    assert [{k: v for k, v in r.items() if k != "probe_swd"} for r in rows(job)] == plain
    grids = sorted((job / "probes" / "ema-0.5").glob("step-*.png"))
    assert [g.name for g in grids] == [f"step-{r['step']:06d}.png" for r in evals]
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(job / "checkpoints")))
    assert any(k.startswith("ema_probes/") for k in reader.get_variable_to_shape_map())


@pytest.mark.slow
def test_probes_added_on_resume_are_refused_and_the_checkpoints_kept(
        tmp_path: Path, tiny_dataset_dir: Path, tiny_job_dir: Path) -> None:
    """A probe started mid-run would average from another start than the main EMA and not
    compare, so resuming a job that had none with --ema-probes is wrong input (exit 2),
    says what to do, and leaves the checkpoints where they were."""
    import shutil

    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    shutil.copytree(tiny_job_dir, job)
    before = sorted(p.name for p in (job / "checkpoints").iterdir())
    proc = run_trainer(tiny_dataset_dir, job, "--ema-probes", "0.5", "--max-steps", "16")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "--ema-probes counts from a run's first step" in proc.stderr
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == before
