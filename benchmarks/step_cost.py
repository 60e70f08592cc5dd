"""What a trainer flag costs per step: a preset's training step against the same step with overrides.

    .venv/bin/python benchmarks/step_cost.py --variant "attn8=--d-attn 8" --variant "attn16=--d-attn 16"

Each variant is a Trainer of the preset (default `quick`) with the given trainer flags,
fed one constant batch, so only the step itself is timed. The steps run interleaved
(baseline, variant, variant, ..., again) and each keeps its best time, because this
machine's speed drifts within a minute; the baseline is the preset itself, measured in
the same run. Quality benchmarks charge every run its own CPU time, so a flag's cost
shows there as fewer steps per CPU-minute; this says how much of that is the flag.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help='a name and trainer flags, e.g. "attn8=--d-attn 8"; repeatable')
    p.add_argument("--steps", type=int, default=40, help="timed steps per variant")
    args = p.parse_args()

    import tensorflow as tf

    from benchmarks.train_step import bench_trainer
    from core.datasets.catalog import build_folder
    from trainer.manifest import read_manifest
    from trainer.presets import resolve
    from trainer.task import build_parser, flag_overrides

    parser = build_parser()
    variants: dict[str, dict] = {args.preset: {}}
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        variants[name] = flag_overrides(parser.parse_args(["--data-dir", "-", "--job-dir", "-",
                                                           *shlex.split(flags)]))
    tmp = Path(tempfile.mkdtemp(prefix="genml-step-cost-"))
    preset = resolve(args.preset, {})
    data_dir = build_folder(tmp / "data", count=256, image_size=preset.image_size, workers=1)
    manifest = read_manifest(str(data_dir))
    steps = {}
    for name, overrides in variants.items():
        trainer = bench_trainer(resolve(args.preset, overrides), manifest, data_dir, tmp / name)
        batch = next(iter(trainer._dataset(0)))
        const = iter(tf.data.Dataset.from_tensors(batch).repeat())
        for _ in range(3):                                   # trace and warm up
            trainer._train_fn(const)["loss_d"].numpy()
        steps[name] = (trainer, const)
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(args.steps):
        for name, (trainer, const) in steps.items():
            t = time.perf_counter()
            trainer._train_fn(const)["loss_d"].numpy()
            best[name] = min(best[name], time.perf_counter() - t)
    base = best[args.preset]
    print(f"best of {args.steps} steps each, interleaved; batch {preset.batch_size}")
    for name, t in best.items():
        print(f"{name:<16} {1e3 * t:7.1f} ms  {t / base:5.2f}x {args.preset}")


if __name__ == "__main__":
    main()
