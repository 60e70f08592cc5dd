"""--encoder-every N: the encoder trains on every Nth step; the GAN on every step."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.presets import resolve


def iterations(job: Path, opt: str) -> int:
    import tensorflow as tf
    ckpt = tf.train.load_checkpoint(str(job / "checkpoints"))
    return int(ckpt.get_tensor(f"{opt}/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))


def test_settings_that_cannot_mean_anything_are_refused() -> None:
    with pytest.raises(ValueError, match="--encoder-every 0 must be at least 1"):
        resolve("tiny", {"encoder_every": 0})
    with pytest.raises(ValueError, match="needs --loss gan"):
        resolve("tiny", {"encoder_every": 2, "loss": "vaegan"})
    with pytest.raises(ValueError, match="needs --gamma 0"):
        resolve("tiny", {"encoder_every": 2, "gamma": 1.0})
    assert resolve("tiny", {"encoder_every": 2}).encoder_every == 2
    # quick's 4 yields to a loss or a gamma that needs the encoder on every step.
    assert resolve("quick", {}).encoder_every == 4
    assert resolve("quick", {"loss": "seed"}).encoder_every == 1
    assert resolve("quick", {"loss": "vaegan"}).encoder_every == 1
    assert resolve("quick", {"gamma": 1.0}).encoder_every == 1


def test_the_encoder_trains_on_every_nth_step_and_the_log_keeps_its_last_losses(
        tmp_path, tiny_dataset_dir) -> None:
    from tests.fixtures.models import run_trainer

    job = tmp_path / "job"
    done = run_trainer(tiny_dataset_dir, job, "--max-steps", "7", "--encoder-every", "3",
                       "--log-every", "1", "--checkpoint-every", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    # Steps 0..6: the encoder's at 0, 3 and 6; the decoder and D at all seven.
    assert iterations(job, "opt_e") == 3
    assert iterations(job, "opt_g") == 7 and iterations(job, "opt_d") == 7
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6, 7]
    # Every row has the encoder's losses: those of its last step, until the next one.
    loss_e = [r["loss_e"] for r in train]
    assert loss_e[0] == loss_e[1] == loss_e[2] != loss_e[3] == loss_e[4] == loss_e[5] != loss_e[6]
    assert len({r["loss_d"] for r in train}) == 7
    # The export still has both directions.
    assert (job / "model" / "genml.json").exists()
