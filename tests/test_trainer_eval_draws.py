"""--eval-draws: SWD scored as the mean of several draws, so two recipes within one draw's
spread can be told apart (benchmarks/quality.py --eval-draws pairs them with the DCGAN).

What must hold: one draw is exactly today's score (figures stay comparable), the other
draws really are other draws, two models of one seed share each draw's patches and
projections (the pairing), and scoring more draws leaves training alone.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from trainer import metrics, presets  # noqa: E402  (after the skip: these import TensorFlow)

TIMING = {"wall_time", "elapsed", "images_per_sec", "train_minutes", "seconds"}


def rows(job: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (job / "metrics.jsonl").read_text().splitlines()]


def smooth(rng: np.random.Generator, n: int) -> np.ndarray:
    low = rng.normal(0, 0.5, (n, 4, 4, 3)).astype(np.float32)
    return np.clip(tf.image.resize(low, [32, 32]).numpy(), -1, 1)


def test_draw_zero_is_the_single_score_and_the_others_differ() -> None:
    rng = np.random.default_rng(0)
    a, b, real = smooth(rng, 24), smooth(rng, 24), smooth(rng, 24)
    kw = dict(patches=16, projections=64)
    seen: list[int] = []

    def sample(d: int) -> np.ndarray:
        seen.append(d)
        return a
    draws = metrics.swd_draws(sample, real, 3, seed=7, **kw)
    assert seen == [0, 1, 2]
    assert draws[0] == metrics.swd(a, real, seed=7, **kw)
    assert len(set(draws)) == 3                              # other patches and projections
    assert metrics.swd_draws(sample, real, 3, seed=7, **kw) == draws   # seeded: repeatable
    # Pairing: draw d of two models at one seed uses the same real patches and projections,
    # so a model scored against itself differs by nothing in every draw.
    assert [x - y for x, y in zip(draws, metrics.swd_draws(lambda d: a, real, 3, 7, **kw))] == [0] * 3
    assert metrics.swd_draws(lambda d: b, real, 3, 7, **kw) != draws


def test_eval_draws_below_one_is_refused() -> None:
    assert presets.resolve("tiny", {}).eval_draws == 1
    with pytest.raises(ValueError, match="--eval-draws 0 must be at least 1"):
        presets.resolve("tiny", {"eval_draws": 0})


@pytest.mark.slow
def test_two_draws_average_and_leave_training_alone(
        tmp_path: Path, tiny_dataset_dir: Path, tiny_job_dir: Path) -> None:
    """tiny_job_dir is the same preset and seed with one draw: its score must be this run's
    first draw, the mean of both must be the score (and the best), and every training row
    must match."""
    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    proc = run_trainer(tiny_dataset_dir, job, "--eval-draws", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = {r["step"]: r for r in rows(tiny_job_dir) if r["kind"] == "eval"}
    evals = [r for r in rows(job) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == list(plain)
    for r in evals:
        first, second = r["swd_draws"]
        assert first == pytest.approx(plain[r["step"]]["swd"], rel=1e-9)
        assert second != first
        assert r["swd"] == pytest.approx((first + second) / 2)
    assert evals[-1]["best_swd"] == {r["step"]: r["swd"] for r in evals}[evals[-1]["best_step"]]
    assert "over 2 draws" in proc.stdout
    train = [r for r in rows(job) if r["kind"] != "eval"]
    assert train == [r for r in rows(tiny_job_dir) if r["kind"] != "eval"]
