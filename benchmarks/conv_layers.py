"""How fast this machine runs each convolution of the training step, alone.

    .venv/bin/python benchmarks/conv_layers.py [--preset seed] [--batch-size 64] [--forms]

`train_step.py` reports the whole step at some fraction of the fp32 matmul peak. This
benchmark says where the ceiling is: it times every convolution of the encoder, decoder
and discriminator by itself (forward + input gradient + filter gradient, at the batch the
step runs it: encoder B, decoder 2B, discriminator 3 x B), at the shapes the trainer's
own model builders produce, and prints each layer's GFLOP/s against the matmul peak
measured in the same run. The last line is the convolutions' combined rate, FLOP-weighted:
a step made of nothing but these kernels, back to back, could reach that much and no more.

`--forms` also times two exact rewrites of each stride-2 convolution (space-to-depth + a
2x2 convolution; im2col + one matmul) and of each transposed one (four 2x2 sub-pixel
convolutions), to show whether a different formulation would beat oneDNN's kernel.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def conv_layers(preset: str, batch: int) -> list[dict]:
    """Every 4x4 convolution of the three networks: name, input shape, kernel, transposed?"""
    import keras
    from trainer import presets
    from trainer.model import SpectralConv2D, build_decoder, build_discriminator, build_encoder
    cfg = presets.resolve(preset, {})
    out = []
    for net, n_batch, calls in ((build_encoder(cfg), batch, 1), (build_decoder(cfg), 2 * batch, 1),
                                (build_discriminator(cfg), batch, 3)):
        for layer in net.layers:
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, SpectralConv2D)):
                kernel = int(layer.kernel.shape[0])
                if kernel != 4:       # the presets have only 4x4 stride-2 layers (no --d-depth)
                    continue
                transposed = isinstance(layer, keras.layers.Conv2DTranspose)
                cin, h = int(layer.input.shape[-1]), int(layer.input.shape[1])
                cout = int(layer.kernel.shape[-2] if transposed else layer.kernel.shape[-1])
                out_hw = h * 2 if transposed else h // 2
                # MACs of the forward: one kernel window per input (transposed) / output position.
                macs = n_batch * (h * h if transposed else out_hw * out_hw) * kernel * kernel * cin * cout
                out.append(dict(name=f"{net.name}/{layer.name}", h=h, cin=cin, cout=cout,
                                batch=n_batch, calls=calls, transposed=transposed,
                                flops=3 * 2 * macs))
    return out


# --- the forms: each takes x [n, h, h, cin] and the layer's kernel ---------------------

def _native_conv(x, w):
    import tensorflow as tf
    return tf.nn.conv2d(x, w, 2, "SAME")


def _s2d_conv(x, w):
    """pad 1, space-to-depth 2, then a 2x2 VALID conv over 4x the channels: same sums."""
    import tensorflow as tf
    cin, cout = w.shape[2], w.shape[3]
    xs = tf.nn.space_to_depth(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 2)
    w2 = tf.reshape(tf.transpose(tf.reshape(w, [2, 2, 2, 2, cin, cout]), [0, 2, 1, 3, 4, 5]),
                    [2, 2, 4 * cin, cout])
    return tf.nn.conv2d(xs, w2, 1, "VALID")


def _im2col_conv(x, w):
    """pad 1, extract 4x4 stride-2 patches, one matmul."""
    import tensorflow as tf
    n, h, _, cin = x.shape
    cout = w.shape[3]
    p = tf.image.extract_patches(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]),
                                 [1, 4, 4, 1], [1, 2, 2, 1], [1, 1, 1, 1], "VALID")
    y = tf.matmul(tf.reshape(p, [-1, 16 * cin]), tf.reshape(w, [16 * cin, cout]))
    return tf.reshape(y, [n, h // 2, h // 2, cout])


def _native_tconv(x, w):
    import tensorflow as tf
    n, h, _, _ = x.shape
    return tf.nn.conv2d_transpose(x, w, [n, 2 * h, 2 * h, w.shape[2]], 2, "SAME")


def _phase_tconv(x, w):
    """Four 2x2 stride-1 convolutions, one per output phase, interleaved: same sums."""
    import tensorflow as tf
    n, h, _, _ = x.shape
    cout = w.shape[2]
    xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    rows = []
    for a in (0, 1):
        row = []
        for b in (0, 1):
            # Output 2i+a reads input i+t through kernel tap a+1-2t (t in -1..1, tap in 0..3).
            th = [(t, a + 1 - 2 * t) for t in (-1, 0, 1) if 0 <= a + 1 - 2 * t <= 3]
            tw = [(t, b + 1 - 2 * t) for t in (-1, 0, 1) if 0 <= b + 1 - 2 * t <= 3]
            k = tf.stack([tf.stack([w[i, j] for _, j in tw]) for _, i in th])  # 2,2,cout,cin
            xs = xp[:, 1 + th[0][0]:2 + th[0][0] + h, 1 + tw[0][0]:2 + tw[0][0] + h, :]
            row.append(tf.nn.conv2d(xs, tf.transpose(k, [0, 1, 3, 2]), 1, "VALID")[:, :h, :h, :])
        rows.append(tf.stack(row, 3))
    return tf.reshape(tf.stack(rows, 2), [n, 2 * h, 2 * h, cout])


def timed(form: Callable, x, w, seconds: float) -> tuple[float, list]:
    """Best time of forward + both gradients, and the gradients (to check forms agree)."""
    import tensorflow as tf

    @tf.function
    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = form(x, w)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, w])

    grads = step(x, w)
    grads[0].numpy()
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end or best == float("inf"):
        t = time.perf_counter()
        step(x, w)[0].numpy()
        best = min(best, time.perf_counter() - t)
    return best, grads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="seed")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=2.0, help="timing per layer and form")
    p.add_argument("--forms", action="store_true", help="also time the exact rewrites")
    args = p.parse_args()
    import tensorflow as tf
    from train_step import matmul_peak

    layers = conv_layers(args.preset, args.batch_size)
    forms = {False: {"native": _native_conv}, True: {"native": _native_tconv}}
    if args.forms:
        forms[False].update(s2d=_s2d_conv, im2col=_im2col_conv)
        forms[True].update(phase=_phase_tconv)
    peak = matmul_peak()
    total_flops, total_time, best_time, rates = 0.0, 0.0, 0.0, []
    for L in layers:
        gen = tf.random.Generator.from_seed(0)
        x = gen.normal([L["batch"], L["h"], L["h"], L["cin"]])
        shape = [4, 4, L["cout"], L["cin"]] if L["transposed"] else [4, 4, L["cin"], L["cout"]]
        w = gen.normal(shape) * 0.05
        cells, ref, fastest = [], None, float("inf")
        for name, form in forms[L["transposed"]].items():
            peak = max(peak, matmul_peak(0.3))        # interleaved: the VM's speed drifts
            t, grads = timed(form, x, w, args.seconds)
            if ref is None:
                ref, native = grads, t
            else:
                err = max(float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-12))
                          for a, b in zip(ref, grads))
                if err > 1e-4:
                    raise SystemExit(f"{name} form of {L['name']} disagrees (rel. error {err:.1e})")
            fastest = min(fastest, t)
            cells.append(f"{name} {t * 1e3:6.1f} ms {L['flops'] / t / 1e9:4.0f} GF/s")
        total_flops += L["flops"] * L["calls"]
        total_time += native * L["calls"]
        best_time += fastest * L["calls"]
        kind = "tconv" if L["transposed"] else "conv "
        rates.append(L["flops"] / native / 1e9)
        print(f"{kind} {L['name']:34s} {L['h']:3d}px {L['cin']:4d}->{L['cout']:<4d} x{L['batch']:<4d} "
              + " | ".join(cells), flush=True)
    rate = total_flops / total_time / 1e9
    print(f"peak over the run: {peak:.0f} GFLOP/s; single layers (native) "
          f"{100 * min(rates) / peak:.0f}-{100 * max(rates) / peak:.0f}% of it")
    print(f"all convolutions of one step, native kernels back to back: {rate:.0f} GFLOP/s = "
          f"{100 * rate / peak:.1f}% of peak")
    if args.forms:
        best = total_flops / best_time / 1e9
        print(f"the same with the fastest form of each layer: {best:.0f} GFLOP/s = "
              f"{100 * best / peak:.1f}% of peak")


if __name__ == "__main__":
    main()
