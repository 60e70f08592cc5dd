"""Schedules over the budget: --lr-decay (the learning rates hold, then fall linearly to 0 over
the end), --batch-double (twice the batch over the end) and --g-topk-last (top-k over the end)."""
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


def batch(step: int = 0, trained: float = 0.0, **overrides) -> int:
    return Trainer.batch_for(SimpleNamespace(cfg=resolve("tiny", overrides)), step, trained)


def test_the_batch_doubles_over_the_end_of_the_budget_by_steps_or_by_minutes() -> None:
    by_steps = {"max_steps": 100, "batch_double": 0.25}        # tiny's batch is 8
    assert [batch(s, **by_steps) for s in (0, 74, 75, 99)] == [8, 8, 16, 16]
    by_minutes = {"max_steps": 10, "max_minutes": 10.0, "batch_double": 0.5}
    assert [batch(9, t * 60, **by_minutes) for t in (0, 4.9, 5, 12)] == [8, 8, 16, 16]
    assert batch(99, **{"max_steps": 100}) == 8                  # off: one size throughout
    # A count of images brings the switch forward, never back: 400 images are 50 steps of 8.
    by_images = {"max_steps": 100, "batch_double_images": 400}
    assert [batch(s, **by_images) for s in (0, 49, 50, 99)] == [8, 8, 16, 16]
    assert batch(50, **by_steps, batch_double_images=400) == 16  # before the last quarter
    assert batch(75, **by_steps, batch_double_images=8000) == 16  # the share comes first
    with pytest.raises(ValueError, match="--batch-double-images -1 is out of range"):
        resolve("tiny", {"batch_double_images": -1})
    with pytest.raises(ValueError, match="--batch-double 2.0 is out of range"):
        resolve("tiny", {"batch_double": 2.0})


def test_a_run_switches_to_twice_the_batch_and_a_resume_past_the_switch_keeps_it(
        tmp_path, tiny_dataset_dir) -> None:
    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    flags = ("--log-every", "1", "--checkpoint-every", "100", "--batch-double", "0.5",
             "--g-topk", "0.5", "--g-topk-last", "0.25")
    first = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "8")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    # Step n+1 takes 16 images once n/8 of the budget is spent, n >= 4.
    assert [r["batch_size"] for r in rows if r["kind"] == "train"] == [8] * 4 + [16] * 4
    assert "batch size 16 from step 4 (--batch-double 0.5)" in first.stdout
    # --g-topk-last 0.25: the generator learns from its top-k samples from step 6 (a new
    # trace of the step, the same batch and input pipeline).
    shares = [r["g_topk_share"] for r in rows if r["kind"] == "train"]
    assert shares[:6] == [1.0] * 6 and all(0.5 <= s < 1.0 for s in shares[6:]), shares
    assert "top-k training from step 6 (--g-topk 0.5 --g-topk-last 0.25)" in first.stdout
    # The ETA comes from the trainer's seconds left, measured at the rate since the switch.
    from core.jobdir import JobDir
    assert JobDir(str(job)).progress()["seconds_left"] >= 0.0
    assert all(r["images_per_sec"] > 0 for r in rows if r["kind"] == "train" and r["step"] > 1)

    # Resumed at step 8 of 12: already past the switch, so the first step takes 16.
    second = run_trainer(tiny_dataset_dir, job, *flags, "--max-steps", "12")
    assert second.returncode == 0, second.stderr[-3000:]
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert [r["batch_size"] for r in rows if r["kind"] == "train" and r["step"] > 8] == [16] * 4
    assert "batch size 16 from step 8" in second.stdout
    # The budget grew to 12 steps, so its last quarter, and top-k, start at step 9.
    shares = [r["g_topk_share"] for r in rows if r["kind"] == "train" and r["step"] > 8]
    assert shares[0] == 1.0 and all(s < 1.0 for s in shares[1:]), shares
    assert "top-k training from step 9" in second.stdout
