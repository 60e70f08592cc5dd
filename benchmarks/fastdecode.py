"""Exported decoder vs. the Keras decoder it replaces: same weights, interleaved timings.

    .venv/bin/python benchmarks/fastdecode.py [--preset seed] [--reps 30]

Baseline measured in the same run: the Keras decoder (`decoder(z, training=False)` in a
tf.function), which is what export used before trainer/fastdecode.py. Calls alternate
between the two so load from other work on the machine hits both alike; medians are
reported. Also prints the largest output difference (float and uint8 levels).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    import tensorflow as tf

    from trainer.fastdecode import FastDecoder
    from trainer.model import build_decoder
    from trainer.presets import resolve

    cfg = resolve(args.preset, {})
    decoder = build_decoder(cfg)
    rng = np.random.default_rng(0)
    for v in decoder.weights:   # non-trivial batch-norm statistics, as after training
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, v.shape))
        elif "moving_mean" in v.path or "beta" in v.path:
            v.assign(rng.normal(0.0, 0.1, v.shape))
    spec = [tf.TensorSpec([None, cfg.embedding_size], tf.float32)]
    fns = {"keras": tf.function(lambda z: decoder(z, training=False), input_signature=spec),
           "fast": tf.function(FastDecoder(decoder).__call__, input_signature=spec)}
    z64 = tf.constant(rng.standard_normal((64, cfg.embedding_size)).astype(np.float32))
    z1 = z64[:1]
    a, b = fns["keras"](z64).numpy(), fns["fast"](z64).numpy()
    levels = np.abs(np.round((a + 1) * 127.5) - np.round((b + 1) * 127.5)).max()
    print(f"preset {args.preset} ({cfg.image_size}x{cfg.image_size}, width {cfg.width}); cores: {os.cpu_count()}; "
          f"tf {tf.__version__}; load average {os.getloadavg()[0]:.1f}")
    print(f"max |difference|: {np.abs(a - b).max():.2e} (float), {levels:.0f} uint8 levels")
    times: dict[tuple[str, int], list[float]] = {(k, n): [] for k in fns for n in (1, 64)}
    for f in fns.values():
        f(z1), f(z64)
    for rep in range(args.reps):
        order = list(fns) if rep % 2 else list(fns)[::-1]
        for z, calls in ((z64, 1), (z1, 5)):
            for k in order:
                for _ in range(calls):
                    t = time.perf_counter()
                    fns[k](z).numpy()
                    times[(k, int(z.shape[0]))].append(time.perf_counter() - t)
    med = {key: float(np.median(v)) * 1000 for key, v in times.items()}
    print(f"batch 64: keras {64000 / med[('keras', 64)]:5.0f} images/s   fast {64000 / med[('fast', 64)]:5.0f} "
          f"images/s   {med[('keras', 64)] / med[('fast', 64)]:.2f}x baseline")
    print(f"batch 1:  keras p50 {med[('keras', 1)]:5.2f} ms   fast p50 {med[('fast', 1)]:5.2f} ms   "
          f"{med[('keras', 1)] / med[('fast', 1)]:.2f}x baseline")


if __name__ == "__main__":
    main()
