"""`--seed` makes a run repeatable: two runs with one seed agree bit for bit, another seed differs.

On this CPU build (oneDNN, default thread pools) the trainer is deterministic without
tf.config.experimental.enable_op_determinism(): every random draw in the step is
stateless and seeded from (--seed, step), and tf.data keeps its order. This test keeps it so.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.models import ROOT, trainer_env

tf = pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow

TIMING = {"wall_time", "elapsed", "images_per_sec", "train_minutes", "seconds"}


def rows(job: Path) -> list[dict[str, Any]]:
    out = []
    for line in (job / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.append({k: v for k, v in row.items() if k not in TIMING})
    return out


def variables(job: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(job / "checkpoints")))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith("trained_s")}          # minutes trained: a clock, not a result


def samples(job: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((job / "samples").glob("*.png"))}


def test_same_seed_is_bit_identical_other_seed_differs(tmp_path: Path, tiny_dataset_dir: Path,
                                                       tiny_job_dir: Path) -> None:
    # Two runs at once (one per core); tiny_job_dir is the same preset at the default seed 0.
    jobs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-m", "trainer.task", "--data-dir",
                               str(tiny_dataset_dir), "--job-dir", str(job), "--preset", "tiny",
                               "--seed", "5"],
                              cwd=ROOT, env=trainer_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for job in jobs]
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out[-3000:]
    a, b = jobs

    ra, rb = rows(a), rows(b)
    assert [r["kind"] for r in ra].count("train") >= 6 and any(r["kind"] == "eval" for r in ra)
    assert ra == rb                              # every loss of every row, and the evals
    va, vb = variables(a), variables(b)
    assert len(va) > 20 and va.keys() == vb.keys()
    for k in va:
        np.testing.assert_array_equal(va[k], vb[k], err_msg=k)
    assert samples(a) == samples(b) and len(samples(a)) >= 2

    other = rows(tiny_job_dir)
    train = [r for r in ra if r["kind"] == "train"]
    train0 = [r for r in other if r["kind"] == "train"]
    assert [r["step"] for r in train] == [r["step"] for r in train0]
    assert all(r["loss_d"] != r0["loss_d"] for r, r0 in zip(train, train0))
    last = max(samples(a))
    assert samples(a)[last] != samples(tiny_job_dir)[last]
    v0 = variables(tiny_job_dir)
    assert any(not np.array_equal(va[k], v0[k]) for k in va if k.startswith("encoder"))
