"""Quality of the default VAE-GAN against the seed's loss formulation, at equal images seen.

    .venv/bin/python benchmarks/quality.py [--budget SECONDS | --steps N] [--preset quick]

Fetches the emoji set (npm package emoji-datasource-google, 3,786 PNGs at 64x64; alpha
composited on white by the dataset builder) with `npm pack` into a cache dir -- at
benchmark time only, never in tests -- builds a dataset from it, trains the default
model and `--loss seed` for the same number of steps and batch size, and prints SWD
(with its train-vs-held-out floor), PSNR and SSIM of both, plus their sample grids.

--budget splits the wall-clock time between the two runs after a short calibration run;
the seed preset at 64x64 needs hours on 2 CPU cores, `quick` (32x32) minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACKAGE = "emoji-datasource-google@16.0.0"


def fetch_emoji(cache: Path) -> Path:
    """img/google/64/*.png of the npm package, fetched once into `cache`."""
    out = cache / "emoji-datasource-google"
    images = out / "package" / "img" / "google" / "64"
    if images.is_dir() and any(images.iterdir()):
        return images
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=out, check=True,
                   stdout=subprocess.DEVNULL)
    tgz = next(out.glob("emoji-datasource-google-*.tgz"))
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith("package/img/google/64/") and m.isfile()]
        tar.extractall(out, members=members, filter="data")
    tgz.unlink()
    return images


def build_dataset(images: Path, cache: Path, image_size: int) -> Path:
    from core.datasets.catalog import build_folder
    return build_folder(cache / f"emoji-{image_size}", source=images, image_size=image_size,
                        crop="center", name="emoji")


def train(data: Path, job: Path, preset: str, loss: str, steps: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "trainer.task", "--data-dir", str(data), "--job-dir", str(job),
           "--preset", preset, "--loss", loss, "--max-steps", str(steps), "--seed", "1",
           "--eval-every", str(max(1, steps // 4)), "--sample-every", str(max(1, steps // 4)),
           "--checkpoint-every", str(steps), *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{loss} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in (job / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["kind"] == "eval"]
    ips = [r["images_per_sec"] for r in rows if r["kind"] == "train"]
    return {"seconds": time.monotonic() - t, "evals": evals, "ips": sum(ips) / max(1, len(ips)),
            "sample": sorted((job / "samples").glob("step-*.png"))[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", type=float, default=600, help="seconds for both runs together")
    p.add_argument("--steps", type=int, default=None, help="steps per run (overrides --budget)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "genml-bench")
    p.add_argument("--out", type=Path, default=None, help="where the two job dirs go")
    args = p.parse_args()

    from trainer.presets import resolve
    cfg = resolve(args.preset, {"batch_size": args.batch_size})
    extra = ["--batch-size", str(cfg.batch_size)]
    images = fetch_emoji(args.cache)
    n_images = len(list(images.glob("*.png")))
    data = build_dataset(images, args.cache, cfg.image_size)
    manifest = json.loads((data / "manifest.json").read_text())
    out = args.out or Path(args.cache) / f"quality-{int(time.time())}"
    print(f"emoji: {n_images} PNGs -> dataset {data} "
          f"(train {manifest['counts']['train']}, validation {manifest['counts']['validation']})")

    steps = args.steps
    if steps is None:
        cal = train(data, out / "calibration", args.preset, "vaegan", 20, extra)
        # The default step is the slower one (it also decodes prior samples): size by it.
        steps = max(20, int(args.budget / 2 * cal["ips"] / cfg.batch_size * 0.85))
        print(f"calibration: {cal['ips']:.1f} img/s -> {steps} steps per run")

    results = {}
    for loss in ("vaegan", "seed"):
        results[loss] = train(data, out / loss, args.preset, loss, steps, extra)

    print(f"\npreset {args.preset}, {steps} steps x batch {cfg.batch_size} = "
          f"{steps * cfg.batch_size} images seen per run")
    print(f"{'loss':<8} {'step':>6} {'SWD':>8} {'floor':>8} {'PSNR':>7} {'SSIM':>6}")
    for loss, r in results.items():
        for e in r["evals"]:
            print(f"{loss:<8} {e['step']:>6} {e['swd']:8.1f} {e['swd_floor']:8.1f} "
                  f"{e['psnr']:7.2f} {e['ssim']:6.3f}")
    last = {k: r["evals"][-1] for k, r in results.items()}
    print(f"\nfinal SWD: default {last['vaegan']['swd']:.1f}, seed formulation "
          f"{last['seed']['swd']:.1f}, floor {last['vaegan']['swd_floor']:.1f}; "
          f"seed/default = {last['seed']['swd'] / last['vaegan']['swd']:.2f} (> 1: default is better)")
    print(f"final PSNR: default {last['vaegan']['psnr']:.2f} dB, seed {last['seed']['psnr']:.2f} dB")
    for loss, r in results.items():
        print(f"{loss} samples: {r['sample']}  ({r['seconds']:.0f} s, {r['ips']:.0f} img/s)")


if __name__ == "__main__":
    main()
