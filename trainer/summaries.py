"""TensorBoard scalars and images without the tensorboard package.

tensorflow-cpu no longer pulls tensorboard in, and tf.summary.scalar/image need it; the
event-file format only needs the plugin name in the metadata, so these write the same
records through tf.summary.write (core TensorFlow). TensorBoard reads them as usual.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str) -> bytes:
    md = summary_pb2.SummaryMetadata()
    md.plugin_data.plugin_name = plugin
    if plugin == "images":
        md.plugin_data.content = b""
    return bytes(md.SerializeToString())


def scalar(name: str, value: float, step: int) -> None:
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                     metadata=_metadata("scalars"))


def image(name: str, image_uint8: tf.Tensor, step: int) -> None:
    """One [h, w, 3] uint8 image, stored as the tensorboard image plugin does: [w, h, png]."""
    h, w = int(image_uint8.shape[0]), int(image_uint8.shape[1])
    data = tf.stack([tf.constant(str(w)), tf.constant(str(h)), tf.io.encode_png(image_uint8)])
    tf.summary.write(name, data, step=step, metadata=_metadata("images"))
