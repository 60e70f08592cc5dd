"""Which scale a model misses: SWD per Laplacian-pyramid level, for exported models.

    .venv/bin/python benchmarks/swd_levels.py JOB_DIR [JOB_DIR ...] [--data DATASET_DIR]

The trainer's `swd` is the mean over the pyramid's levels (at 32x32: the band-pass level at
full size, i.e. detail of a few pixels, and the 16x16 low-pass residual, i.e. layout and
colour). A score stuck above the floor can be either; this prints both for each job's
exported model (decodes of the trainer's own evaluation embeddings), next to:

- the floor: real half A against real half B, as the trainer computes it;
- blurred reals: half A through a 2x down- and up-sampling against half B, i.e. what
  a generator that drew the right pictures without their finest detail would score.

Each row costs one SWD evaluation (about 20 s at n = 1,688 on 2 cores).

`--draws K` then scores each job K more times, each with other embeddings and other random
patches and projections (the floor with other patches and projections), and prints the
spread: how far the trainer's one fixed draw can sit from another draw of the same model,
i.e. what size of change between two evaluations means more than the draw.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="the dataset dir (default: the one the first job trained on)")
    ap.add_argument("--draws", type=int, default=0,
                    help="score each model this many more times, each with other embeddings, "
                         "patches and projections (the floor: other patches and projections), "
                         "and print the spread")
    ap.add_argument("jobs", nargs="+", type=Path, help="job dirs with an exported model/")
    args = ap.parse_args()

    import tensorflow as tf

    from trainer import metrics

    first, real_a, real_b = real_sets(args.jobs[0], args.data)
    size, seed = first["image_size"], first["seed"]
    n = int(real_b.shape[0])
    kw = dict(patches=first["swd_patches"], projections=first["swd_projections"], seed=seed)

    def row(name: str, levels: list[float]) -> None:
        cells = "  ".join(f"{v:8.1f}" for v in levels)
        print(f"{name:<36} {sum(levels) / len(levels):8.1f}  {cells}", flush=True)

    sizes = [size >> k for k in range(len(metrics.laplacian_pyramid(real_a[:1])))]
    names = [f"{s}px band" for s in sizes[:-1]] + [f"{sizes[-1]}px low"]
    print(f"n = {n} generated vs {n} real, {size}x{size}; SWD x1e3")
    print(f"{'':<36} {'mean':>8}  " + "  ".join(f"{h:>8}" for h in names))
    row("floor (real A vs real B)", metrics.swd_levels(real_a, real_b, **kw))
    small = tf.nn.avg_pool2d(real_a, 2, 2, "VALID")
    blurred = tf.image.resize(small, [size, size], method="bilinear")
    row("real A blurred 2x vs real B", metrics.swd_levels(blurred, real_b, **kw))
    for job in args.jobs:
        cfg, decode, step = load_export(job)
        fake = sample(decode, n, cfg)
        row(f"{job.name} (step {step})", metrics.swd_levels(fake, real_b, **kw))
        if args.draws:
            spread(f"{job.name}, {args.draws} other draws",
                   [metrics.swd(sample(decode, n, cfg, k), real_b, **{**kw, "seed": seed + k})
                    for k in range(1, args.draws + 1)])
    if args.draws:
        spread(f"floor, {args.draws} other projections",
               [metrics.swd(real_a, real_b, **{**kw, "seed": seed + k})
                for k in range(1, args.draws + 1)])


def real_sets(job: Path, data: Path | None = None) -> tuple[dict[str, Any], Any, Any]:
    """(the job's trainer config, real set A, real set B) as its trainer drew them, from
    `data` or the dataset it trained on: the sets every export is scored against."""
    import keras

    from trainer.loop import eval_sets
    from trainer.manifest import read_manifest

    recorded: dict[str, Any] = json.loads((job / "config.json").read_text())
    cfg = recorded["trainer"]
    where = str(data or recorded["dataset"]["dir"])
    keras.utils.set_random_seed(cfg["seed"])     # as the trainer does: the sets' draw depends on it
    _, real_a, real_b = eval_sets(where, read_manifest(where), cfg["image_size"], cfg["eval_images"])
    return cfg, real_a, real_b


def load_export(job: Path) -> tuple[dict[str, Any], Any, Any]:
    """(the job's trainer config, its export's `decode_raw`, the step the export is from)."""
    import tensorflow as tf

    cfg = json.loads((job / "config.json").read_text())["trainer"]
    decode = tf.saved_model.load(str(job / "model")).signatures["decode_raw"]
    step = json.loads((job / "model" / "genml.json").read_text()).get("step", "?")
    return cfg, decode, step


def sample(decode: Any, n: int, cfg: dict[str, Any], k: int = 0) -> Any:
    """n decodes of prior embeddings; draw k = 0 is the trainer's own evaluation draw."""
    import tensorflow as tf
    return decode_all(decode, tf.random.stateless_normal([n, cfg["embedding_size"]], seed=[cfg["seed"], 99 + k]))


def decode_all(decode: Any, z: Any) -> Any:
    """An export's `decode_raw` over any number of embeddings, 256 at a time, in [-1, 1]."""
    import tensorflow as tf

    from trainer.data import to_model_range
    z = tf.convert_to_tensor(z, tf.float32)
    return to_model_range(tf.concat([decode(z=z[i:i + 256])["images"] for i in range(0, int(z.shape[0]), 256)], 0))


def spread(name: str, scores: list[float]) -> None:
    import numpy as np
    a = np.asarray(scores)
    print(f"{name:<36} {a.mean():8.1f}  sd {a.std(ddof=1) if len(a) > 1 else 0.0:.2f}, "
          f"range {a.min():.1f}-{a.max():.1f}: " + ", ".join(f"{v:.1f}" for v in a), flush=True)


if __name__ == "__main__":
    main()
