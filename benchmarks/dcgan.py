"""The textbook DCGAN (Radford et al. 2016), the baseline benchmarks/quality.py measures against.

    .venv/bin/python benchmarks/dcgan.py --data-dir DATASET --job-dir DIR --max-minutes 30

The paper's recipe, nothing added: batch norm in both networks (not in D's first layer
nor G's last), ReLU in G and LeakyReLU(0.2) in D, 4x4 stride-2 convolutions, N(0, 0.02)
weights, Adam 2e-4 with beta1 0.5, batch 64, the non-saturating loss, a 100-d noise
(normal rather than the paper's uniform, as most reimplementations). No encoder, no EMA,
no augmentation. It reads the same dataset pipeline, runs on the same clock (--clock cpu
for CPU time / cores) and is evaluated by the trainer's own SWD code on the same real
sets at the same minutes, with the trainer's draws (the embeddings', patches' and
projections' seeds follow --seed; --eval-draws K scores the mean of K draws, as the
trainer's flag does; before 2026-12-07 the patches and projections came from seed 0),
and writes the same metrics.jsonl rows and sample grids, so quality.py can put it beside
the trainer's runs.

It checkpoints at every evaluation (job-dir/checkpoints, the newest only) and resumes from
there with its clock where it stopped, so a finished run given a larger --max-minutes
goes on, as the trainer's runs do: a 30-minute comparison can be taken to 60 later. Its
data order and noise start over on a resume (the trainer's are keyed by the step), so a
resumed run is not bit-for-bit an uninterrupted one; for a baseline that is enough.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(image_size: int, z_dim: int, width: int) -> tuple[Any, Any]:
    import keras
    from trainer.presets import levels

    init = keras.initializers.RandomNormal(stddev=0.02)
    n = levels(image_size)
    top = width * 2 ** (n - 1)
    z = zi = keras.Input((z_dim,))
    x = keras.layers.Dense(4 * 4 * top, use_bias=False, kernel_initializer=init)(z)
    x = keras.layers.Reshape((4, 4, top))(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for i in reversed(range(n - 1)):
        x = keras.layers.Conv2DTranspose(width * 2 ** i, 4, 2, "same", use_bias=False,
                                         kernel_initializer=init)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2DTranspose(3, 4, 2, "same", activation="tanh", kernel_initializer=init)(x)
    g = keras.Model(zi, x)
    x = xi = keras.Input((image_size, image_size, 3))
    for i in range(n):
        x = keras.layers.Conv2D(width * 2 ** i, 4, 2, "same", use_bias=i == 0,
                                kernel_initializer=init)(x)
        if i:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Dense(1, kernel_initializer=init)(keras.layers.Flatten()(x))
    return g, keras.Model(xi, x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--job-dir", required=True)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--z", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-minutes", type=float, default=10.0)
    p.add_argument("--eval-minutes", type=float, default=5.0)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-draws", type=int, default=1,
                   help="SWD draws per evaluation, scored as their mean (the trainer's flag)")
    args = p.parse_args()
    if args.eval_draws < 1:
        p.error(f"--eval-draws {args.eval_draws} must be at least 1")

    import keras
    import numpy as np
    import tensorflow as tf
    from trainer import data, metrics
    from trainer.jobdir import image_grid, png
    from trainer.loop import decode_prior, eval_sets
    from trainer.manifest import read_manifest

    keras.utils.set_random_seed(args.seed)
    job = Path(args.job_dir)
    (job / "samples").mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(args.data_dir)
    ds = data.train_dataset(args.data_dir, manifest, args.image_size, args.batch_size, args.seed,
                            2048, 2048)
    g, d = build(args.image_size, args.z, args.width)
    opt_g = keras.optimizers.Adam(2e-4, beta_1=0.5)
    opt_d = keras.optimizers.Adam(2e-4, beta_1=0.5)
    opt_g.build(g.trainable_variables)
    opt_d.build(d.trainable_variables)
    done = tf.Variable(0, dtype=tf.int64)             # steps taken
    trained_s = tf.Variable(0.0, dtype=tf.float64)    # seconds on the run's clock
    ckpt = tf.train.Checkpoint(g=g, d=d, opt_g=opt_g, opt_d=opt_d, step=done, trained=trained_s)
    manager = tf.train.CheckpointManager(ckpt, str(job / "checkpoints"), max_to_keep=1)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(f"resumed from {manager.latest_checkpoint}: step {int(done.numpy())}, "
              f"{float(trained_s.numpy()) / 60:.1f} min", flush=True)

    @tf.function
    def step(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z = tf.random.normal([tf.shape(x)[0], args.z])
        with tf.GradientTape(persistent=True) as tape:
            fake = g(z, training=True)
            lr, lf = d(x, training=True), d(fake, training=True)
            loss_d = tf.reduce_mean(tf.nn.softplus(-lr)) + tf.reduce_mean(tf.nn.softplus(lf))
            loss_g = tf.reduce_mean(tf.nn.softplus(-lf))
        opt_d.apply_gradients(zip(tape.gradient(loss_d, d.trainable_variables), d.trainable_variables))
        opt_g.apply_gradients(zip(tape.gradient(loss_g, g.trainable_variables), g.trainable_variables))
        return loss_d, loss_g

    def clock() -> float:
        if args.clock == "cpu":
            return time.process_time() / max(1, len(os.sched_getaffinity(0)))
        return time.perf_counter()

    _, real_a, real_b = eval_sets(args.data_dir, manifest, args.image_size, args.eval_images)
    n = int(real_b.shape[0])
    # The trainer's draws: the same embeddings' seeds, and its patches and projections (from
    # --seed), so a trainer run and this one at the same seed are scored pairwise per draw.
    floor = float(np.mean(metrics.swd_draws(lambda d: real_a, real_b, args.eval_draws, args.seed)))
    z_eval = [tf.random.stateless_normal([n, args.z], seed=[args.seed, 99 + d])
              for d in range(args.eval_draws)]
    metrics_file = open(job / "metrics.jsonl", "a", encoding="utf-8")

    evaluated = [int(done.numpy()) if manager.latest_checkpoint else -1]

    def evaluate(s: int, trained: float) -> None:
        evaluated[0] = s
        # One draw decoded at a time, in the trainer's chunks: memory stays one draw's.
        swds = metrics.swd_draws(lambda d: decode_prior(g, z_eval[d]), real_b, args.eval_draws, args.seed)
        score = float(np.mean(swds))
        row = {"kind": "eval", "step": s, "train_minutes": trained / 60, "swd": score,
               "swd_floor": floor, "images": n, "wall_time": time.time()}
        if args.eval_draws > 1:
            row["swd_draws"] = swds
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        grid = g(z_eval[0][:64], training=False)       # draw 0's first 64, as before
        (job / "samples" / f"step-{s:08d}.png").write_bytes(png(image_grid(grid, 8)))
        print(f"eval step {s}: {trained / 60:.1f} min swd={score:.1f} (floor {floor:.1f})", flush=True)
        done.assign(s)
        trained_s.assign(trained)
        manager.save(checkpoint_number=s)

    it = iter(ds)
    trained, s, every = float(trained_s.numpy()), int(done.numpy()), args.eval_minutes * 60
    next_eval = (int(trained // every) + 1) * every
    step(next(it))                       # trace outside the clock
    while trained < args.max_minutes * 60:
        c0 = clock()
        loss_d, loss_g = step(next(it))
        trained += clock() - c0
        s += 1
        if s % 100 == 0:
            print(f"step {s} {trained / 60:.2f} min loss_d={float(loss_d):.3f} "
                  f"loss_g={float(loss_g):.3f}", flush=True)
            if not np.isfinite(float(loss_d)):
                raise SystemExit("loss is not finite")
        if trained >= next_eval:
            evaluate(s, trained)
            next_eval += every
    if evaluated[0] != s:
        evaluate(s, trained)


if __name__ == "__main__":
    main()
