"""The SavedModel that serving loads: four signatures (docs/contracts.md).

Both networks run in inference mode (batch norm uses its moving statistics), the
decoder is the EMA copy, and image -> embedding (`encode`) is the encoder's mean refined by
`refine_steps` Adam steps on the decode's pixel error (trainer/refine.py), deterministic, so
the same image always gives the same embedding whatever the batch around it; `encode_raw`
is the encoder alone (mean and log-variance). The decoder is exported
as trainer.fastdecode.FastDecoder: the same function (batch norm folded, sub-pixel
output layer), faster on CPU.
"""
from __future__ import annotations

import json
import os
from typing import Any

import keras
import tensorflow as tf

from trainer.contract import MODEL_INFO, SAVED_MODEL
from trainer.data import center_crop_resize
from trainer.fastdecode import FastDecoder
from trainer.jobdir import write_bytes_atomic
from trainer.refine import refine


class ServingModule(tf.Module):
    def __init__(self, encoder: keras.Model, decoder: keras.Model, image_size: int,
                 embedding_size: int, refine_steps: int = 0) -> None:
        super().__init__(name="genml")
        # Track the variables, not the Keras objects: saving Keras layers would also trace
        # and serialise every layer's call (seconds of work nobody loads).
        self.model_variables = [getattr(v, "value", v) for v in encoder.variables]
        fast_decoder = FastDecoder(decoder)
        self.fast_decoder = fast_decoder
        size, dim = image_size, embedding_size

        def to_uint8(x: tf.Tensor) -> tf.Tensor:
            return tf.cast(tf.clip_by_value(tf.round((x + 1.0) * 127.5), 0.0, 255.0), tf.uint8)

        def encode_images(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = tf.cast(images, tf.float32) / 127.5 - 1.0
            mean, logvar = encoder(x, training=False)
            return mean, logvar

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="z")])
        def decode_raw(z: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"images": to_uint8(fast_decoder(z))}

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
        def encode_raw(images: tf.Tensor) -> dict[str, tf.Tensor]:
            mean, logvar = encode_images(images)
            return {"mean": mean, "logvar": logvar}

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="embeddings"),
                                      tf.TensorSpec([None], tf.string, name="key")])
        def generate(embeddings: tf.Tensor, key: tf.Tensor) -> dict[str, tf.Tensor]:
            images = to_uint8(fast_decoder(embeddings))
            png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)
            return {"image_bytes": png, "key": tf.identity(key)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                      tf.TensorSpec([None], tf.string, name="key")])
        def encode(image_bytes: tf.Tensor, key: tf.Tensor) -> dict[str, tf.Tensor]:
            def one(b: tf.Tensor) -> tf.Tensor:
                img = tf.io.decode_image(b, channels=3, expand_animations=False)
                img.set_shape([None, None, 3])
                x = center_crop_resize(img, size)
                return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)

            images = tf.map_fn(one, image_bytes,
                               fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
            mean, _ = encode_images(images)
            x = tf.cast(images, tf.float32) / 127.5 - 1.0
            return {"embeddings": refine(fast_decoder, x, mean, refine_steps),
                    "key": tf.identity(key)}

        self.decode_raw, self.encode_raw, self.generate, self.encode = (
            decode_raw, encode_raw, generate, encode)

    def signatures(self) -> dict[str, Any]:
        return {"serving_default": self.generate.get_concrete_function(),
                "encode": self.encode.get_concrete_function(),
                "decode_raw": self.decode_raw.get_concrete_function(),
                "encode_raw": self.encode_raw.get_concrete_function()}


def export(model_dir: str, encoder: keras.Model, decoder: keras.Model, info: dict[str, Any]) -> None:
    """Write the SavedModel into a local temporary folder, then copy it in file by file,
    saved_model.pb last, then genml.json.

    `info` is genml.json itself (docs/contracts.md); its image_size, embedding_size and
    refine_steps also shape the signatures, so the two can never disagree.

    A reader that sees model/saved_model.pb sees a complete model; genml.json comes last.
    No directory is renamed: on Vertex AI the job dir is a bucket mounted with Cloud
    Storage FUSE, which refuses or limits directory renames (and Vertex AI's docs say to
    avoid them); copying files works there, on gs:// and on a local disk alike.
    """
    import shutil
    import tempfile
    module = ServingModule(encoder, decoder, int(info["image_size"]), int(info["embedding_size"]),
                           int(info.get("refine_steps", 0)))
    tmp = tempfile.mkdtemp(prefix="genml-export-")
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        tf.io.gfile.makedirs(model_dir)
        for name in tf.io.gfile.listdir(model_dir):        # what an earlier export left
            dst = os.path.join(model_dir, name.rstrip("/"))
            if tf.io.gfile.isdir(dst):
                tf.io.gfile.rmtree(dst)
            else:
                tf.io.gfile.remove(dst)
        files = []
        for root, _, names in tf.io.gfile.walk(tmp):
            files += [os.path.join(root, n) for n in names]
        # Data first, saved_model.pb last: its presence is what readers test.
        files.sort(key=lambda f: os.path.relpath(f, tmp) == SAVED_MODEL)
        for src in files:
            dst = os.path.join(model_dir, os.path.relpath(src, tmp))
            tf.io.gfile.makedirs(os.path.dirname(dst))
            tf.io.gfile.copy(src, dst, overwrite=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(os.path.join(model_dir, MODEL_INFO), info)


def write_json(path: str, obj: Any) -> None:
    """Atomic JSON through the job dir's one atomic writer (local, /gcs/ and gs:// paths)."""
    write_bytes_atomic(path, json.dumps(obj, indent=1).encode())
