"""DiffAugment (Zhao et al. 2020): differentiable augmentations of what the discriminator sees.

With a few thousand images D memorises the training set and its gradient stops telling
the generator anything useful. Augmenting EVERY image D sees (real and generated alike,
in D's step and in G's) keeps D from memorising without teaching G to produce augmented
images, because G's gradient flows back through the same augmentation.

Parameters are drawn once per image with stateless ops from a seed derived from the step
seed, so a run stays repeatable; `draw` and `apply` are separate so a real image and its
reconstruction can get the SAME shift, cutout and colour change (the learned-similarity
loss compares D's features of the two and must not see a difference the augmentation made).

The policy is a comma-separated subset of `color,translation,cutout` (the paper's) and
`scale,rotate` (from StyleGAN2-ADA's general geometric group), always applied
in the order color, scale/rotate, translation, cutout whatever order it is written in.
Images are in [-1, 1]; translation and cutout fill with 0 (mid grey), as the reference code
does, and so do scale and rotate where they uncover the border.
"""
from __future__ import annotations

import math

import tensorflow as tf

from trainer.presets import augment_policy

TRANSLATION_RATIO = 0.125      # shift by up to 1/8 of the image size in each direction
CUTOUT_RATIO = 0.5             # a square of half the image size
SCALE_STD = 0.2 * math.log(2.0)   # ADA: isotropic scale factor 2^N(0, 0.2^2)
ROTATE_MAX = math.pi / 9       # rotate by up to 20 degrees either way: bounded, so a turned
                               # set stays told apart from an upright one even when every image
                               # is turned (a full circle at p = 1 would hide any turn)
ADAPT_IMAGES = 100_000         # --augment-target: p can go from 0 to 1 in this many real images


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
    if "scale" in policy:
        p["scale"] = tf.exp(tf.random.stateless_normal([n], _seed(seed, 8)) * SCALE_STD)
    if "rotate" in policy:
        p["angle"] = tf.random.stateless_uniform([n], _seed(seed, 9), -ROTATE_MAX, ROTATE_MAX)
    if "cutout" in policy:
        cut = int(size * CUTOUT_RATIO + 0.5)
        # The square's centre, as in the reference code: it may hang over the border.
        p["cutout"] = tf.random.stateless_uniform([n, 2], _seed(seed, 5), 0,
                                                  size + (1 - cut % 2), dtype=tf.int32)
    return p


def apply(x: tf.Tensor, p: dict[str, tf.Tensor]) -> tf.Tensor:
    """x [N, H, W, C] augmented with parameters from `draw` (N images); differentiable in x.

    Written for few ops rather than literally (reductions over the 3 channels and separate
    passes per augmentation cost more than the arithmetic on a CPU): the colour change is
    one 3x3 matrix per image, translation and cutout one gather and one mask.
    """
    if "brightness" in p:
        x = _color(x, p["brightness"], p["saturation"], p["contrast"])
    if "scale" in p or "angle" in p:
        x = _affine(x, p.get("scale"), p.get("angle"))
    if "shift" in p or "cutout" in p:
        x = _geometric(x, p.get("shift"), p.get("cutout"))
    return x


def augment(x: tf.Tensor, policy: str | tuple[str, ...], seed: tf.Tensor,
            p: tf.Tensor | None = None, late: tuple[str, ...] = ()) -> tf.Tensor:
    """Draw parameters for each image of x and apply them (identity for an empty policy).

    With `p` each image is augmented with probability p and left as it is otherwise;
    `late` augmentations follow with probability p - 1 (none until p passes 1).
    """
    names = augment_policy(policy) if isinstance(policy, str) else policy
    if not names:
        return x
    out = _stage(x, names, seed, p)
    if not late or p is None:
        return out
    return _stage(out, late, _seed(seed, 7), p - 1.0)


def _stage(x: tf.Tensor, policy: tuple[str, ...], seed: tf.Tensor, p: tf.Tensor | None) -> tf.Tensor:
    n = tf.shape(x)[0]
    return _some(apply(x, draw(policy, n, int(x.shape[1]), seed)), x,
                 None if p is None else _chosen(n, p, seed))


def _chosen(n: tf.Tensor, p: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """[n, 1, 1, 1] booleans, each True with probability p."""
    return tf.random.stateless_uniform([n, 1, 1, 1], _seed(seed, 6)) < tf.cast(p, tf.float32)


def _some(augmented: tf.Tensor, x: tf.Tensor, chosen: tf.Tensor | None) -> tf.Tensor:
    return augmented if chosen is None else tf.where(chosen, augmented, x)


def adapt(p: tf.Tensor, real_sign: tf.Tensor, target: float, images: int,
          limit: float = 1.0) -> tf.Tensor:
    """ADA's rule (Karras et al. 2020): more augmentation while D is sure of the real images.

    `real_sign` is E[sign(D(real))] over the step's (augmented) real images: near 1 when D
    has memorised them, near 0 when it cannot tell. p moves by images / ADAPT_IMAGES
    towards more augmentation above `target` and towards less below it, within [0, limit]:
    limit 2 when there are `late` augmentations for p above 1.
    """
    step = tf.cast(images, p.dtype) / ADAPT_IMAGES
    return tf.clip_by_value(p + tf.sign(tf.cast(real_sign, p.dtype) - target) * step, 0.0, limit)


def adapt_late(q: tf.Tensor, p: tf.Tensor, real_sign: tf.Tensor, target: float,
               images: int) -> tf.Tensor:
    """A second adaptive probability `q` that moves by ADA's rule only while the first, `p`,
    is at 1, and falls back towards 0 while it is below.

    Why: two probabilities that read the same signal share its work, so the second would
    hold the first below 1 (measured for --apa from the first step, docs/trainer.md). Gated
    this way, the second lever takes over only once the first has nothing left to give.
    """
    sign = tf.where(tf.cast(p, q.dtype) >= 1.0, tf.cast(real_sign, q.dtype), -1.0)
    return adapt(q, sign, target, images)


def discriminator_input(x: tf.Tensor, xr: tf.Tensor, xp: tf.Tensor, policy: tuple[str, ...],
                        seed: tf.Tensor, p: tf.Tensor | None = None,
                        late: tuple[str, ...] = ()) -> tf.Tensor:
    """[x, xr, xp] for D: x[i] and xr[i] share their parameters (and whether they are
    augmented at all, with `p`), xp gets its own; `late` as in `augment`."""
    d_in = tf.concat([x, xr, xp], 0)
    if not policy:
        return d_in
    n, m = tf.shape(x)[0], tf.shape(xp)[0]
    out = _paired(d_in, n, m, policy, seed, p)
    if not late or p is None:
        return out
    return _paired(out, n, m, late, _seed(seed, 13), p - 1.0)


def _paired(d_in: tf.Tensor, n: tf.Tensor, m: tf.Tensor, policy: tuple[str, ...],
            seed: tf.Tensor, p: tf.Tensor | None) -> tf.Tensor:
    size = int(d_in.shape[1])
    pair = draw(policy, n, size, _seed(seed, 11))
    prior = draw(policy, m, size, _seed(seed, 12))
    out = apply(d_in, {k: tf.concat([pair[k], pair[k], prior[k]], 0) for k in pair})
    if p is None:
        return out
    both = _chosen(n, p, _seed(seed, 11))
    return _some(out, d_in, tf.concat([both, both, _chosen(m, p, _seed(seed, 12))], 0))


def _color(x: tf.Tensor, brightness: tf.Tensor, saturation: tf.Tensor,
           contrast: tf.Tensor) -> tf.Tensor:
    """The paper's brightness, saturation and contrast, in its order, in closed form.

    Brightness adds b; saturation maps x to (x - m_px) * s + m_px with m_px the mean over
    channels, i.e. x @ (s I + (1 - s) J / 3); contrast maps x to (x - m) * c + m with m the
    image mean, which saturation leaves unchanged. So y = (x + b) @ (c M) + (1 - c) m.
    """
    dt = x.dtype
    n = tf.shape(x)[0]
    b, s, c = (tf.cast(tf.reshape(t, [-1, 1, 1]), dt) for t in (brightness, saturation, contrast))
    x = x + b[..., None]
    channels = int(x.shape[-1])
    mat = c * (s * tf.eye(channels, dtype=dt) + (1.0 - s) / channels)     # [N, C, C]
    mean = tf.reduce_mean(tf.reshape(x, [n, -1]), axis=1)[:, None, None, None]
    return tf.einsum("nhwc,ncd->nhwd", x, mat) + (1.0 - c[..., None]) * mean


def _affine(x: tf.Tensor, scale: tf.Tensor | None, angle: tf.Tensor | None) -> tf.Tensor:
    """Scale each image by scale[i] and turn it by angle[i] radians about its centre,
    bilinear, 0 outside the picture.

    Output pixel q samples the input at R(-angle) q / scale (centred coordinates): four
    gathers and their weights, so the gradient reaches x as it does through translation.
    """
    n, h, w, ch = tf.shape(x)[0], int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    s = tf.ones([n]) if scale is None else tf.cast(scale, tf.float32)
    a = tf.zeros([n]) if angle is None else tf.cast(angle, tf.float32)
    cos, sin = (tf.reshape(t / s, [-1, 1, 1]) for t in (tf.cos(a), tf.sin(a)))
    yy = tf.range(h, dtype=tf.float32)[None, :, None] - (h - 1) / 2.0      # [1, H, 1]
    xx = tf.range(w, dtype=tf.float32)[None, None, :] - (w - 1) / 2.0      # [1, 1, W]
    src_y = cos * yy - sin * xx + (h - 1) / 2.0                          # [N, H, W]
    src_x = sin * yy + cos * xx + (w - 1) / 2.0
    y0, x0 = tf.floor(src_y), tf.floor(src_x)
    flat = tf.reshape(x, [n, h * w, ch])
    out = tf.zeros([n, h, w, ch], x.dtype)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, c = y0 + dy, x0 + dx
        weight = (1.0 - tf.abs(src_y - r)) * (1.0 - tf.abs(src_x - c))
        inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
        idx = (tf.clip_by_value(tf.cast(r, tf.int32), 0, h - 1) * w
               + tf.clip_by_value(tf.cast(c, tf.int32), 0, w - 1))
        picked = tf.reshape(tf.gather(flat, tf.reshape(idx, [n, h * w]), batch_dims=1),
                            [n, h, w, ch])
        out += picked * tf.cast(weight * tf.cast(inside, tf.float32), x.dtype)[..., None]
    return out


def _geometric(x: tf.Tensor, shift: tf.Tensor | None, centre: tf.Tensor | None) -> tf.Tensor:
    """Shift each image by shift[i] = (dy, dx) with 0 fill, then zero a square around
    centre[i] = (y, x) of CUTOUT_RATIO x the image size (clipped at the border).

    One gather per pixel (batch_dims=1; its gradient scatters back into x) and one mask.
    """
    n, h, w, ch = tf.shape(x)[0], int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    rows = tf.range(h)[None, :, None]                             # [1, H, 1]
    cols = tf.range(w)[None, None, :]                             # [1, 1, W]
    keep = tf.ones([1, h, w], tf.bool)
    if shift is not None:
        src_r = rows - shift[:, :1, None]                         # out[i] = in[i - dy]
        src_c = cols - shift[:, None, 1:]
        keep = (src_r >= 0) & (src_r < h) & (src_c >= 0) & (src_c < w)
        idx = tf.clip_by_value(src_r, 0, h - 1) * w + tf.clip_by_value(src_c, 0, w - 1)
        x = tf.gather(tf.reshape(x, [n, h * w, ch]), tf.reshape(idx, [n, h * w]), batch_dims=1)
        x = tf.reshape(x, [n, h, w, ch])
    if centre is not None:
        ch_, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
        top = centre[:, :1, None] - ch_ // 2                      # [N, 1, 1]
        left = centre[:, None, 1:] - cw // 2
        hole = (rows >= top) & (rows < top + ch_) & (cols >= left) & (cols < left + cw)
        keep = keep & tf.logical_not(hole)
    return x * tf.cast(keep, x.dtype)[..., None]


__all__ = ["ADAPT_IMAGES", "draw", "apply", "augment", "adapt", "discriminator_input"]
