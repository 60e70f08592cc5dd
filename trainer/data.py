"""Reading a dataset folder (docs/contracts.md) into tf.data pipelines.

Images are decoded once and cached as uint8 when they fit in memory; the crop (random
or centre, the dataset's mode), the flip and the conversion to [-1, 1] happen per step
from stateless seeds, so a run with the same --seed sees the same batches.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from trainer.contract import CROP_FRACTION, CROP_RANDOM, DEFAULT_CROP
from trainer.manifest import shard_paths, train_count


_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}


def crop_box(height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Side of the crop square: floor(CROP_FRACTION * short side), the rule serving uses too."""
    short = tf.minimum(height, width)
    return tf.cast(tf.floor(CROP_FRACTION * tf.cast(short, tf.float32) + 1e-4), tf.int32)


def center_crop_resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 [h, w, 3] -> float32 [size, size, 3] in [0, 255]: the centre crop, antialiased."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = crop_box(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top:top + side, left:left + side, :]
    return tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bilinear", antialias=True)


def random_crop_resize(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = crop_box(h, w)
    top = tf.random.stateless_uniform([], seed, 0, h - side + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seed + 1, 0, w - side + 1, dtype=tf.int32)
    crop = image[top:top + side, left:left + side, :]
    return tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bilinear", antialias=True)


def decode(record: tf.Tensor) -> tf.Tensor:
    ex = tf.io.parse_single_example(record, _FEATURES)
    img = tf.io.decode_image(ex["image/encoded"], channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    return img


def to_model_range(x: tf.Tensor) -> tf.Tensor:
    """[0, 255] -> [-1, 1], the decoder's tanh range."""
    return tf.cast(x, tf.float32) / 127.5 - 1.0


def train_dataset(data_dir: str, manifest: dict[str, Any], image_size: int, batch_size: int,
                  seed: int, shuffle_buffer: int, cache_limit_mb: int,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Endless batches of float32 [batch, size, size, 3] in [-1, 1]."""
    crop_mode = manifest.get("options", {}).get("crop", DEFAULT_CROP)
    files = shard_paths(data_dir, manifest, "train")
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(4, len(files)))
    if input_context and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if crop_mode != CROP_RANDOM:
        # Centre crops are the same every epoch: crop and resize once, cache the result.
        ds = ds.map(lambda im: tf.cast(tf.round(center_crop_resize(im, image_size)), tf.uint8),
                    num_parallel_calls=tf.data.AUTOTUNE)
    n = train_count(manifest)
    stored = int(manifest.get("options", {}).get("stored_size") or image_size)
    if n * stored * stored * 3 * 2 <= cache_limit_mb * 2 ** 20:
        ds = ds.cache()
    ds = ds.repeat().shuffle(shuffle_buffer, seed=seed)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds))

    def augment(img: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        s = tf.cast(s % (2 ** 31 - 2), tf.int32)
        if crop_mode == CROP_RANDOM:
            x = random_crop_resize(img, image_size, s)
        else:
            x = tf.cast(img, tf.float32)
        flip = tf.random.stateless_uniform([], s + 7) < 0.5
        x = tf.cond(flip, lambda: tf.image.flip_left_right(x), lambda: x)
        x.set_shape([image_size, image_size, 3])
        return to_model_range(x)

    per_replica = input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_images(data_dir: str, manifest: dict[str, Any], split: str, image_size: int,
                limit: int, shuffle_seed: int | None = None) -> tf.Tensor:
    """Up to `limit` centre-cropped images of a split, float32 in [-1, 1] (empty if none).

    With `shuffle_seed` the shards are interleaved and the images drawn at random (the
    same ones for the same seed): shards follow the source folder's order, so the first
    `limit` images alone can be one corner of the data (all the flags of an emoji set).
    """
    files = shard_paths(data_dir, manifest, split)
    if not files:
        return tf.zeros([0, image_size, image_size, 3])
    if shuffle_seed is None:
        ds = tf.data.TFRecordDataset(files)
    else:
        ds = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=len(files), block_length=1)
        ds = ds.shuffle(16384, seed=shuffle_seed, reshuffle_each_iteration=False)
    ds = ds.take(limit).map(decode)
    ds = ds.map(lambda im: to_model_range(center_crop_resize(im, image_size))).batch(max(1, limit))
    batches = list(ds)
    return batches[0] if batches else tf.zeros([0, image_size, image_size, 3])
