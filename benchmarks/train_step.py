"""Speed of the default training step against this machine's fp32 matmul peak.

    .venv/bin/python benchmarks/train_step.py [--batch-size 64] [--steps 10] [--preset seed]

Prints images/s of the real step (the trainer's tf.function, fed by its tf.data pipeline
over a demo dataset), the same step fed from a constant batch (so the input pipeline's
cost shows), the achieved GFLOP/s from an analytic FLOP count, and the ratio to the fp32
matmul peak measured in the same run (target: >= 60%).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def matmul_peak(seconds: float = 3.0) -> float:
    """Best fp32 GFLOP/s of chained square matmuls (the ceiling a conv net can approach).

    Each product feeds the next, so the graph optimiser cannot merge repeated identical
    matmuls into one (which would overstate the peak several times).
    """
    import tensorflow as tf
    best = 0.0
    for n in (1024, 2048, 3072):
        a = tf.random.normal([n, n])
        b = tf.random.normal([n, n]) / float(n) ** 0.5
        reps = 4

        @tf.function
        def mm(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
            out = a
            for _ in range(reps):
                out = tf.matmul(out, b)
            return tf.reduce_sum(out)

        mm(a, b).numpy()
        t_end = time.perf_counter() + seconds / 3
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            mm(a, b).numpy()
            best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def layer_flops(model) -> float:  # noqa: ANN001 - a keras.Model
    """Forward FLOPs per image (2 x multiply-accumulates) of convs, transposed convs, dense."""
    total = 0.0
    for layer in model.layers:
        kind = layer.__class__.__name__
        if kind in ("Conv2D", "SpectralConv2D"):
            k = layer.kernel.shape
            h, w = layer.output.shape[1:3]
            total += 2 * h * w * k[0] * k[1] * k[2] * k[3]
        elif kind == "Conv2DTranspose":
            k = layer.kernel.shape                         # [kh, kw, out, in]
            h, w = layer.input.shape[1:3]
            total += 2 * h * w * k[0] * k[1] * k[2] * k[3]
        elif kind == "Dense":
            k = layer.kernel.shape
            total += 2 * k[0] * k[1]
    return total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--preset", default="seed")
    p.add_argument("--loss", default="vaegan")
    args = p.parse_args()

    import tensorflow as tf

    from core.datasets.catalog import build_folder
    from trainer.cluster import Cluster
    from trainer.jobdir import JobDir
    from trainer.loop import Trainer
    from trainer.manifest import read_manifest
    from trainer.presets import resolve

    cfg = resolve(args.preset, {"batch_size": args.batch_size, "loss": args.loss})
    tmp = Path(tempfile.mkdtemp(prefix="genml-bench-"))
    data_dir = build_folder(tmp / "data", count=512, image_size=cfg.image_size, workers=1)
    manifest = read_manifest(str(data_dir))
    dirs = {k: str(tmp / "job" / k) for k in ("checkpoints", "logs", "model")}
    trainer = Trainer(cfg, manifest, str(data_dir), dirs, Cluster(1, "chief", 0),
                      JobDir(str(tmp / "job")))

    m = trainer.model
    fe, fg, fd = layer_flops(m.encoder), layer_flops(m.decoder), layer_flops(m.discriminator)
    # Forward: E once, G on the posterior and the prior sample, D on real+recon+prior.
    # Backward ~ 2 x forward (input and weight gradients): the usual 3x rule.
    g_runs, d_runs = (1, 2) if cfg.loss == "seed" else (2, 3)
    per_image = 3 * (fe + g_runs * fg + d_runs * fd)
    step_flops = per_image * cfg.batch_size

    def timed(fn, steps: int) -> float:  # noqa: ANN001
        fn().get("loss_d").numpy()                 # trace + warm up
        fn().get("loss_d").numpy()
        best = float("inf")
        for _ in range(steps):
            t = time.perf_counter()
            fn()["loss_d"].numpy()
            best = min(best, time.perf_counter() - t)
        return best

    it = iter(trainer._dataset(0))
    t_pipe = timed(lambda: trainer._train_fn(it), args.steps)
    batch = next(it)
    const = iter(tf.data.Dataset.from_tensors(batch).repeat())
    t_const = timed(lambda: trainer._train_fn(const), args.steps)
    peak = matmul_peak()

    def row(name: str, t: float) -> str:
        gflops = step_flops / t / 1e9
        return (f"{name:<28} {t * 1e3:8.1f} ms/step {cfg.batch_size / t:8.1f} img/s "
                f"{gflops:8.1f} GFLOP/s {100 * gflops / peak:5.1f}% of peak")

    print(f"preset {cfg.preset}, loss {cfg.loss}, batch {cfg.batch_size}, image {cfg.image_size}, "
          f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs")
    print(f"forward MFLOP/image: E {fe / 1e6:.1f}  G {fg / 1e6:.1f}  D {fd / 1e6:.1f}; "
          f"step {step_flops / 1e9:.1f} GFLOP ({per_image / 1e9:.2f} per image)")
    print(f"fp32 matmul peak (same run)  {peak:8.1f} GFLOP/s")
    print(row("step, tf.data pipeline", t_pipe))
    print(row("step, constant batch", t_const))
    print(f"pipeline / constant: {t_const / t_pipe:.2f} (1.00 = the input pipeline costs nothing)")


if __name__ == "__main__":
    main()
