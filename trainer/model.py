"""The VAE-GAN's three networks, after the seed (DCGAN stacks: 4x4 kernels, stride 2).

Encoder: image -> (mean, logvar). Decoder (= generator): embedding -> image in [-1, 1].
Discriminator: image -> (logit, feature map); the feature map is the layer the
learned-similarity reconstruction loss (Larsen et al. 2016) compares.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from trainer.presets import Config, levels


class SpectralConv2D(keras.layers.Layer):
    """A 4x4/stride-2 convolution whose kernel is divided by its largest singular value.

    Written here rather than keras.layers.SpectralNormalization because that wrapper
    overwrites the kernel in place (no gradient through sigma) and assigns it in replica
    context, which a MultiWorkerMirroredStrategy refuses. Here the kernel stays the raw
    parameter and only the power-iteration vector is state.
    """

    def __init__(self, filters: int, kernel_size: int = 4, strides: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides

    def build(self, input_shape) -> None:
        k = (self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters)
        self.kernel = self.add_weight(shape=k, name="kernel",
                                      initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.bias = self.add_weight(shape=(self.filters,), name="bias", initializer="zeros")
        self.u = self.add_weight(shape=(1, self.filters), name="sn_u", trainable=False,
                                 initializer=keras.initializers.RandomNormal(stddev=1.0),
                                 aggregation="only_first_replica")

    def call(self, inputs, training=False):
        w = tf.reshape(self.kernel, [-1, self.filters])
        u = tf.convert_to_tensor(self.u)
        v = tf.math.l2_normalize(tf.matmul(u, w, transpose_b=True))
        u_new = tf.math.l2_normalize(tf.matmul(v, w))
        u_new, v = tf.stop_gradient(u_new), tf.stop_gradient(v)
        sigma = tf.reduce_sum(tf.matmul(v, w) * u_new)
        if training:
            self.u.assign(u_new)
        y = tf.nn.conv2d(inputs, self.kernel / sigma, self.strides, "SAME")
        return tf.nn.bias_add(y, self.bias)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides}


def _filters(cfg: Config, i: int) -> int:
    return min(cfg.width * 2 ** i, cfg.width * 8)


def _init() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=0.02)


def build_encoder(cfg: Config) -> keras.Model:
    x = inp = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    for i in range(levels(cfg.image_size)):
        x = keras.layers.Conv2D(_filters(cfg, i), 4, 2, "same", use_bias=i == 0,
                                kernel_initializer=_init())(x)
        if i > 0:
            x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Flatten()(x)
    mean = keras.layers.Dense(cfg.embedding_size, name="mean", kernel_initializer=_init())(x)
    # logvar starts near 0 (unit variance) so exp() cannot blow up in the first steps.
    logvar = keras.layers.Dense(cfg.embedding_size, name="logvar",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3))(x)
    return keras.Model(inp, [mean, logvar], name="encoder")


def build_decoder(cfg: Config) -> keras.Model:
    n = levels(cfg.image_size)
    top = _filters(cfg, n - 1)
    z = inp = keras.Input((cfg.embedding_size,), name="z")
    x = keras.layers.Dense(4 * 4 * top, use_bias=False, kernel_initializer=_init())(z)
    x = keras.layers.Reshape((4, 4, top))(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    x = keras.layers.ReLU()(x)
    for i in reversed(range(n - 1)):
        x = keras.layers.Conv2DTranspose(_filters(cfg, i), 4, 2, "same", use_bias=False,
                                         kernel_initializer=_init())(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2DTranspose(3, 4, 2, "same", kernel_initializer=_init())(x)
    out = keras.layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(inp, out, name="decoder")


def feature_level(cfg: Config) -> int:
    """Which D stage the learned-similarity loss compares: the one before last (8x8 at 64)."""
    return max(0, levels(cfg.image_size) - 2)


def build_discriminator(cfg: Config) -> keras.Model:
    x = inp = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    feat = None
    for i in range(levels(cfg.image_size)):
        if cfg.spectral_norm:
            x = SpectralConv2D(_filters(cfg, i))(x)
        else:
            x = keras.layers.Conv2D(_filters(cfg, i), 4, 2, "same", kernel_initializer=_init())(x)
        if i == feature_level(cfg):
            feat = x
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Flatten()(x)
    logit = keras.layers.Dense(1, kernel_initializer=_init(), name="logit")(x)
    return keras.Model(inp, [logit, feat], name="discriminator")


class VaeGan:
    """The networks of one run, plus the EMA copy of the decoder used for samples and export."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg)
        self.discriminator = build_discriminator(cfg)
        self.ema_decoder = build_decoder(cfg)
        for v, src in zip(self.ema_decoder.weights, self.decoder.weights):
            v.assign(src)

    def update_ema(self, decay: float | tf.Tensor) -> None:
        """EMA of the trainable weights; batch-norm statistics are copied (they are averages already)."""
        for ema, v in zip(self.ema_decoder.weights, self.decoder.weights):
            if v.trainable:
                ema.assign(decay * ema + (1.0 - decay) * v)
            else:
                ema.assign(v)
