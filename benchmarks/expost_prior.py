"""Where random embeddings should come from: N(0, I) against densities fitted to the encoder.

    .venv/bin/python benchmarks/expost_prior.py JOB_DIR [JOB_DIR ...] [--data DATASET_DIR]

The issue's candidate "a second-stage prior fitted to the encoder's posterior means" (the
two-stage VAE; RAE's ex-post density) would sample embeddings where real images land
instead of from N(0, I). This scores, for each job's exported model, the same decoder fed
embeddings from:

- N(0, I), the trainer's own evaluation draw (what `generate` uses), and N(0, I) scaled
  by 0.8 and 0.6 (the truncation trick: fewer odd samples, less variety);
- a full-covariance Gaussian, and Gaussian mixtures of 10 and 40 full-covariance
  components, fitted by EM to the encoder's means of real half A;
- the aggregate posterior of half A (a mean plus its own noise): near-copies of those
  images through the encoder, a reference rather than a generator.

Each row is scored against real half B (disjoint from A, so a density that memorised A
gains nothing): the SWD the trainer reports, and precision / recall (Kynkaenniemi et al.
2019, k = 5) on the 8x8 average-pooled images, i.e. colour layout: precision is the share
of samples inside the real images' k-NN balls (off-manifold fragments lower it), recall
the share of real images inside the samples' balls (missing kinds of picture lower it).
The floor row is half A against half B. About a minute per job on 2 cores.

Which kinds of picture are too rare or too common: the real layouts of half A are cut
into 40 k-means bins, and for half B and for N(0, I)'s decodes the script counts the bins
whose share differs from A's at p < 0.05 (a two-proportion z-test: Richardson and Weiss
2018's "number of statistically different bins"). `--bins PNG` also draws, for the six
rarest and the four commonest bins of the last job, twelve real images beside twelve
samples of that bin.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

K_NN = 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="the dataset dir (default: the one the first job trained on)")
    ap.add_argument("--bins", type=Path, default=None, metavar="PNG",
                    help="draw the rarest and commonest bins of the last job's samples here")
    ap.add_argument("jobs", nargs="+", type=Path, help="job dirs with an exported model/")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from benchmarks.swd_levels import decode_all
    from trainer import metrics
    from trainer.loop import eval_sets
    from trainer.manifest import read_manifest

    recorded = json.loads((args.jobs[0] / "config.json").read_text())
    first = recorded["trainer"]
    data = str(args.data or recorded["dataset"]["dir"])
    keras.utils.set_random_seed(first["seed"])     # as the trainer does: the sets' draw depends on it
    _, real_a, real_b = eval_sets(data, read_manifest(data), first["image_size"], first["eval_images"])
    n = int(real_b.shape[0])
    kw = dict(patches=first["swd_patches"], projections=first["swd_projections"], seed=first["seed"])
    layout_b = layout(real_b)
    radii_b = knn_radii(layout_b)
    layout_a = layout(real_a)
    centres = kmeans(layout_a, 40, np.random.default_rng(0))
    share_a = bin_shares(layout_a, centres)

    def row(name: str, images: Any) -> None:
        x = layout(images)
        prec, rec = precision_recall(x, layout_b, radii_b)
        print(f"{name:<40} {metrics.swd(images, real_b, **kw):8.1f} {prec:10.3f} {rec:8.3f}", flush=True)

    print(f"n = {n} against {n} real (half B), {first['image_size']}x{first['image_size']}; "
          f"SWD x1e3; precision / recall k = {K_NN} on 8x8 colour layouts")
    print(f"{'':<40} {'swd':>8} {'precision':>10} {'recall':>8}")
    row("floor (real A)", real_a)
    print(f"{'bins (of 40) too rare / too common:':<40} real B {ndb(layout_b, share_a, centres)}")
    rng = np.random.default_rng(first["seed"])
    for job in args.jobs:
        cfg = json.loads((job / "config.json").read_text())["trainer"]
        model = tf.saved_model.load(str(job / "model"))
        dec, enc = model.signatures["decode_raw"], model.signatures["encode_raw"]
        step = json.loads((job / "model" / "genml.json").read_text()).get("step", "?")

        def decode(z: Any) -> Any:
            return decode_all(dec, z)

        u8 = tf.cast(tf.clip_by_value((real_a + 1.0) * 127.5 + 0.5, 0, 255), tf.uint8)
        outs = [enc(images=u8[i:i + 256]) for i in range(0, int(u8.shape[0]), 256)]
        mu = np.concatenate([o["mean"].numpy() for o in outs]).astype(np.float64)
        sd = np.exp(0.5 * np.concatenate([o["logvar"].numpy() for o in outs])).astype(np.float64)
        d = mu.shape[1]
        print(f"{job.name} (step {step}): encoder means of half A: mean norm "
              f"{np.linalg.norm(mu, axis=1).mean():.2f} (N(0, I): {np.sqrt(d):.2f}), sd per "
              f"dimension {mu.std(0).mean():.2f}, posterior sd {sd.mean():.2f}")
        z0 = tf.random.stateless_normal([n, d], seed=[cfg["seed"], 99]).numpy()   # the trainer's draw
        samples = decode(z0)
        row("  N(0, I) x 1.0", samples)
        for scale in (0.8, 0.6):
            row(f"  N(0, I) x {scale}", decode(z0 * scale))
        print(f"{'  bins too rare / too common:':<40} N(0, I) {ndb(layout(samples), share_a, centres)}")
        if args.bins:
            draw_bins(args.bins, real_a, layout_a, samples, centres, share_a)
        row("  Gaussian fitted to the means", decode(rng.multivariate_normal(mu.mean(0), np.cov(mu.T), n)))
        for k in (10, 40):
            row(f"  mixture of {k} fitted to the means", decode(mixture_sample(fit_mixture(mu, k, rng), n, rng)))
        pick = rng.choice(len(mu), n)
        row("  aggregate posterior (near-copies of A)", decode(mu[pick] + sd[pick] * rng.standard_normal((n, d))))


def layout(images: Any) -> np.ndarray:
    """Images in [-1, 1] -> their 8x8 colour layouts, flattened (float64)."""
    import tensorflow as tf
    size = int(images.shape[1])
    small = tf.nn.avg_pool2d(tf.convert_to_tensor(images), size // 8, size // 8, "VALID")
    return np.asarray(small, np.float64).reshape(int(small.shape[0]), -1)


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(iters):
        label = squared_distances(x, centres).argmin(1)
        centres = np.stack([x[label == j].mean(0) if (label == j).any() else centres[j] for j in range(k)])
    return centres


def bin_shares(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    shares: np.ndarray = np.bincount(squared_distances(x, centres).argmin(1), minlength=len(centres)) / len(x)
    return shares


def ndb(x: np.ndarray, share_a: np.ndarray, centres: np.ndarray) -> str:
    """How many bins x fills too rarely / too often against half A's shares (p < 0.05)."""
    share, n = bin_shares(x, centres), len(x)
    pooled = (share + share_a) / 2          # both sets hold n images
    z = (share - share_a) / (np.sqrt(pooled * (1 - pooled) * 2 / n) + 1e-12)
    return f"{int((z < -1.96).sum())} / {int((z > 1.96).sum())}"


def draw_bins(path: Path, real: Any, layout_real: np.ndarray, fake: Any, centres: np.ndarray,
              share_a: np.ndarray) -> None:
    from PIL import Image
    layout_fake = layout(fake)
    real, fake = np.asarray(real), np.asarray(fake)
    label_r = squared_distances(layout_real, centres).argmin(1)
    label_f = squared_distances(layout_fake, centres).argmin(1)
    order = np.argsort(bin_shares(layout_fake, centres) - share_a)
    blank = np.ones_like(real[0])

    def strip(images: np.ndarray) -> np.ndarray:
        cells = list(images[:12]) + [blank] * (12 - min(12, len(images)))
        return np.concatenate(cells, 1)

    gap = np.ones((real.shape[1], real.shape[2] // 2, 3), real.dtype)
    rows = [np.concatenate([strip(real[label_r == j]), gap, strip(fake[label_f == j])], 1)
            for j in list(order[:6]) + list(order[-4:])]
    grid = ((np.concatenate(rows, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST).save(path)
    print(f"bins drawn to {path}: rows are the six rarest, then the four commonest bins of the "
          f"samples; real images left, samples right")


def knn_radii(x: np.ndarray) -> np.ndarray:
    """Squared distance of each point to its K_NN-th nearest other point."""
    d = squared_distances(x, x)
    d.sort(axis=1)
    return d[:, K_NN]          # column 0 is the point itself


def precision_recall(fake: np.ndarray, real: np.ndarray, real_radii: np.ndarray) -> tuple[float, float]:
    d = squared_distances(fake, real)
    precision = float((d <= real_radii[None, :]).any(axis=1).mean())
    recall = float((d.T <= knn_radii(fake)[None, :]).any(axis=1).mean())
    return precision, recall


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d: np.ndarray = np.maximum(0.0, (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T)
    return d


def fit_mixture(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100, reg: float = 1e-3
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Gaussian mixture of k full-covariance components by EM (weights, means, covariances)."""
    n, d = x.shape
    means = x[rng.choice(n, k, replace=False)]
    covs = np.stack([np.cov(x.T) + reg * np.eye(d)] * k)
    weights = np.full(k, 1.0 / k)
    for _ in range(iters):
        ll = np.stack([np.log(weights[j]) + log_normal(x, means[j], covs[j]) for j in range(k)], 1)
        r = np.exp(ll - ll.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0) + 1e-9
        weights, means = nk / n, (r.T @ x) / nk[:, None]
        covs = np.stack([((r[:, j, None] * (x - means[j])).T @ (x - means[j])) / nk[j] + reg * np.eye(d)
                         for j in range(k)])
    return weights, means, covs


def log_normal(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    chol = np.linalg.cholesky(cov)
    y = np.linalg.solve(chol, (x - mean).T)
    ll: np.ndarray = -0.5 * (y ** 2).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * len(mean) * np.log(2 * np.pi)
    return ll


def mixture_sample(mixture: tuple[np.ndarray, np.ndarray, np.ndarray], n: int,
                   rng: np.random.Generator) -> np.ndarray:
    weights, means, covs = mixture
    picks = rng.choice(len(weights), n, p=weights)
    z: np.ndarray = np.stack([rng.multivariate_normal(means[j], covs[j]) for j in picks])
    return z


if __name__ == "__main__":
    main()
