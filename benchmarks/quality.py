"""Sample quality against time: the default recipe, `--loss seed` and a textbook DCGAN.

    .venv/bin/python benchmarks/quality.py [--minutes 10,20,30] [--seeds 1,2] [--dataset emoji]

Fetches the emoji set (npm package emoji-datasource-google, 3,786 PNGs at 64x64; alpha
composited on white by the dataset builder) with `npm pack` into a cache dir -- at
benchmark time only, never in tests -- or builds the demo set (`--dataset demo`), then
trains, for each seed:

- `default`: `python -m trainer.task --preset quick` as a user gets it;
- `seed`: the same with `--loss seed` (the 2017 tool's formulation);
- `dcgan`: benchmarks/dcgan.py, the Radford et al. recipe at its paper's settings;

each for the largest of --minutes, evaluated every --eval-minutes by the same SWD code
on the same real images (2,000 generated vs 2,000 real, or half the real images each
when there are fewer; the floor is real half A vs real half B). `--eval-draws K` scores
each evaluation K times, the same K draws for every run of a seed, and prints each run's
difference to the DCGAN draw by draw, with its standard error.

Fairness on a noisy shared machine: all runs start together, but only one runs at a
time; they take turns of --slice seconds (SIGSTOP/SIGCONT), so a burst of load falls on
all of them alike. Minutes are counted on each run's own clock, `--clock cpu` by default:
the process's CPU time divided by the cores, so a run is charged for the work it got,
not for time it spent stopped or starved; samples and evaluations are not charged.

Run it again on the same --out with a larger --minutes and every run goes on from its
newest checkpoint (the trainer's and the DCGAN's alike), so a comparison can be taken
further in a later sitting; evaluations already made are kept.

Prints SWD against minutes for every run (and, for a run given --ema-probes, the SWD
through each of its EMA copies at the same evaluations), the wall-clock minute and the step each
evaluation came at (and the CPU's name: a minute buys different steps on another CPU),
the ratios to the floor and to the DCGAN at each budget, PSNR/SSIM of held-out
reconstructions through the exported model's `encode` (and through the encoder's mean
alone), and writes into --out, for each seed and budget, the runs' sample grids side by
side, and an input / reconstruction picture for each trainer run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.jobdir import JobDir  # noqa: E402  (after the path: the benchmark runs from a checkout)
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


def build_dataset(name: str, cache: Path, image_size: int, crop: str) -> Path:
    from core.datasets import demo
    from core.datasets.catalog import build_folder
    if name == "demo":
        out = cache / f"{name}-v{demo.VERSION}-{image_size}-{crop}"
        return build_folder(out, count=2000, image_size=image_size, crop=crop, name=name)
    out = cache / f"{name}-{image_size}-{crop}"
    return build_folder(out, source=fetch_emoji(cache), image_size=image_size, crop=crop,
                        name=name)


def command(kind: str, data: Path, job: Path, seed: int, args: argparse.Namespace) -> list[str]:
    common = ["--data-dir", str(data), "--job-dir", str(job), "--seed", str(seed),
              "--max-minutes", str(max(args.minutes)), "--eval-minutes", str(args.eval_minutes),
              "--clock", args.clock, "--eval-images", str(args.eval_images),
              "--eval-draws", str(args.eval_draws)]
    if kind == "dcgan":
        return [sys.executable, str(ROOT / "benchmarks" / "dcgan.py"), *common,
                "--image-size", str(args.image_size)]
    extra = ["--loss", "seed"] if kind == "seed" else args.variants.get(kind, [])
    return [sys.executable, "-m", "trainer.task", *common, "--preset", args.preset,
            "--max-steps", "100000000", "--sample-every", "1000", "--checkpoint-every", "2000",
            *extra, *args.trainer_args]


def take_turns(procs: dict[str, subprocess.Popen], slice_s: float) -> None:
    """Run one process at a time, each for slice_s seconds, until all have exited."""
    for p in procs.values():
        p.send_signal(signal.SIGSTOP)
    while any(p.poll() is None for p in procs.values()):
        for name, p in procs.items():
            if p.poll() is not None:
                continue
            p.send_signal(signal.SIGCONT)
            try:
                p.wait(timeout=slice_s)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGSTOP)


def cpu_model() -> str:
    """The CPU's name: each recipe's step costs differ between CPUs, so figures name theirs."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    flags = next((ln for ln in lines if ln.startswith("flags")), "")
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown")
    return f"{name}, {os.cpu_count()} cores, {'with' if 'avx512f' in flags else 'without'} AVX-512"


def at_minute(rows: list[dict], minute: float) -> dict | None:
    """The evaluation closest to `minute` of training, if one is within half a minute."""
    best = min(rows, key=lambda r: abs(r["train_minutes"] - minute), default=None)
    return best if best and abs(best["train_minutes"] - minute) < 0.5 else None


def print_by_minute(rows: dict[str, list[dict]], marks: list[float],
                    value: Callable[[dict], float], fmt: str = "12.1f") -> None:
    """One line per evaluation minute, one column per run: `value` of its evaluation there."""
    print(f"{'minutes':>8} " + " ".join(f"{n:>12}" for n in rows))
    for m in marks:
        cells = [f"{value(r):{fmt}}" if (r := at_minute(rs, m)) else f"{'':>12}"
                 for rs in rows.values()]
        print(f"{m:8.1f} " + " ".join(cells))


def print_probes(rows: dict[str, list[dict]]) -> None:
    """For a run with --ema-probes: its SWD through each EMA copy at each evaluation, the
    exported one (--ema-decay) first; the same training steps, so only the averaging differs."""
    for name, rs in rows.items():
        decays = sorted({d for r in rs for d in r.get("probe_swd", {})}, key=float)
        if not decays:
            continue
        print(f"\n{name}: SWD x1e3 through each EMA copy (the same run, the same evaluations)")
        print(f"{'minutes':>8} {'step':>8} {'exported':>10} " + " ".join(f"{d:>10}" for d in decays))
        for r in rs:
            cells = [f"{r['probe_swd'][d]:10.1f}" if d in r.get("probe_swd", {}) else f"{'':>10}"
                     for d in decays]
            print(f"{r['train_minutes']:8.1f} {r['step']:8d} {r['swd']:10.1f} " + " ".join(cells))


def print_paired(rows: dict[str, list[dict]], kinds: list[str], seeds: list[int],
                 marks: list[float]) -> None:
    """With --eval-draws: each run minus the DCGAN of its seed, draw by draw, at each budget.

    Runs of one seed share each draw's real patches and projections, so the per-draw
    difference leaves out what the two scores share; its mean and standard error say
    whether a run is below the DCGAN at that budget by more than the draws' noise.
    """
    runs = [k for k in kinds if k != "dcgan"]
    if "dcgan" not in kinds or not runs:
        return
    print("\nrun minus the DCGAN, per draw (mean +- standard error over the draws; "
          "below: draws where the run scores lower)")
    print(f"{'minutes':>8} " + " ".join(f"{f'{k}-s{s}':>24}" for s in seeds for k in runs))
    for m in marks:
        cells = []
        for s in seeds:
            dc = at_minute(rows[f"dcgan-s{s}"], m)
            for k in runs:
                r = at_minute(rows[f"{k}-s{s}"], m)
                if not (r and dc and len(r.get("swd_draws", [])) > 1
                        and len(r["swd_draws"]) == len(dc.get("swd_draws", []))):
                    cells.append(f"{'':>24}")
                    continue
                diff = [a - b for a, b in zip(r["swd_draws"], dc["swd_draws"])]
                mean, se = statistics.mean(diff), statistics.stdev(diff) / len(diff) ** 0.5
                below = sum(x < 0 for x in diff)
                cells.append(f"{f'{mean:+.2f} +- {se:.2f} ({below}/{len(diff)})':>24}")
        print(f"{m:8.1f} " + " ".join(cells))


def side_by_side(jobs: dict[str, JobDir], rows: dict[str, list[dict]], minute: float,
                 dest: Path) -> bool:
    """Each run's sample grid nearest `minute`, side by side under a caption with its SWD.

    A trainer writes a grid every --sample-every steps, the DCGAN one at each evaluation:
    each run shows the grid whose step is nearest its evaluation at `minute`. False when no
    run has one.
    """
    import io

    from PIL import Image, ImageDraw

    panels = []
    for name, jd in jobs.items():
        row = at_minute(rows[name], minute)
        grids = {int(n.removesuffix(".png").split("-")[1]): n for n in jd.sample_names()}
        if row is None or not grids:
            continue
        step = min(grids, key=lambda s: abs(s - row["step"]))
        grid = Image.open(io.BytesIO(jd.read_sample(grids[step]))).convert("RGB")   # 32 px: doubled
        panels.append((f"{name}: SWD {row['swd']:.1f} @ {minute:g} min (step {step})",
                       grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST)))
    if not panels:
        return False
    gap, caption = 16, 18
    width = sum(im.width for _, im in panels) + gap * (len(panels) - 1)
    sheet = Image.new("RGB", (width, caption + max(im.height for _, im in panels)), "white")
    draw, x = ImageDraw.Draw(sheet), 0
    for text, im in panels:
        draw.text((x + 2, 3), text, fill="black")
        sheet.paste(im, (x, caption))
        x += im.width + gap
    sheet.save(dest)
    return True


def reconstruction_picture(model_dir: Path, data: Path, image_size: int, out: Path) -> str:
    """Twelve held-out images (top), decoded from the encoder's mean (middle) and from what
    the export's `encode` gives (bottom); returns PSNR/SSIM of both over all held-out images.

    `encode` takes a picture and centre-crops it as serving does, so each held-out image (a
    crop already) is scaled 3x onto a canvas whose centre crop it fills; the top row and the
    figures use what that crop gives back (the scaling blurs it slightly).
    """
    import io
    import numpy as np
    import tensorflow as tf
    from trainer import data as tdata
    from trainer.jobdir import image_grid
    from trainer.manifest import read_manifest
    from trainer.metrics import psnr, ssim
    from PIL import Image

    held = tdata.eval_images(str(data), read_manifest(str(data)), "validation", image_size, 500)
    model = tf.saved_model.load(str(model_dir))
    pngs, seen = [], []
    for img in tf.cast(tf.round((held + 1.0) * 127.5), tf.uint8).numpy():
        canvas = np.full((4 * image_size, 4 * image_size, 3), 255, np.uint8)
        o = image_size // 2
        canvas[o:o + 3 * image_size, o:o + 3 * image_size] = img.repeat(3, 0).repeat(3, 1)
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="PNG")
        pngs.append(buf.getvalue())
        seen.append(tdata.center_crop_resize(tf.constant(canvas), image_size))
    seen_u8 = tf.cast(tf.round(tf.stack(seen)), tf.uint8)
    x = tf.cast(seen_u8, tf.float32) / 127.5 - 1.0

    def decode(z: tf.Tensor) -> tf.Tensor:
        return tf.cast(model.signatures["decode_raw"](z=z)["images"], tf.float32) / 127.5 - 1.0

    mean = decode(model.signatures["encode_raw"](images=seen_u8)["mean"])
    refined = decode(tf.concat([model.signatures["encode"](
        image_bytes=tf.constant(pngs[i:i + 256]), key=tf.constant([""] * len(pngs[i:i + 256])))[
        "embeddings"] for i in range(0, len(pngs), 256)], 0))
    pick = np.linspace(0, len(pngs) - 1, 12).astype(int)
    grid = image_grid(tf.concat([tf.gather(t, pick) for t in (x, mean, refined)], 0), 12)
    grid = grid.numpy() if hasattr(grid, "numpy") else grid
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(out)
    return (f"encode: PSNR {psnr(x, refined):.2f} dB, SSIM {ssim(x, refined):.3f}; the encoder's "
            f"mean alone: {psnr(x, mean):.2f} dB, {ssim(x, mean):.3f} ({len(pngs)} held-out images)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", default="10,20,30",
                   help="budgets to report, comma-separated; each run trains for the largest")
    p.add_argument("--eval-minutes", type=float, default=5.0)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--eval-draws", type=int, default=1, metavar="K",
                   help="score every evaluation K times (other embeddings, patches and "
                        "projections each, the same K for every run of a seed) and print each "
                        "run's difference to the DCGAN per draw: settles budgets where one "
                        "draw's spread (0.8-1.6) is larger than the gap")
    p.add_argument("--seeds", default="1", help="comma-separated seeds, each a set of runs")
    p.add_argument("--runs", default="default,seed,dcgan")
    p.add_argument("--dataset", choices=["emoji", "demo"], default="emoji")
    p.add_argument("--crop", choices=["center", "random"], default="center",
                   help="the dataset's crop mode for training (evaluation always centre-crops)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--slice", type=float, default=60.0, help="seconds per turn")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "genml-bench")
    p.add_argument("--out", type=Path, default=None, help="where the job dirs go")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help='another trainer run: e.g. wide="--width 64 --batch-size 64" '
                        '(add NAME to --runs)')
    p.add_argument("--report-only", action="store_true",
                   help="print the tables for the runs already in --out (e.g. after stopping early)")
    p.add_argument("trainer_args", nargs="*", help="after --: extra flags for the trainer runs")
    args = p.parse_args()
    if args.eval_draws < 1:
        p.error(f"--eval-draws {args.eval_draws} must be at least 1")
    args.minutes = [float(m) for m in args.minutes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    kinds = args.runs.split(",")
    args.variants = {v.split("=", 1)[0]: v.split("=", 1)[1].split() for v in args.variant}

    data = build_dataset(args.dataset, args.cache, args.image_size, args.crop)
    manifest = json.loads((data / "manifest.json").read_text())
    out = args.out or args.cache / f"quality-{int(time.time())}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.dataset}: dataset {data} (train {manifest['counts']['train']}, validation "
          f"{manifest['counts']['validation']}, crop {args.crop}); runs in {out}", flush=True)

    names = [f"{kind}-s{seed}" for seed in seeds for kind in kinds]
    t0 = time.monotonic()
    if not args.report_only:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
        procs = {}
        for seed in seeds:
            for kind in kinds:
                with open(out / f"{kind}-s{seed}.log", "w") as log:     # the child keeps its copy
                    procs[f"{kind}-s{seed}"] = subprocess.Popen(
                        command(kind, data, out / f"{kind}-s{seed}", seed, args), cwd=ROOT, env=env,
                        stdout=log, stderr=subprocess.STDOUT)
        try:
            take_turns(procs, args.slice)
        finally:
            for pr in procs.values():
                if pr.poll() is None:
                    pr.send_signal(signal.SIGCONT)
                    pr.terminate()
        failed = [n for n, pr in procs.items() if pr.returncode != 0]
        if failed:
            print(f"failed runs (see their .log in {out}): {', '.join(failed)}")
    wall = time.monotonic() - t0

    jobs = {name: JobDir(str(out / name)) for name in names}
    runs = {name: jd.metrics() for name, jd in jobs.items()}
    rows = {name: m.eval for name, m in runs.items()}
    floor = next((r[0]["swd_floor"] for r in rows.values() if r), float("nan"))
    print(f"\nSWD x1e3 ({args.clock} clock, minutes of training; floor {floor:.1f} = real vs real)")
    marks = sorted({round(r['train_minutes'], 1) for rs in rows.values() for r in rs})
    print_by_minute(rows, marks, lambda r: r["swd"])
    print_probes(rows)
    print_paired(rows, kinds, seeds, marks)

    # A run's first row: the trainer's first train row, the DCGAN's first evaluation (it
    # writes no train rows); the earliest run sets the start.
    starts = [(m.train or m.eval)[0]["wall_time"] for m in runs.values() if m.train or m.eval]
    if starts:
        t_first = min(starts)
        print(f"\nwall minutes since the first run's first row, at the same evaluations (the runs "
              f"take turns, so each had at most 1/{len(names)} of the machine; a later sitting "
              f"adds the gap since the last)")
        print_by_minute(rows, marks, lambda r: (r["wall_time"] - t_first) / 60)
    print(f"\nsteps at the same evaluations (the same minutes buy different steps on another CPU; "
          f"this one: {cpu_model()})")
    print_by_minute(rows, marks, lambda r: r["step"], "12d")

    print(f"\nat each budget, mean over seeds {seeds}:")
    print(f"{'minutes':>8} " + " ".join(f"{k:>10}" for k in kinds)
          + f" {'default/floor':>14} {'default/dcgan':>14}")
    for m in args.minutes:
        means = {}
        for k in kinds:
            vals = [r["swd"] for s in seeds if (r := at_minute(rows[f"{k}-s{s}"], m))]
            means[k] = sum(vals) / len(vals) if vals else float("nan")
        line = f"{m:8.1f} " + " ".join(f"{means[k]:10.1f}" for k in kinds)
        if "default" in means:
            line += f" {means['default'] / floor:14.2f}"
            if "dcgan" in means:
                line += f" {means['default'] / means['dcgan']:14.2f}"
        print(line)
    for seed in seeds:
        for m in args.minutes:
            dest = out / f"side-by-side-s{seed}-{m:g}min.png"
            if side_by_side({n: jobs[n] for n in (f"{k}-s{seed}" for k in kinds)}, rows, m, dest):
                print(f"seed {seed}, {m:g} minutes, each run's samples: {dest}")
    for name, rs in rows.items():
        if rs and "psnr" in rs[-1]:
            last = rs[-1]
            print(f"{name}: held-out PSNR {last['psnr']:.2f} dB, SSIM {last['ssim']:.3f}; best SWD "
                  f"{last.get('best_swd', float('nan')):.1f} at step {last.get('best_step')}")
    for name in names:
        model = out / name / "model"
        if (model / "saved_model.pb").exists():
            pic = out / f"{name}-reconstructions.png"
            figures = reconstruction_picture(model, data, args.image_size, pic)
            print(f"{name}: {figures}\n  input / the mean's decode / encode's decode: {pic}")
        samples = sorted((out / name / "samples").glob("step-*.png"))
        if samples:
            print(f"{name}: last samples {samples[-1]}")
    if not args.report_only:
        print(f"\nwall time {wall / 60:.1f} min for {len(names)} runs")


if __name__ == "__main__":
    main()
