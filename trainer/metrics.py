"""Quality figures that need no downloaded weights: PSNR, SSIM and the sliced Wasserstein distance.

SWD follows the ProGAN recipe (Karras et al. 2018): Laplacian pyramid levels from the
image size down to 16, 128 random 7x7 patches per image per level, each set normalised
per channel, 512 random unit projections; the distance is averaged over levels and x1e3.
Reimplemented here (the reference code is CC BY-NC).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

PATCH = 7
MIN_LEVEL = 16
DRAW_SEED_STRIDE = 10_000   # draw d's patches and projections come from seed + d * this


def psnr(real: tf.Tensor, recon: tf.Tensor) -> float:
    """Mean PSNR in dB of images in [-1, 1]."""
    return float(tf.reduce_mean(tf.image.psnr(real, recon, max_val=2.0)))


def ssim(real: tf.Tensor, recon: tf.Tensor) -> float:
    size = int(real.shape[1])
    return float(tf.reduce_mean(tf.image.ssim(real, recon, max_val=2.0,
                                              filter_size=min(11, size // 2 + 1))))


_K1 = np.array([1, 4, 6, 4, 1], np.float32) / 16.0
_K = np.outer(_K1, _K1)


def _blur(x: tf.Tensor, stride: int) -> tf.Tensor:
    k = tf.constant(np.tile(_K[:, :, None, None], (1, 1, 3, 1)))
    x = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(x, k, [1, stride, stride, 1], "VALID")


def laplacian_pyramid(images: tf.Tensor) -> list[np.ndarray]:
    """Band-pass levels from full size down to 16 (the last one is the low-pass residual)."""
    x = tf.convert_to_tensor(images, tf.float32)
    levels = []
    while x.shape[1] > MIN_LEVEL:
        down = _blur(x, 2)
        up = tf.image.resize(down, x.shape[1:3], method="bilinear")
        levels.append((x - up).numpy())
        x = down
    levels.append(x.numpy())
    return levels


def _descriptors(level: np.ndarray, patches: int, rng: np.random.Generator) -> np.ndarray:
    n, h, w, c = level.shape
    ys = rng.integers(0, h - PATCH + 1, size=(n, patches))
    xs = rng.integers(0, w - PATCH + 1, size=(n, patches))
    idx = np.arange(n)[:, None]
    out = np.stack([level[idx, ys + dy, xs + dx] for dy in range(PATCH) for dx in range(PATCH)],
                   axis=2)                                   # [n, patches, 49, c]
    out = out.reshape(n * patches, PATCH * PATCH, c)
    out = (out - out.mean(axis=(0, 1))) / (out.std(axis=(0, 1)) + 1e-8)
    return np.asarray(out.reshape(n * patches, -1))


def _sliced_wasserstein(a: np.ndarray, b: np.ndarray, projections: int,
                        rng: np.random.Generator) -> float:
    dirs = rng.standard_normal((a.shape[1], projections)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    # [projections, n] rows sort contiguously: a third faster than sorting columns.
    pa, pb = dirs.T @ a.T, dirs.T @ b.T
    pa.sort(axis=1)
    pb.sort(axis=1)
    return float(np.mean(np.abs(pa - pb)))


MAX_DESCRIPTORS = 65536      # patches per level and set, at most


def swd(a: tf.Tensor, b: tf.Tensor, patches: int = 128, projections: int = 512,
        seed: int = 0, max_descriptors: int = MAX_DESCRIPTORS) -> float:
    """SWD x1e3 between two equally sized sets of images in [-1, 1] (lower is closer).

    At most `max_descriptors` patches per level and set: with 1,688 images ProGAN's 128
    per image made 216,000, and the projections' sorts took 75 s of a busy 2-core machine
    per evaluation; 38 per image took 21 s (floor 11.4 instead of 10.1 on the emoji set).
    """
    return float(np.mean(swd_levels(a, b, patches, projections, seed, max_descriptors)))


def swd_levels(a: tf.Tensor, b: tf.Tensor, patches: int = 128, projections: int = 512,
               seed: int = 0, max_descriptors: int = MAX_DESCRIPTORS) -> list[float]:
    """SWD x1e3 per pyramid level, finest first (`swd` is their mean): which scale a
    generator misses, fine detail or layout, which the mean alone cannot say."""
    n = min(int(a.shape[0]), int(b.shape[0]))
    if n == 0:
        return [float("nan")]
    patches = max(1, min(patches, max_descriptors // n))
    rng = np.random.default_rng(seed)
    dists = []
    for la, lb in zip(laplacian_pyramid(a[:n]), laplacian_pyramid(b[:n])):
        da, db = _descriptors(la, patches, rng), _descriptors(lb, patches, rng)
        dists.append(1e3 * _sliced_wasserstein(da, db, projections, rng))
    return dists


def swd_draws(sample: Callable[[int], tf.Tensor], real: tf.Tensor, draws: int, seed: int,
              patches: int = 128, projections: int = 512) -> list[float]:
    """SWD of `draws` draws: draw d scores sample(d) against `real` with the patches and
    projections of seed + d * DRAW_SEED_STRIDE (draw 0: `seed` itself, so one draw is `swd`).

    One draw of a model moves by 0.8-1.6 at n = 2,000 (benchmarks/swd_levels.py --draws),
    as much as two recipes differ at a budget; the mean of several tells them apart. Two
    models scored with the same seed share each draw's real patches and projections, so
    what those add to a score cancels from the two models' difference draw by draw.
    """
    return [swd(sample(d), real, patches, projections, seed + d * DRAW_SEED_STRIDE)
            for d in range(draws)]
