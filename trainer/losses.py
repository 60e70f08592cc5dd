"""Loss terms, each averaged per sample so their balance does not depend on the batch size.

The seed's versions are kept (`seed_*`) so `--loss seed` can reproduce its formulation
as a baseline; they are not used by the default model.
"""
from __future__ import annotations

import tensorflow as tf


def kl_divergence(mean: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """True KL(N(mean, exp(logvar)) || N(0, I)), summed over dimensions, averaged over samples."""
    kl = 0.5 * tf.reduce_sum(tf.exp(logvar) + tf.square(mean) - 1.0 - logvar, axis=-1)
    return tf.reduce_mean(kl)


def per_sample_mse(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Mean squared error over each sample's elements, averaged over samples."""
    return tf.reduce_mean(tf.square(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def gaussian_nll(z: tf.Tensor, mean: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """-log N(z; mean, exp(logvar)) per dimension (without the constant), averaged.

    Trains both encoder heads on (z, decoder(z)) pairs: the mean to recover z, the
    variance to say how sure it is.
    """
    return 0.5 * tf.reduce_mean(logvar + tf.square(z - mean) * tf.exp(-logvar))


def d_loss(real_logit: tf.Tensor, fake_logits: list[tf.Tensor],
           label_smoothing: float = 0.0) -> tf.Tensor:
    """Discriminator: real -> 1, each kind of fake -> 0 (fakes share one half of the weight).

    One-sided label smoothing (Salimans et al. 2016) makes the real target
    1 - label_smoothing, so D is not pushed to ever more confident logits on real images;
    fakes stay at 0. At 0.0 this is exactly the unsmoothed loss.
    """
    real = tf.reduce_mean(tf.nn.softplus(-real_logit))
    if label_smoothing:
        # Cross-entropy against target t = 1 - ls: t * softplus(-l) + (1 - t) * softplus(l).
        real = (1.0 - label_smoothing) * real \
            + label_smoothing * tf.reduce_mean(tf.nn.softplus(real_logit))
    fake = tf.add_n([tf.reduce_mean(tf.nn.softplus(f)) for f in fake_logits]) / len(fake_logits)
    return real + fake


def r1_penalty(grad: tf.Tensor) -> tf.Tensor:
    """R1 (Mescheder et al. 2018): the squared norm of D's input gradient per real image, averaged.

    Penalising D's slope at the data keeps it from growing ever sharper around the few
    thousand images it sees again and again; the caller weights it by gamma / 2.
    """
    return tf.reduce_mean(tf.reduce_sum(tf.square(grad), axis=list(range(1, grad.shape.rank))))


def lecam(real_logit: tf.Tensor, fake_logits: list[tf.Tensor], ema_real: tf.Tensor,
          ema_fake: tf.Tensor) -> tf.Tensor:
    """LeCam regulariser (Tseng et al. 2021, "Regularizing GANs under limited data").

    Real logits are pulled down towards the moving average of the fake ones and fake
    logits up towards that of the real ones, only where they lie beyond it. A
    discriminator that has memorised a small training set calls its images real with
    ever larger logits; this term grows with that gap while leaving an undecided D (logits
    near their averages) alone. Fakes of several kinds share one half, as in d_loss.
    """
    real = tf.reduce_mean(tf.square(tf.nn.relu(real_logit - ema_fake)))
    fake = tf.add_n([tf.reduce_mean(tf.square(tf.nn.relu(ema_real - f)))
                     for f in fake_logits]) / len(fake_logits)
    return real + fake


def g_loss(fake_logits: list[tf.Tensor]) -> tf.Tensor:
    """Non-saturating generator loss from logits: -log sigmoid(D(fake)) = softplus(-logit)."""
    return tf.add_n([tf.reduce_mean(tf.nn.softplus(-f)) for f in fake_logits])


def consistency(augmented: tf.Tensor, clean: tf.Tensor) -> tf.Tensor:
    """bCR (Zhao et al. 2021): D's squared logit change from an image to its augmented copy.

    Summed over D's scales, averaged over images. Augmenting D's inputs hides from D what
    the augmentation changes; this term also asks D to answer alike, so what it learns
    about the few thousand real images is what survives augmentation, not their pixels.
    """
    return tf.reduce_mean(tf.reduce_sum(tf.reshape(tf.square(augmented - clean),
                                                   [tf.shape(clean)[0], -1]), axis=1))


def top_k_rows(logits: tf.Tensor, fraction: float | tf.Tensor) -> tf.Tensor:
    """The rows (samples) of `logits` with the highest summed logit, ceil(fraction x n) of them.

    Top-k training (Sinha et al. 2020): the fakes D already rates most real point the
    generator where the data is, while the worst ones' gradients pull towards wherever
    D is currently weakest. At a Python fraction of 1 the logits come back unchanged.
    """
    if isinstance(fraction, float) and fraction >= 1.0:
        return logits
    n = tf.shape(logits)[0]
    k = tf.cast(tf.math.ceil(tf.cast(fraction, tf.float32) * tf.cast(n, tf.float32)), tf.int32)
    score = tf.reduce_sum(tf.reshape(logits, [n, -1]), axis=1)     # all of D's scales
    return tf.gather(logits, tf.math.top_k(score, tf.clip_by_value(k, 1, n)).indices)


# --- the seed's formulation (baseline only) -------------------------------------------

_EPS = 1e-12


def seed_kl(mean: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """The seed's KL: twice the true KL per sample (it used log(stddev^2) without the 1/2)."""
    return 2.0 * kl_divergence(mean, logvar)


def seed_recon(x: tf.Tensor, xr: tf.Tensor) -> tf.Tensor:
    """The seed's reconstruction: a sum of squares over the WHOLE batch (scales with batch size)."""
    return tf.reduce_sum(tf.square(x - xr))


def seed_d_loss(real_logit: tf.Tensor, fake_logit: tf.Tensor) -> tf.Tensor:
    """Clipped logs of sigmoids, as the seed had; D sees real and reconstructions only."""
    pr, pf = tf.sigmoid(real_logit), tf.sigmoid(fake_logit)
    return -tf.reduce_mean(tf.math.log(tf.clip_by_value(pr, _EPS, 1.0))
                           + tf.math.log(tf.clip_by_value(1.0 - pf, _EPS, 1.0)))


def seed_g_loss(fake_logit: tf.Tensor) -> tf.Tensor:
    return -tf.reduce_mean(tf.math.log(tf.clip_by_value(tf.sigmoid(fake_logit), _EPS, 1.0)))
