"""An inference-only decoder that gives the Keras decoder's pixels with fewer, cheaper ops.

Only export uses this; training keeps the Keras decoder. Two exact rewrites:

* Inference-mode batch norm is an affine map per channel, so it is folded into the
  weights and bias of the layer before it (Dense or Conv2DTranspose), leaving
  conv + bias + ReLU, which TensorFlow's CPU kernels fuse.
* A 4x4/stride-2 'same' transposed conv equals a 3x3 'same' Conv2D with 4x the output
  channels followed by tf.nn.depth_to_space(2) (sub-pixel form): output pixel
  (2m+r, 2n+s) only sees the 2x2 input pixels around (m, n). Measured on the 2-core dev
  machine with oneDNN on (TensorFlow's default on x86), this wins only for the 3-channel
  output layer (about 2x for that layer: the transposed kernel handles few output
  channels badly) and loses for the wide hidden layers (the 3x3 form does 2.25x the
  multiply-adds), so hidden layers stay transposed convs. (With oneDNN off the sub-pixel
  form wins everywhere; that variant was measured, see docs/trainer.md, and dropped.)

--g-attn's self-attention block is kept as it is (1x1 projections as matrix products, a
softmax over positions) with its gate folded into the output projection: nothing in it
is a batch statistic, so there is nothing else to fold.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# For output phase r (row or column parity), the 4x4 transposed kernel's tap k that
# reads input offset a-1 (a = 0, 1, 2 in the 3x3 window). Derived from the transposed
# conv being the adjoint of a stride-2 SAME conv with padding 1 before: o = 2i + k - 1.
_TAPS = {0: {0: 3, 1: 1}, 1: {1: 2, 2: 0}}


def subpixel_kernel(kernel: np.ndarray) -> np.ndarray:
    """(4, 4, out, in) Conv2DTranspose kernel -> (3, 3, in, 4*out) Conv2D kernel.

    The output channel order is (r, s, c), which is the order depth_to_space expects.
    """
    kh, kw, cout, cin = kernel.shape
    assert (kh, kw) == (4, 4), kernel.shape
    k3 = np.zeros((3, 3, cin, 2, 2, cout), dtype=np.float64)
    for r, rows in _TAPS.items():
        for s, cols in _TAPS.items():
            for a, kr in rows.items():
                for b, kc in cols.items():
                    k3[a, b, :, r, s, :] = kernel[kr, kc].T
    return k3.reshape(3, 3, cin, 4 * cout)


def _bn_affine(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode batch norm as y = x * scale + shift (per channel)."""
    gamma = np.asarray(bn.gamma.numpy() if bn.scale else 1.0, dtype=np.float64)
    beta = np.asarray(bn.beta.numpy() if bn.center else 0.0, dtype=np.float64)
    mean = bn.moving_mean.numpy().astype(np.float64)
    var = bn.moving_variance.numpy().astype(np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale * np.ones_like(mean), beta - mean * scale


class FastDecoder(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type stubs
    """The folded decoder: z -> image in [-1, 1], same as decoder(z, training=False).

    Holds its weights as tf.Variables so a SavedModel stores them as variables (not
    graph constants). Built from a snapshot: later changes to the Keras decoder are not seen.
    """

    def __init__(self, decoder: keras.Model) -> None:
        super().__init__(name="fast_decoder")
        layers = [l for l in decoder.layers if not isinstance(l, keras.layers.InputLayer)]
        # By base class: the trainer's BatchNorm is a BatchNormalization with a faster training pass.
        kinds = ["BatchNormalization" if isinstance(l, keras.layers.BatchNormalization)
                 else type(l).__name__ for l in layers]
        # --g-mapping's residual MLP first, z + MLP(z), kept as it is: nothing to fold.
        self.map_w: list[tf.Variable] = []
        self.map_b: list[tf.Variable] = []
        self.map_slope: list[float | None] = []          # None: no activation (the last layer)
        while kinds[:1] == ["MappingDense"]:
            dense = layers[0]
            k = len(self.map_w)
            self.map_w.append(tf.Variable(dense.effective_kernel().numpy(), trainable=False,
                                          name=f"map{k}_w"))
            self.map_b.append(tf.Variable(dense.effective_bias().numpy(), trainable=False,
                                          name=f"map{k}_b"))
            if kinds[1:2] == ["LeakyReLU"]:
                if getattr(layers[1], "dropout", 0.0):
                    raise ValueError("unexpected decoder layout: dropout in the mapping network")
                self.map_slope.append(float(layers[1].negative_slope))
                layers, kinds = layers[2:], kinds[2:]
            else:
                self.map_slope.append(None)
                layers, kinds = layers[1:], kinds[1:]
        if self.map_w:
            if kinds[:1] != ["Add"] or self.map_slope[-1] is not None or None in self.map_slope[:-1]:
                raise ValueError(f"unexpected decoder layout: a mapping network that is not z + MLP(z): {kinds}")
            layers, kinds = layers[1:], kinds[1:]
        # --g-attn's block, taken out of the layer list and kept with the number of conv
        # stages before it, after whose ReLU it runs (0: after the first dense layer's).
        self.attn_after = -1
        self.attn: list[tf.Variable] = []
        if "SelfAttention" in kinds:
            j = kinds.index("SelfAttention")
            if kinds.count("SelfAttention") > 1 or kinds[j - 1] != "ReLU":
                raise ValueError(f"unexpected decoder layout: self-attention other than once after a ReLU: {kinds}")
            block = layers[j]
            self.attn_after = sum(k in ("Conv2D", "Conv2DTranspose") for k in kinds[:j])
            gate = float(block.gate.numpy())
            for name, conv in (("q", block.query), ("k", block.key), ("v", block.value), ("o", block.out)):
                w, b = conv.kernel.numpy()[0, 0], conv.bias.numpy()   # (1, 1, in, out) -> (in, out)
                if name == "o":
                    w, b = w * gate, b * gate
                self.attn += [tf.Variable(w, trainable=False, name=f"attn_{name}_w"),
                              tf.Variable(b, trainable=False, name=f"attn_{name}_b")]
            layers, kinds = layers[:j] + layers[j + 1:], kinds[:j] + kinds[j + 1:]
        # Then Dense, Reshape, BN, ReLU, then (Conv2DTranspose or --g-depth's Conv2D, BN, ReLU)*,
        # Conv2DTranspose, tanh.
        if kinds[:4] != ["Dense", "Reshape", "BatchNormalization", "ReLU"] or \
                kinds[-2:] != ["Conv2DTranspose", "Activation"]:
            raise ValueError(f"unexpected decoder layout: {kinds}")
        dense, reshape, bn0 = layers[0], layers[1], layers[2]
        linear = keras.activations.linear
        if any(l.activation is not linear for l in layers
               if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose))):
            raise ValueError("unexpected decoder layout: an activation inside Dense/Conv2D(Transpose)")
        if layers[-1].activation is not keras.activations.tanh:
            raise ValueError("unexpected decoder layout: the output activation is not tanh")
        self.shape0 = [int(d) for d in reshape.target_shape]
        scale, shift = _bn_affine(bn0)
        hw = self.shape0[0] * self.shape0[1]
        w = dense.kernel.numpy().astype(np.float64) * np.tile(scale, hw)
        b = np.tile(shift, hw)
        if dense.use_bias:
            b = b + dense.bias.numpy() * np.tile(scale, hw)
        self.dense_w = tf.Variable(w.astype(np.float32), trainable=False, name="dense_w")
        self.dense_b = tf.Variable(b.astype(np.float32), trainable=False, name="dense_b")

        self.conv_w: list[tf.Variable] = []
        self.conv_b: list[tf.Variable] = []
        subpixel, upsample = [], []
        rest = layers[4:-2]
        if len(rest) % 3:
            raise ValueError(f"unexpected decoder layout: {kinds}")
        stages = [rest[i:i + 3] for i in range(0, len(rest), 3)] + [[layers[-2]]]
        for i, stage in enumerate(stages):
            conv = stage[0]
            up = isinstance(conv, keras.layers.Conv2DTranspose)
            if up and (tuple(conv.strides) != (2, 2) or tuple(conv.kernel_size) != (4, 4)
                       or conv.padding != "same" or tuple(conv.dilation_rate) != (1, 1)
                       or conv.output_padding is not None):
                raise ValueError(f"stage {i}: expected a 4x4/stride-2 'same' Conv2DTranspose")
            if not up and (not isinstance(conv, keras.layers.Conv2D) or tuple(conv.strides) != (1, 1)
                           or tuple(conv.kernel_size) != (3, 3) or conv.padding != "same"
                           or tuple(conv.dilation_rate) != (1, 1) or conv.groups != 1):
                raise ValueError(f"stage {i}: expected a 4x4/stride-2 'same' Conv2DTranspose "
                                 f"or a 3x3/stride-1 'same' Conv2D")
            kernel = conv.kernel.numpy().astype(np.float64)
            cout = kernel.shape[2] if up else kernel.shape[3]     # transposed: (h, w, out, in)
            bias = conv.bias.numpy().astype(np.float64) if conv.use_bias else np.zeros(cout)
            if len(stage) == 3:
                if not (isinstance(stage[1], keras.layers.BatchNormalization)
                        and isinstance(stage[2], keras.layers.ReLU)):
                    raise ValueError(f"stage {i}: expected BatchNormalization then ReLU")
                scale, shift = _bn_affine(stage[1])
                kernel = kernel * (scale[None, None, :, None] if up else scale)
                bias = bias * scale + shift
            sub = i == len(stages) - 1              # the output layer only (module docstring)
            subpixel.append(sub)
            upsample.append(up)
            if sub:
                kernel, bias = subpixel_kernel(kernel), np.tile(bias, 4)
            self.conv_w.append(tf.Variable(kernel.astype(np.float32), trainable=False, name=f"conv{i}_w"))
            self.conv_b.append(tf.Variable(bias.astype(np.float32), trainable=False, name=f"conv{i}_b"))
        self.subpixel = tuple(subpixel)
        self.upsample = tuple(upsample)

    def _attend(self, x: tf.Tensor) -> tf.Tensor:
        """x + gate * out(softmax(q k^T) v), as SelfAttention.call computes it."""
        n, h, w, c = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
        flat = tf.reshape(x, [-1, c])
        qw, qb, kw, kb, vw, vb, ow, ob = self.attn
        q, k, v = (tf.reshape(tf.matmul(flat, a) + b, [n, h * w, -1])
                   for a, b in ((qw, qb), (kw, kb), (vw, vb)))
        y = tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1), v)
        y = tf.matmul(tf.reshape(y, [-1, vw.shape[1]]), ow) + ob
        return x + tf.reshape(y, [n, h, w, c])

    def __call__(self, z: tf.Tensor) -> tf.Tensor:
        if self.map_w:
            h = z
            for w, b, slope in zip(self.map_w, self.map_b, self.map_slope):
                h = tf.matmul(h, w) + b
                if slope is not None:
                    h = tf.nn.leaky_relu(h, slope)
            z = z + h
        x = tf.nn.relu(tf.matmul(z, self.dense_w) + self.dense_b)
        x = tf.reshape(x, [-1] + self.shape0)
        if self.attn_after == 0:
            x = self._attend(x)
        last = len(self.conv_w) - 1
        for i, (w, b, sub, up) in enumerate(zip(self.conv_w, self.conv_b, self.subpixel, self.upsample)):
            if sub or not up:
                x = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)
            else:
                n, cout = x.shape[1], w.shape[2]
                shape = tf.stack([tf.shape(x)[0], 2 * n, 2 * n, cout])
                x = tf.nn.bias_add(tf.nn.conv2d_transpose(x, w, shape, 2, "SAME"), b)
            if i < last:
                x = tf.nn.relu(x)
                if i + 1 == self.attn_after:
                    x = self._attend(x)
            if sub:
                x = tf.nn.depth_to_space(x, 2)
        return tf.tanh(x)
