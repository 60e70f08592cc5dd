"""The VAE-GAN's three networks, after the seed (DCGAN stacks: 4x4 kernels, stride 2).

Encoder: image -> (mean, logvar). Decoder (= generator): embedding -> image in [-1, 1].
Discriminator: image -> (logit, feature map, last feature map); the feature map is the
layer the learned-similarity reconstruction loss (Larsen et al. 2016) compares, the last
one what --d-recon's decoder redraws the image from.
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import tensorflow as tf

from trainer.presets import Config, ema_probes, levels


class LeakyReLU(keras.layers.Layer):
    """max(x, 0.2x) whose gradient reads the output, not the input.

    TF 2.21's graph remapper fuses Conv2D + BiasAdd + LeakyRelu but then fails on the
    LeakyReluGrad that still reads the BiasAdd it removed, and on that failure it drops
    every fusion in the step. The output has the input's sign, so the gradient can come
    from it: the fusion then holds and nothing else changes.

    `dropout` (D's --d-dropout) then zeroes that share of the outputs at random on every
    call, a regulariser against a D that memorises a small set, as Keras' DCGAN example
    does with 0.3. It lives in the activation rather than a layer of its own because a
    functional model checkpoints its layers by position: a new layer would keep a run
    checkpointed without dropout from resuming with it. It ignores `training`: D only runs
    while training, and its fakes are scored with training=False (spectral norm's sake,
    VaeGan.discriminate), so honouring the flag would drop units on real images only.
    """

    def __init__(self, negative_slope: float = 0.2, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.negative_slope = negative_slope
        self.dropout = dropout

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        alpha = self.negative_slope

        @tf.custom_gradient
        def leaky(x: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
            y = tf.nn.leaky_relu(x, alpha)

            def grad(dy: tf.Tensor) -> tf.Tensor:
                return tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=alpha)

            return y, grad

        y = leaky(inputs)
        if not self.dropout:
            return y
        keep = tf.random.uniform(tf.shape(y)) >= self.dropout
        return y * tf.cast(keep, y.dtype) / tf.cast(1.0 - self.dropout, y.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope,
                "dropout": self.dropout}


class MappingDense(keras.layers.Dense):
    """A dense layer of --g-mapping's MLP that learns `lr_mul` times as fast as an equalised one.

    StyleGAN's mapping layers (Karras et al. 2019, its `lrmul`): the weights are stored at
    1/lr_mul times their size and scaled back on every call, so Adam, whose steps are the
    same size whatever the gradient's scale, moves the weights the layer uses lr_mul times as
    far relative to their size. He's scale is applied at run time too (equalised learning
    rate), so `effective_kernel` and `effective_bias` are what the layer computes with (the
    export's fast decoder reads them). `zero` starts the weights at 0: the MLP's last layer,
    so the residual mapping starts as the identity (build_decoder).
    """

    def __init__(self, units: int, lr_mul: float = 1.0, zero: bool = False, **kwargs: Any) -> None:
        init = keras.initializers.Zeros() if zero else keras.initializers.RandomNormal(stddev=1.0 / lr_mul)
        super().__init__(units, kernel_initializer=init, **kwargs)
        self.lr_mul = lr_mul
        self.zero = zero

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.coef = (2.0 / int(input_shape[-1])) ** 0.5 * self.lr_mul    # He's gain for leaky ReLU

    def effective_kernel(self) -> tf.Tensor:
        return self.kernel * self.coef

    def effective_bias(self) -> tf.Tensor:
        return self.bias * self.lr_mul

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.matmul(inputs, self.effective_kernel()) + self.effective_bias()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("kernel_initializer", None)          # set from lr_mul and zero
        return {**config, "lr_mul": self.lr_mul, "zero": self.zero}


class BatchNorm(keras.layers.BatchNormalization):
    """Keras' batch norm, with the training pass on 4-D inputs through TF's fused kernel.

    Keras 3 normalises with separate moment, subtract and scale ops; the fused kernel does
    the forward in one op and the backward in one, about half the time on CPU. Inference,
    the variables and the moving-average rule are Keras' own (biased batch variance),
    so checkpoints, export and the folded decoder see an ordinary BatchNormalization.
    """

    def call(self, inputs: tf.Tensor, training: bool | None = None, mask: tf.Tensor | None = None) -> tf.Tensor:
        if not (training and self.trainable) or mask is not None or len(inputs.shape) != 4 \
                or self.axis not in (-1, 3) or not (self.scale and self.center):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        y, mean, var = tf.compat.v1.nn.fused_batch_norm(
            x, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
            epsilon=self.epsilon, is_training=True)
        # The fused kernel returns the unbiased variance; Keras records the biased one.
        n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        var = var * (n - 1.0) / tf.maximum(n, 2.0)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + tf.stop_gradient(var) * (1.0 - m))
        return tf.cast(y, self.compute_dtype)


class GLU(keras.layers.Layer):
    """Gated linear unit over channels: the first half times the sigmoid of the second.

    Not keras.layers.Activation("glu"): an Activation layer reports its input's shape, so
    the next layer of a functional model is built for twice the channels it gets.
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        a, b = tf.split(inputs, 2, axis=-1)
        return a * tf.sigmoid(b)


class MinibatchStddev(keras.layers.Layer):
    """--mbstd: ProGAN's minibatch standard deviation (Karras et al. 2018), one more channel.

    The channel holds how much D's features vary across each group of `group` images
    (the standard deviation per feature and position, averaged to one number per group).
    A generator that draws too few kinds of picture gives batches that vary less than real
    ones, which a D that judges one image at a time cannot see. Images i and i + n/group
    share a group, as in ProGAN; a batch that `group` does not divide is one group.

    With `fade` (--mbstd-start) the channel is multiplied by a weight of D's that the loop
    sets from the step (`spread_fade`): measured, the channel slowed a first run's early
    progress on the demo set and helped only later on emoji (docs/trainer.md). It is a
    weight, not a Python number, so one trace serves every step and a checkpoint holds it.
    """

    def __init__(self, group: int = 4, fade: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.fade = (self.add_weight(shape=(), initializer="zeros", trainable=False, name="fade")
                     if fade else None)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        n = tf.shape(inputs)[0]
        g = tf.where(n % self.group == 0, self.group, n)
        x = tf.cast(inputs, tf.float32)
        grouped = tf.reshape(x, tf.concat([[g, -1], tf.shape(x)[1:]], 0))
        spread = tf.sqrt(tf.math.reduce_variance(grouped, axis=0) + 1e-8)
        per_group = tf.reduce_mean(spread, axis=[1, 2, 3])            # [n / g]
        channel = tf.reshape(tf.tile(per_group, [g]), [-1, 1, 1, 1]) * tf.ones_like(x[..., :1])
        if self.fade is not None:
            channel = channel * tf.cast(self.fade, tf.float32)
        return tf.cast(tf.concat([x, channel], -1), inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "group": self.group, "fade": self.fade is not None}


def spread_fade(start: int, step: tf.Tensor) -> tf.Tensor:
    """--mbstd-start's multiplier at `step`: 0 until `start`, then linear to 1 over start / 4 steps.

    A fade rather than a switch: the weights that read the channel have had no gradient
    while it was zero, so they meet it at their initial values.
    """
    ramp = float(max(1, start // 4))
    return tf.clip_by_value((tf.cast(step, tf.float32) - float(start)) / ramp, 0.0, 1.0)


class SpectralConv2D(keras.layers.Layer):
    """A convolution (4x4/stride-2 unless told) whose kernel is divided by its largest singular value.

    Written here rather than keras.layers.SpectralNormalization because that wrapper
    overwrites the kernel in place (no gradient through sigma) and assigns it in replica
    context, which a MultiWorkerMirroredStrategy refuses. Here the kernel stays the raw
    parameter and only the power-iteration vector is state.
    """

    def __init__(self, filters: int, kernel_size: int = 4, strides: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides

    def build(self, input_shape: Any) -> None:
        k = (self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters)
        self.kernel = self.add_weight(shape=k, name="kernel",
                                      initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.bias = self.add_weight(shape=(self.filters,), name="bias", initializer="zeros")
        self.u = self.add_weight(shape=(1, self.filters), name="sn_u", trainable=False,
                                 initializer=keras.initializers.RandomNormal(stddev=1.0),
                                 aggregation="only_first_replica")

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
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

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides}


class SelfAttention(keras.layers.Layer):
    """--d-attn / --g-attn: SAGAN's self-attention block (Zhang et al. 2019) at one resolution.

    Every position of the feature map attends to every other, so D can compare parts of
    an image that its 4x4 kernels never see together (the two eyes of a face, the two
    halves of a symmetric icon). Query and key are 1x1 convolutions to C/8 channels, the
    value to C/2 and back to C, as in BigGAN; the output is added through a gate that
    starts at 0, so the block joins D as the identity and the gradient opens it. The
    projections are spectrally normalised when D's convolutions are. In the decoder
    (SAGAN's own use) the same block lets the parts of a picture agree with each other:
    trainer/fastdecode.py gives its inference form.
    """

    def __init__(self, spectral: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spectral = spectral

    def build(self, input_shape: Any) -> None:
        c = int(input_shape[-1])
        conv = ((lambda f: SpectralConv2D(f, kernel_size=1, strides=1)) if self.spectral else
                (lambda f: keras.layers.Conv2D(f, 1, 1, "same", kernel_initializer=_init())))
        self.query, self.key = conv(max(1, c // 8)), conv(max(1, c // 8))
        self.value, self.out = conv(max(1, c // 2)), conv(c)
        for layer in (self.query, self.key, self.value):    # now, so the weights exist before
            layer.build(input_shape)                        # the optimizer and checkpoint look
        self.out.build((*input_shape[:-1], max(1, c // 2)))
        self.gate = self.add_weight(shape=(), initializer="zeros", name="gate")

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = inputs
        n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]

        q, k, v = (tf.reshape(layer(x, training=training), [n, h * w, -1])
                   for layer in (self.query, self.key, self.value))
        attn = tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1)      # [n, hw, hw]
        y = self.out(tf.reshape(tf.matmul(attn, v), [n, h, w, -1]), training=training)
        return x + self.gate * y

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "spectral": self.spectral}


def _filters(cfg: Config, i: int, width: int = 0) -> int:
    width = width or cfg.width
    scale: int = 2 ** i        # int ** int is typed Any (a negative power is a float); i >= 0 here
    return min(width * scale, width * 8)


def _init() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=0.02)


def build_encoder(cfg: Config) -> keras.Model:
    x = inp = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    for i in range(levels(cfg.image_size)):
        x = keras.layers.Conv2D(_filters(cfg, i), 4, 2, "same", use_bias=i == 0,
                                kernel_initializer=_init())(x)
        if i > 0:
            x = BatchNorm(momentum=0.9, epsilon=1e-5)(x)
        x = LeakyReLU(0.2)(x)
    x = keras.layers.Flatten()(x)
    mean = keras.layers.Dense(cfg.embedding_size, name="mean", kernel_initializer=_init())(x)
    # logvar starts near 0 (unit variance) so exp() cannot blow up in the first steps.
    logvar = keras.layers.Dense(cfg.embedding_size, name="logvar",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3))(x)
    return keras.Model(inp, [mean, logvar], name="encoder")


def build_decoder(cfg: Config) -> keras.Model:
    """DCGAN's generator; --g-depth K adds a 3x3 stride-1 conv (batch norm, ReLU) at each of
    its K coarsest levels, where the per-level SWD put most of the remaining distance
    (shapes and colour areas, docs/trainer.md) and where a layer costs least.

    --g-mapping N adds z to an MLP of z (N dense layers of the embedding's width, leaky
    ReLUs between them) before the first layer, a mapping network after StyleGAN's (Karras
    et al. 2019): a Gaussian z must cover every kind of picture in proportion to its volume,
    and a linear first layer cannot give the kinds the samples miss more of it or the
    fragments between them less (docs/trainer.md, "what the samples lack"); an MLP can warp
    that volume. StyleGAN's plain stack, tried first, set the first five minutes back about
    3x at both learning rates tried (docs/trainer.md); the residual form with its last layer at zero
    starts as the identity, as DCGAN's generator, and warps only as far as training asks.
    --g-mapping-lr sets how fast the layers learn (MappingDense).

    --g-attn S adds SelfAttention after the level whose map is SxS (after its --g-depth
    conv): the samples' fragments are parts drawn as if each alone (docs/trainer.md, "what
    the samples lack"), and a stack of 4x4 kernels relates distant parts only indirectly.
    """
    n = levels(cfg.image_size)
    top = _filters(cfg, n - 1)
    x = inp = keras.Input((cfg.embedding_size,), name="z")
    if cfg.g_mapping:
        h = inp
        for i in range(cfg.g_mapping):
            last = i == cfg.g_mapping - 1
            h = MappingDense(cfg.embedding_size, lr_mul=cfg.g_mapping_lr, zero=last)(h)
            if not last:
                h = LeakyReLU(0.2)(h)
        x = keras.layers.Add()([inp, h])
    x = keras.layers.Dense(4 * 4 * top, use_bias=False, kernel_initializer=_init())(x)
    x = keras.layers.Reshape((4, 4, top))(x)
    x = BatchNorm(momentum=0.9, epsilon=1e-5)(x)
    x = keras.layers.ReLU()(x)
    for level, i in enumerate(reversed(range(n))):
        if level < cfg.g_depth:
            x = keras.layers.Conv2D(_filters(cfg, i), 3, 1, "same", use_bias=False,
                                    kernel_initializer=_init())(x)
            x = BatchNorm(momentum=0.9, epsilon=1e-5)(x)
            x = keras.layers.ReLU()(x)
        if cfg.g_attn == 4 << level:
            x = SelfAttention(name="attention")(x)
        if i == 0:
            break
        x = keras.layers.Conv2DTranspose(_filters(cfg, i - 1), 4, 2, "same", use_bias=False,
                                         kernel_initializer=_init())(x)
        x = BatchNorm(momentum=0.9, epsilon=1e-5)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2DTranspose(3, 4, 2, "same", kernel_initializer=_init())(x)
    out = keras.layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(inp, out, name="decoder")


def feature_level(cfg: Config) -> int:
    """Which D stage the learned-similarity loss compares: the one before last (8x8 at 64)."""
    return max(0, levels(cfg.image_size) - 2)


def _d_conv(cfg: Config, filters: int, kernel: int, stride: int) -> keras.layers.Layer:
    """One of D's convolutions: spectrally normalised unless --no-spectral-norm."""
    if cfg.spectral_norm:
        return SpectralConv2D(filters, kernel_size=kernel, strides=stride)
    return keras.layers.Conv2D(filters, kernel, stride, "same", kernel_initializer=_init())


def _d_dropout(cfg: Config, level: int, first: int) -> float:
    """--d-dropout at one of D's levels: from `first` on, and never at the first level, so
    the learned-similarity features (taken at feature_level, before the activation) and the
    image-sized first map stay whole."""
    return cfg.d_dropout if level >= max(1, first) else 0.0


def build_discriminator(cfg: Config) -> keras.Model:
    """D's outputs: the logits, the learned-similarity features (feature_level, before batch
    norm) and its last feature map (4x4, what --d-recon reconstructs the image from).

    The logits are one column per scale (--d-scales): the image itself, then the image
    average-pooled by 2, 4, ..., each judged by a stack of its own (pix2pixHD's multi-scale
    discriminator). The losses average over every element, so each scale is a discriminator
    with its own loss and the generator answers to all of them at once; at one scale this is
    DCGAN's discriminator unchanged.
    """
    x = inp = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    feat = None
    for i in range(levels(cfg.image_size)):
        filters = _filters(cfg, i, cfg.d_width)
        x = _d_conv(cfg, filters, 4, 2)(x)
        if i == feature_level(cfg):
            feat = x
        if cfg.d_batch_norm and i > 0:
            x = BatchNorm(momentum=0.9, epsilon=1e-5)(x)
        x = LeakyReLU(0.2, _d_dropout(cfg, i, feature_level(cfg)))(x)
        for _ in range(cfg.d_depth):
            x = _d_conv(cfg, filters, 3, 1)(x)
            x = LeakyReLU(0.2)(x)
        if cfg.d_attn and cfg.image_size >> (i + 1) == cfg.d_attn:
            x = SelfAttention(cfg.spectral_norm, name="attention")(x)
    top = x
    if cfg.mbstd:
        # ProGAN's last block: the spread channel, then a 3x3 conv that mixes it in. No batch
        # norm after that conv: real and fake batches are normalised each by its own, which
        # would subtract the spread, a near-constant over each batch, before the logit.
        # --mbstd-mix dense leaves the conv out (it doubled D's multiply-adds at quick sizes)
        # and lets the logit's dense layer weigh the channel linearly.
        x = MinibatchStddev(cfg.mbstd, fade=cfg.mbstd_start > 0, name="mbstd")(x)
        if cfg.mbstd_mix == "conv":
            x = _d_conv(cfg, filters, 3, 1)(x)       # the last level's width, as `top` has
            x = LeakyReLU(0.2)(x)
    x = keras.layers.Flatten()(x)
    logits = [keras.layers.Dense(1, kernel_initializer=_init(), name="logit")(x)]
    for k in range(1, cfg.d_scales):
        logits.append(_coarse_head(cfg, inp, k))
    logit = logits[0] if len(logits) == 1 else keras.layers.Concatenate(name="logits")(logits)
    return keras.Model(inp, [logit, feat, top], name="discriminator")


def _coarse_head(cfg: Config, image: tf.Tensor, k: int) -> tf.Tensor:
    """The logit of D's k-th coarser scale: the image pooled by 2^k, a DCGAN stack to 4x4.

    Each of its 4x4 kernels spans 2^k times as many of the image's pixels as the main
    stack's, and it cannot see detail finer than the pooling, so its capacity goes to
    shapes and colour areas, where the per-level SWD put most of the remaining distance
    (docs/trainer.md, "SWD per pyramid level"). Same widths as the main stack's first
    levels; no spread channel, no extra depth.
    """
    size = cfg.image_size >> k
    x = keras.layers.AveragePooling2D(2 ** k, name=f"pool{k}")(image)
    for i in range(levels(size)):
        x = _d_conv(cfg, _filters(cfg, i, cfg.d_width), 4, 2)(x)
        if cfg.d_batch_norm and i > 0:
            x = BatchNorm(momentum=0.9, epsilon=1e-5)(x)
        x = LeakyReLU(0.2, _d_dropout(cfg, i, 1))(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(1, kernel_initializer=_init(), name=f"logit{k}")(x)


def build_d_decoder(cfg: Config) -> keras.Model:
    """--d-recon: FastGAN's self-supervised discriminator (Liu et al. 2021), its simple decoder.

    Nearest-neighbour upsampling, a 3x3 convolution, batch norm and a GLU per level, from
    D's last 4x4 feature map to the image at half size. Trained with D on real images only:
    the idea is that a D that must keep enough of each image in its features to redraw it
    cannot shrink to a memorised "is this one of the training images" code, which is how
    it overfits a small set (measured here, it did not stop that: docs/trainer.md). Half
    size and a quarter of D's widths, as FastGAN's decoders are small beside its D: at
    full size and half D's widths it made D's pass 1.6-1.7x as long here. FastGAN also
    redraws a random quarter from the 8x8 map and scores with LPIPS; here one decoder and
    the pixel error, since LPIPS needs downloaded weights.
    """
    n = levels(cfg.image_size)
    x = inp = keras.Input((4, 4, _filters(cfg, n - 1, cfg.d_width)), name="d_features")
    for i in reversed(range(1, n)):
        filters = max(4, _filters(cfg, i - 1, cfg.d_width) // 4)
        x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
        x = keras.layers.Conv2D(2 * filters, 3, 1, "same", use_bias=False,
                                kernel_initializer=_init())(x)
        x = BatchNorm(momentum=0.9, epsilon=1e-5)(x)
        x = GLU()(x)
    x = keras.layers.Conv2D(3, 3, 1, "same", kernel_initializer=_init())(x)
    out = keras.layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(inp, out, name="d_decoder")


class VaeGan:
    """The networks of one run, plus the EMA copy of the decoder used for samples and export."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg)
        self.discriminator = build_discriminator(cfg)
        self.d_decoder = build_d_decoder(cfg) if cfg.d_recon else None
        self.ema_decoder = build_decoder(cfg)
        # --ema-probes: more EMA copies at other decays, only evaluated (never exported).
        self.probes = {d: build_decoder(cfg) for d in ema_probes(cfg.ema_probes)}
        self._samplers: dict[float | None, keras.Model] = {}
        self._sampler_steps: dict[float | None, int] = {}    # the step their statistics are from
        for ema in (self.ema_decoder, *self.probes.values()):
            for v, src in zip(ema.weights, self.decoder.weights):
                v.assign(src)

    @property
    def fade_weight(self) -> tf.Variable | None:
        """D's --mbstd-start multiplier, which the loop sets each step; None without the fade."""
        if not self.cfg.mbstd:
            return None
        layer = self.discriminator.get_layer("mbstd")
        assert isinstance(layer, MinibatchStddev)
        return layer.fade

    @property
    def d_variables(self) -> list[tf.Variable]:
        """What D's loss trains: D, and with --d-recon its decoder."""
        extra = self.d_decoder.trainable_variables if self.d_decoder is not None else []
        return list(self.discriminator.trainable_variables) + list(extra)

    def discriminate(self, real: tf.Tensor, *fakes: tf.Tensor
                     ) -> list[tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
        """D's (logit, features, last feature map) for each group of images, each group in its own call.

        One call over the concatenation would make every backward sweep run over every
        image: the generator's loss would get input gradients for the real images too, and
        the encoder's for the prior decodes, which nothing uses (about a tenth of the
        step's work). D has no batch statistics, so separate calls give the same outputs.
        The fakes go first with training=False and the real images last with training=True,
        so spectral norm's power-iteration vector is read once by all three calls and then
        updated once: every group is scored by the same normalised D.
        """
        if self.cfg.d_batch_norm:     # each group normalised by its own batch, as DCGAN does
            return [self.discriminator(x, training=True) for x in (real, *fakes)]
        out = [self.discriminator(f, training=False) for f in fakes]
        return [self.discriminator(real, training=True)] + out

    def sampler(self, step: int, n: int = 256, probe: float | None = None) -> keras.Model:
        """The EMA decoder with batch-norm statistics measured on its own prior decodes.

        These are the "standing statistics" of Brock et al. 2019 (BigGAN). The decoder's
        moving averages describe batches that mix posterior and prior embeddings under the
        current weights, not the EMA ones; statistics measured by running the EMA weights
        on `n` fixed prior embeddings (training-mode batch norm, momentum 0) match what
        generation feeds the model. A separate model, built once outside any distribution
        strategy, so the training state is never touched; samples, evaluations and the
        export all decode with it. Measured once per training `step` (the EMA weights only
        change between steps), so a sample, an evaluation and the export at one step share it.
        `probe` picks one of the --ema-probes copies instead, with its own sampler.
        """
        if probe not in self._samplers:
            self._samplers[probe] = build_decoder(self.cfg)
        dec = self._samplers[probe]
        if self._sampler_steps.get(probe) == step:
            return dec
        dec.set_weights((self.ema_decoder if probe is None else self.probes[probe]).get_weights())
        norms = [l for l in dec.layers if isinstance(l, keras.layers.BatchNormalization)]
        momentum = [l.momentum for l in norms]
        for l in norms:
            l.momentum = 0.0
        z = tf.random.stateless_normal([n, self.cfg.embedding_size], seed=[self.cfg.seed, 4242])
        dec(z, training=True)
        for l, m in zip(norms, momentum):
            l.momentum = m
        self._sampler_steps[probe] = step
        return dec

    def update_ema(self, decay: float | tf.Tensor, ema_model: keras.Model | None = None) -> None:
        """EMA of the trainable weights (into `ema_model`, by default the EMA decoder);
        batch-norm statistics are copied (they are averages already)."""
        for ema, v in zip((self.ema_decoder if ema_model is None else ema_model).weights, self.decoder.weights):
            if v.trainable:
                ema.assign(decay * ema + (1.0 - decay) * v)
            else:
                ema.assign(v)
