"""--lr-decay: the learning rates hold, then fall linearly to 0 over the end of the budget."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer.loop import Trainer
from trainer.presets import resolve


def factor(step: int = 0, trained: float = 0.0, **overrides) -> float:
    return Trainer.lr_factor(SimpleNamespace(cfg=resolve("tiny", overrides)), step, trained)


def test_the_factor_holds_then_falls_to_zero_by_steps_or_by_minutes() -> None:
    by_steps = {"max_steps": 100, "lr_decay": 0.25}
    assert [factor(s, **by_steps) for s in (0, 50, 75, 90, 100)] == pytest.approx([1, 1, 1, 0.4, 0])
    by_minutes = {"max_steps": 10, "max_minutes": 10.0, "lr_decay": 0.5}   # minutes win over steps
    assert [factor(9, t * 60, **by_minutes) for t in (0, 5, 7.5, 10, 12)] == pytest.approx([1, 1, 0.5, 0, 0])
    with pytest.raises(ValueError, match="--lr-decay 1.5 is out of range"):
        resolve("tiny", {"lr_decay": 1.5})


def learning_rate(job: Path, opt: str) -> float:
    import tensorflow as tf
    ckpt = tf.train.load_checkpoint(str(job / "checkpoints"))
    return float(ckpt.get_tensor(f"{opt}/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"))


def test_a_run_decays_logs_the_scale_and_a_resume_without_decay_trains_at_the_full_rate(
        tmp_path, tiny_dataset_dir) -> None:
    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    flags = ("--log-every", "1", "--lr-d", "0.001", "--checkpoint-every", "100")
    first = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "8", "--lr-decay", "0.5")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    scales = [r["lr_scale"] for r in rows if r["kind"] == "train"]
    # Step n+1 is taken at (1 - n/8) / 0.5 of the rates, capped at 1.
    assert scales == pytest.approx([1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    assert learning_rate(job, "opt_d") == pytest.approx(0.001 * 0.25)

    # The checkpoint holds the decayed rate; a resume that turns the decay off trains at 0.001.
    second = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "10", "--lr-decay", "0")
    assert second.returncode == 0, second.stderr[-3000:]
    assert learning_rate(job, "opt_d") == pytest.approx(0.001)
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert not any("lr_scale" in r for r in rows if r["kind"] == "train" and r["step"] > 8)
