"""The exported decoder (trainer/fastdecode.py) gives the Keras decoder's pixels.

Random weights with non-trivial batch-norm statistics and biases, so the folding and the
sub-pixel kernel rearrangement are both exercised; outputs must agree within 1e-4 in
[-1, 1] and within 1 uint8 level after the export's rounding.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from trainer.export import export
from trainer.fastdecode import FastDecoder
from trainer.model import build_decoder, build_encoder
from trainer.presets import resolve


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.int32)


def randomise(decoder, seed: int) -> None:
    """Batch-norm statistics and biases away from their (trivial) initial values."""
    rng = np.random.default_rng(seed)
    for v in decoder.weights:
        name = v.path
        if "moving_variance" in name:
            v.assign(rng.uniform(0.3, 3.0, v.shape))
        elif "gamma" in name:
            v.assign(rng.uniform(0.5, 2.0, v.shape))
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            v.assign(rng.normal(0.0, 0.2, v.shape))
        else:   # kernels: larger than the 0.02 init so the tanh output spans its range
            v.assign(rng.normal(0.0, 0.1, v.shape))


CONFIGS = [("tiny", {}), ("tiny", {"image_size": 32}), ("tiny", {"image_size": 64, "width": 4}),
           ("tiny", {"image_size": 128, "width": 4}), ("quick", {"width": 16}), ("seed", {}),
           ("quick", {"width": 16, "g_depth": 2}), ("tiny", {"image_size": 32, "g_depth": 3}),
           ("quick", {"width": 16, "g_mapping": 2}), ("quick", {"width": 16, "g_attn": 16}),
           ("tiny", {"image_size": 32, "g_depth": 3, "g_attn": 4})]


@pytest.mark.parametrize("preset,overrides", CONFIGS,
                         ids=[f"{p}-{o.get('image_size', '')}-{o.get('width', '')}-{o.get('g_depth', '')}"
                              f"{'-map' if o.get('g_mapping') else ''}"
                              f"{'-attn' + str(o['g_attn']) if o.get('g_attn') else ''}"
                              for p, o in CONFIGS])
def test_fast_decoder_matches_keras(preset: str, overrides: dict) -> None:
    cfg = resolve(preset, overrides)
    decoder = build_decoder(cfg)
    randomise(decoder, seed=cfg.image_size + cfg.width)
    fast = FastDecoder(decoder)
    z = np.random.default_rng(1).standard_normal((5, cfg.embedding_size)).astype(np.float32)
    want = decoder(z, training=False).numpy()
    got = fast(tf.constant(z)).numpy()
    assert got.shape == want.shape == (5, cfg.image_size, cfg.image_size, 3)
    assert want.std() > 0.1   # the check below is not vacuous
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(to_uint8(got) - to_uint8(want)).max() <= 1


def test_fast_decoder_rejects_a_decoder_it_does_not_know() -> None:
    import keras
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="unexpected decoder layout"):
        FastDecoder(other)


def test_exported_tiny_model_round_trips_all_four_signatures(tmp_path: Path) -> None:
    cfg = resolve("tiny", {})
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    randomise(decoder, seed=3)
    model_dir = tmp_path / "model"
    export(str(model_dir), encoder, decoder,
           {"image_size": cfg.image_size, "embedding_size": cfg.embedding_size, "preset": "tiny"})
    model = tf.saved_model.load(str(model_dir))
    assert set(model.signatures) == {"serving_default", "encode", "decode_raw", "encode_raw"}

    z = tf.constant(np.random.default_rng(2).standard_normal((64, cfg.embedding_size)).astype(np.float32))
    raw = model.signatures["decode_raw"](z=z)
    assert set(raw) == {"images"}
    images = raw["images"]
    assert images.dtype == tf.uint8 and images.shape == (64, 16, 16, 3)
    want = to_uint8(decoder(z, training=False).numpy())
    assert np.abs(images.numpy().astype(np.int32) - want).max() <= 1

    keys = tf.constant([str(i) for i in range(3)])
    out = model.signatures["serving_default"](embeddings=z[:3], key=keys)
    assert set(out) == {"image_bytes", "key"} and list(out["key"].numpy()) == [b"0", b"1", b"2"]
    png = np.asarray(Image.open(io.BytesIO(out["image_bytes"].numpy()[1])))
    np.testing.assert_array_equal(png, images.numpy()[1])

    enc = model.signatures["encode"](image_bytes=out["image_bytes"], key=keys)
    assert set(enc) == {"embeddings", "key"} and enc["embeddings"].shape == (3, cfg.embedding_size)
    pngs = tf.constant(np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in out["image_bytes"].numpy()]))
    back = model.signatures["encode_raw"](images=pngs)
    assert set(back) == {"mean", "logvar"}
    mean, _ = encoder(tf.cast(pngs, tf.float32) / 127.5 - 1.0, training=False)
    np.testing.assert_allclose(back["mean"].numpy(), mean.numpy(), atol=1e-5)
