"""Image -> embedding by refinement (trainer/refine.py) and the export's `encode` that uses it.

A tiny decoder with random weights stands in for a trained one: whatever the decoder, the
refinement must bring each decode closer to its image than the encoder's guess, keep an
image's embedding independent of its batch, and leave the guess alone at 0 steps.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from tests.test_trainer_fastdecode import randomise
from trainer.data import center_crop_resize
from trainer.export import export
from trainer.model import build_decoder, build_encoder
from trainer.presets import resolve
from trainer.refine import refine


def tiny_decoder():
    cfg = resolve("tiny", {})
    decoder = build_decoder(cfg)
    randomise(decoder, seed=5)
    return cfg, decoder


def per_image_error(decoder, z: tf.Tensor, images: tf.Tensor) -> np.ndarray:
    return tf.reduce_mean(tf.square(decoder(z, training=False) - images), [1, 2, 3]).numpy()


def test_refinement_lowers_every_images_error_and_keeps_images_apart() -> None:
    cfg, decoder = tiny_decoder()
    rng = np.random.default_rng(0)
    # Images the decoder can draw, and a poor first guess of their embeddings.
    target_z = rng.standard_normal((6, cfg.embedding_size)).astype(np.float32)
    images = decoder(target_z, training=False)
    start = tf.constant(rng.standard_normal((6, cfg.embedding_size)).astype(np.float32))

    def decode(z: tf.Tensor) -> tf.Tensor:
        return decoder(z, training=False)

    z = tf.function(lambda x, z0: refine(decode, x, z0, 60))(images, start)
    before, after = per_image_error(decoder, start, images), per_image_error(decoder, z, images)
    assert (after < 0.5 * before).all(), (before, after)

    # One image alone gets the embedding it gets in the batch.
    alone = refine(decode, images[2:3], start[2:3], 60)
    np.testing.assert_allclose(alone.numpy()[0], z.numpy()[2], atol=1e-4)
    # No steps: the guess itself.
    np.testing.assert_array_equal(refine(decode, images, start, 0).numpy(), start.numpy())


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_exports_encode_refines_the_encoders_mean(tmp_path: Path) -> None:
    cfg, decoder = tiny_decoder()
    encoder = build_encoder(cfg)
    export(str(tmp_path / "model"), encoder, decoder,
           {"image_size": cfg.image_size, "embedding_size": cfg.embedding_size, "refine_steps": 60})
    model = tf.saved_model.load(str(tmp_path / "model"))

    z = np.random.default_rng(3).standard_normal((4, cfg.embedding_size)).astype(np.float32)
    pictures = model.signatures["decode_raw"](z=tf.constant(z))["images"].numpy()
    got = model.signatures["encode"](image_bytes=tf.constant([png_bytes(a) for a in pictures]),
                                     key=tf.constant(["a", "b", "c", "d"]))["embeddings"]
    # What `encode` sees: the centre crop training takes, resized back.
    seen = tf.stack([tf.cast(tf.clip_by_value(tf.round(center_crop_resize(tf.constant(a), cfg.image_size)),
                                              0, 255), tf.uint8) for a in pictures])
    mean = model.signatures["encode_raw"](images=seen)["mean"]
    # The embeddings moved from the encoder's mean, and each decode came closer to its image
    # (the test above measures how much closer; here the crop keeps the images out of reach).
    assert np.abs(got.numpy() - mean.numpy()).max() > 0.1
    x = tf.cast(seen, tf.float32) / 127.5 - 1.0
    assert (per_image_error(decoder, got, x) < per_image_error(decoder, mean, x)).all()
