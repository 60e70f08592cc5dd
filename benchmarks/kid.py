"""Kernel Inception Distance (Binkowski et al. 2018) of exported models, where Inception's weights exist.

    .venv/bin/python benchmarks/kid.py JOB_DIR [JOB_DIR ...] [--inception-weights FILE]

KID is the squared maximum mean discrepancy between Inception-v3 pool features of
generated and real images under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
estimated without bias, so unlike FID (and unlike SWD's floor) its expected value for
two sets from one distribution is 0 at any set size; it is reported x1e3 as mean and sd
over random subsets, as the paper's code does.

Its features need ImageNet weights (87 MB) from storage.googleapis.com, which this
project's machines cannot reach, so SWD (trainer/metrics.py, no downloaded weights)
stays the trainer's metric, its best-checkpoint rule and every figure in the docs; KID
is here for a machine that can fetch the weights once. Nothing here downloads: the
weights are read from --inception-weights, or from where Keras caches them.
Each job's export decodes the trainer's own evaluation embeddings and is scored against
the trainer's real set B; the floor row is real set A against B. The images are resized
to 299x299 (bilinear), the network's own input size; about 6 GFLOPs per image.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INPUT_SIZE = 299


def keras_cache() -> Path:
    """Where `keras.applications.InceptionV3(include_top=False)` stores the weights it fetches."""
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return base / "models" / WEIGHTS_FILE


def weights_path(given: Path | None) -> Path:
    """The weights file to load, or a ValueError that says how to get one."""
    path = given or keras_cache()
    if path.is_file():
        return path
    where = f"{given} does not exist" if given else f"they are not in Keras' cache ({path})"
    raise ValueError(
        f"KID needs Inception-v3's ImageNet weights and {where}. On a machine with internet run "
        f"`python -c \"import keras; keras.applications.InceptionV3(include_top=False)\"`, "
        f"which saves ~/.keras/models/{WEIGHTS_FILE}; copy that file here and pass it with "
        f"--inception-weights FILE (or put it in {keras_cache().parent}). Without it, use SWD "
        f"(benchmarks/swd_levels.py), which needs no downloaded weights.")


def inception(weights: Path) -> Any:
    """Inception-v3 without its classifier, average-pooled: 2,048 features per image."""
    import keras
    return keras.applications.InceptionV3(include_top=False, weights=str(weights), pooling="avg",
                                          input_shape=(INPUT_SIZE, INPUT_SIZE, 3))


def features(model: Any, images: Any, batch: int = 50) -> np.ndarray:
    """Pool features of images in [-1, 1], which is the range Inception-v3's own
    preprocessing maps pixels to; any size, resized to 299x299."""
    import tensorflow as tf
    out = []
    for i in range(0, int(images.shape[0]), batch):
        x = tf.image.resize(tf.convert_to_tensor(images[i:i + batch], tf.float32),
                            [INPUT_SIZE, INPUT_SIZE], method="bilinear")
        out.append(np.asarray(model(x, training=False), np.float64))
    return np.concatenate(out, 0)


def mmd2_unbiased(a: np.ndarray, b: np.ndarray) -> float:
    """The unbiased MMD^2 between two feature sets under the cubic polynomial kernel.

    The within-set means leave out the diagonal (k(x, x)), which is where the plug-in
    estimate's bias comes from; the estimate can therefore be negative.
    """
    d = a.shape[1]
    m, n = a.shape[0], b.shape[0]
    kaa = (a @ a.T / d + 1.0) ** 3
    kbb = (b @ b.T / d + 1.0) ** 3
    kab = (a @ b.T / d + 1.0) ** 3
    within_a = (kaa.sum() - np.trace(kaa)) / (m * (m - 1))
    within_b = (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
    return float(within_a + within_b - 2.0 * kab.mean())


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID x1e3 (mean, sd over `subsets` random subsets of `subset_size` from each set).

    The paper's code takes 100 subsets of 1,000; with fewer images the subsets are the
    smaller set's size, and at least 2 images per set are needed.
    """
    size = min(subset_size, a.shape[0], b.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 images in each set, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    scores = [mmd2_unbiased(a[rng.choice(a.shape[0], size, replace=False)],
                            b[rng.choice(b.shape[0], size, replace=False)])
              for _ in range(subsets)]
    return 1e3 * float(np.mean(scores)), 1e3 * float(np.std(scores, ddof=1) if subsets > 1 else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inception-weights", type=Path, default=None, metavar="FILE",
                    help=f"Inception-v3 ImageNet weights without the top ({WEIGHTS_FILE}); "
                         f"default: Keras' cache")
    ap.add_argument("--data", type=Path, default=None,
                    help="the dataset dir (default: the one the first job trained on)")
    ap.add_argument("--images", type=int, default=0, metavar="N",
                    help="score N images per set (default: the trainer's evaluation size); "
                         "Inception costs about 6 GFLOPs per image")
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--subset-size", type=int, default=1000)
    ap.add_argument("jobs", nargs="+", type=Path, help="job dirs with an exported model/")
    args = ap.parse_args()
    try:
        weights = weights_path(args.inception_weights)
    except ValueError as exc:
        sys.exit(f"error: {exc}")

    from benchmarks.swd_levels import load_export, real_sets, sample

    _, real_a, real_b = real_sets(args.jobs[0], args.data)
    n = min(int(real_b.shape[0]), args.images or int(real_b.shape[0]))
    real_a, real_b = real_a[:n], real_b[:n]
    net = inception(weights)
    fb = features(net, real_b)

    def row(name: str, f: np.ndarray) -> None:
        mean, sd = kid(f, fb, args.subsets, args.subset_size)
        print(f"{name:<36} {mean:8.2f}  sd {sd:.2f}", flush=True)

    print(f"n = {n} vs {n} real; KID x1e3 over {args.subsets} subsets of "
          f"{min(args.subset_size, n)}")
    row("floor (real A vs real B)", features(net, real_a))
    for job in args.jobs:
        cfg, decode, step = load_export(job)
        row(f"{job.name} (step {step})", features(net, sample(decode, n, cfg)))


if __name__ == "__main__":
    main()
