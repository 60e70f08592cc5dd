"""DiffAugment (Zhao et al. 2020): differentiable augmentations of what the discriminator sees.

With a few thousand images D memorises the training set and its gradient stops telling
the generator anything useful. Augmenting EVERY image D sees (real and generated alike,
in D's step and in G's) keeps D from memorising without teaching G to produce augmented
images, because G's gradient flows back through the same augmentation.

Parameters are drawn once per image with stateless ops from a seed derived from the step
seed, so a run stays repeatable; `draw` and `apply` are separate so a real image and its
reconstruction can get the SAME shift, cutout and colour change (the learned-similarity
loss compares D's features of the two and must not see a difference the augmentation made).

The policy is a comma-separated subset of `color,translation,cutout`, applied in that
order, as in the paper's reference code. Images are in [-1, 1]; translation and cutout
fill with 0 (mid grey), as the reference code does.
"""
from __future__ import annotations

import tensorflow as tf

from trainer.presets import AUGMENTATIONS as POLICIES
from trainer.presets import augment_policy as parse_policy

TRANSLATION_RATIO = 0.125      # shift by up to 1/8 of the image size in each direction
CUTOUT_RATIO = 0.5             # a square of half the image size


def _seed(seed: tf.Tensor, k: int) -> tf.Tensor:
    """An independent stateless seed per parameter (hashing, so no overlap with other seeds)."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)


def draw(policy: tuple[str, ...], n: tf.Tensor, size: int, seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """The augmentation parameters of n images of size x size, from a [2] int seed."""
    p: dict[str, tf.Tensor] = {}
    if "color" in policy:
        p["brightness"] = tf.random.stateless_uniform([n, 1, 1, 1], _seed(seed, 1)) - 0.5
        p["saturation"] = tf.random.stateless_uniform([n, 1, 1, 1], _seed(seed, 2)) * 2.0
        p["contrast"] = tf.random.stateless_uniform([n, 1, 1, 1], _seed(seed, 3)) + 0.5
    if "translation" in policy:
        shift = int(size * TRANSLATION_RATIO + 0.5)
        p["shift"] = tf.random.stateless_uniform([n, 2], _seed(seed, 4), -shift, shift + 1,
                                                 dtype=tf.int32)
    if "cutout" in policy:
        cut = int(size * CUTOUT_RATIO + 0.5)
        # The square's centre, as in the reference code: it may hang over the border.
        p["cutout"] = tf.random.stateless_uniform([n, 2], _seed(seed, 5), 0,
                                                  size + (1 - cut % 2), dtype=tf.int32)
    return p


def apply(x: tf.Tensor, p: dict[str, tf.Tensor]) -> tf.Tensor:
    """x [N, H, W, C] augmented with parameters from `draw` (N images); differentiable in x."""
    if "brightness" in p:
        x = x + tf.cast(p["brightness"], x.dtype)
        mean = tf.reduce_mean(x, axis=3, keepdims=True)
        x = (x - mean) * tf.cast(p["saturation"], x.dtype) + mean
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * tf.cast(p["contrast"], x.dtype) + mean
    if "shift" in p:
        x = _translate(x, p["shift"])
    if "cutout" in p:
        x = _cutout(x, p["cutout"])
    return x


def augment(x: tf.Tensor, policy: str | tuple[str, ...], seed: tf.Tensor) -> tf.Tensor:
    """Draw parameters for each image of x and apply them (identity for an empty policy)."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    if not names:
        return x
    return apply(x, draw(names, tf.shape(x)[0], int(x.shape[1]), seed))


def discriminator_input(x: tf.Tensor, xr: tf.Tensor, xp: tf.Tensor, policy: tuple[str, ...],
                        seed: tf.Tensor) -> tf.Tensor:
    """[x, xr, xp] for D: x[i] and xr[i] share their parameters, xp gets its own."""
    if not policy:
        return tf.concat([x, xr, xp], 0)
    n, size = tf.shape(x)[0], int(x.shape[1])
    pair = draw(policy, n, size, _seed(seed, 11))
    prior = draw(policy, tf.shape(xp)[0], size, _seed(seed, 12))
    return tf.concat([apply(x, pair), apply(xr, pair), apply(xp, prior)], 0)


def _translate(x: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """Shift each image by shift[i] = (dy, dx) pixels, filling with 0.

    Pads by the largest possible shift, then gathers rows and columns per image
    (batch_dims=1); gather's gradient scatters back into x, so it is differentiable.
    """
    h, w = int(x.shape[1]), int(x.shape[2])
    pad = max(int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5))
    xp = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    rows = tf.range(h)[None, :] + pad - shift[:, :1]          # out[i] = in[i - dy]
    cols = tf.range(w)[None, :] + pad - shift[:, 1:]
    xp = tf.gather(xp, rows, axis=1, batch_dims=1)             # [N, H, W + 2 pad, C]
    return tf.gather(xp, cols, axis=2, batch_dims=1)           # [N, H, W, C]


def _cutout(x: tf.Tensor, centre: tf.Tensor) -> tf.Tensor:
    """Zero a square of CUTOUT_RATIO x the image size around centre[i] = (y, x), clipped."""
    h, w = int(x.shape[1]), int(x.shape[2])
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = centre[:, :1] - ch // 2                               # [N, 1]
    left = centre[:, 1:] - cw // 2
    r = tf.range(h)[None, :]
    c = tf.range(w)[None, :]
    in_rows = (r >= top) & (r < top + ch)                       # [N, H]
    in_cols = (c >= left) & (c < left + cw)                     # [N, W]
    hole = in_rows[:, :, None] & in_cols[:, None, :]            # [N, H, W]
    keep = tf.cast(tf.logical_not(hole), x.dtype)[..., None]
    return x * keep


__all__ = ["POLICIES", "parse_policy", "draw", "apply", "augment", "discriminator_input"]
