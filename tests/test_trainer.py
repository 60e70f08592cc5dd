"""The trainer end to end: a tiny run's job dir, and its SavedModel's four signatures."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_tiny_run_writes_every_artefact(tiny_job_dir: Path) -> None:
    job = tiny_job_dir
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "JOB_STATE_SUCCEEDED"
    assert status["step"] == status["max_steps"] == 12
    assert status["error"] == "" and status["images_per_sec"] > 0

    config = json.loads((job / "config.json").read_text())
    assert config["trainer"]["preset"] == "tiny" and config["trainer"]["image_size"] == 16
    assert config["dataset"]["name"] == "demo"

    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    for key in ("wall_time", "elapsed", "images_per_sec", "loss_kl", "loss_recon", "loss_d",
                "loss_g", "loss_e"):
        assert all(isinstance(r[key], float) for r in train), key
    assert evals and evals[-1]["step"] == 12
    for key in ("psnr", "ssim", "swd", "swd_floor"):
        assert isinstance(evals[-1][key], float), key

    from PIL import Image
    samples = sorted(p.name for p in (job / "samples").iterdir())
    assert samples == ["step-000000.png", "step-000006.png", "step-000012.png"]
    grid = Image.open(job / "samples" / "step-000012.png")
    assert grid.size == (4 * 16, 4 * 16) and grid.mode == "RGB"

    assert (job / "checkpoints" / "checkpoint").exists()
    assert len(list((job / "checkpoints").glob("ckpt-*.index"))) == 2       # keep 2
    assert list((job / "logs").glob("events.out.tfevents.*"))
    assert (job / "model" / "saved_model.pb").exists()
    info = json.loads((job / "model" / "genml.json").read_text())
    assert info["image_size"] == 16 and info["embedding_size"] == 8 and info["step"] == 12
    assert info["crop_fraction"] == 0.75 and info["dataset"] == "demo"
    assert set(info["metrics"]) >= {"swd", "psnr", "ssim", "encoder_psnr", "encoder_ssim"}
    assert info["refine_steps"] == 100


def test_tensorboard_events_hold_scalars_and_images(tiny_job_dir: Path) -> None:
    import tensorflow as tf
    tags: dict[str, str] = {}
    for path in (tiny_job_dir / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                tags[v.tag] = v.metadata.plugin_data.plugin_name
    assert tags.get("train/loss_d") == "scalars" and tags.get("eval/swd") == "scalars"
    assert tags.get("samples") == "images" and tags.get("reconstructions") == "images"


def test_export_round_trips_image_embedding_image(tiny_job_dir: Path) -> None:
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    model = tf.saved_model.load(str(tiny_job_dir / "model"))
    assert set(model.signatures) == {"serving_default", "encode", "decode_raw", "encode_raw"}

    keys = tf.constant(["0", "a", "7"])
    z = tf.random.normal([3, 8], seed=1)
    out = model.signatures["serving_default"](embeddings=z, key=keys)
    assert set(out) == {"image_bytes", "key"} and list(out["key"].numpy()) == [b"0", b"a", b"7"]
    img = Image.open(io.BytesIO(out["image_bytes"].numpy()[0]))
    assert img.size == (16, 16) and img.format == "PNG"

    # A JPEG of another size goes through the same centre crop as training.
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="JPEG")
    batch = tf.constant([out["image_bytes"].numpy()[0], buf.getvalue(), out["image_bytes"].numpy()[2]])
    enc = model.signatures["encode"](image_bytes=batch, key=keys)
    assert set(enc) == {"embeddings", "key"} and enc["embeddings"].shape == (3, 8)
    assert list(enc["key"].numpy()) == [b"0", b"a", b"7"]
    # The mean, deterministic, whatever the batch around it.
    alone = model.signatures["encode"](image_bytes=batch[1:2], key=keys[1:2])["embeddings"]
    np.testing.assert_allclose(alone.numpy()[0], enc["embeddings"].numpy()[1], atol=1e-5)

    raw = model.signatures["decode_raw"](z=enc["embeddings"])["images"]
    assert raw.shape == (3, 16, 16, 3) and raw.dtype == tf.uint8
    back = model.signatures["encode_raw"](images=raw)
    assert set(back) == {"mean", "logvar"} and back["mean"].shape == (3, 8)
    # The PNG path and the raw path decode identically.
    png0 = np.asarray(Image.open(io.BytesIO(out["image_bytes"].numpy()[0])))
    np.testing.assert_array_equal(png0, model.signatures["decode_raw"](z=z[:1])["images"].numpy()[0])
