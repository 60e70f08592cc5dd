"""Image -> embedding: how many refinement steps, at what learning rate, at what cost.

    .venv/bin/python benchmarks/refine.py JOB_DIR [--steps 0,25,50,100,200] [--lr 0.02,0.05,0.1]
    .venv/bin/python benchmarks/refine.py --cost quick,seed

With a trained job dir (one with checkpoints/best, e.g. a benchmarks/quality.py run): loads
its best encoder and EMA decoder, encodes the dataset's held-out images, and prints PSNR /
SSIM of their decodes, and the embeddings' mean norm, for the encoder's mean alone (the
baseline, 0 steps) and for each steps x learning rate through trainer/refine.py, the code
the export's `encode` runs. Writes input / mean / refined decodes of 12 images to
JOB_DIR-refine.png.

With --cost: exports random-weight models of each preset with 0 and 100 steps and times
the exported `encode` signature on one image (what the TUI does when it opens a picture).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sweep(job: Path, steps: list[int], rates: list[float]) -> None:
    import numpy as np
    import tensorflow as tf
    from PIL import Image
    from trainer import data as tdata
    from trainer import metrics
    from trainer.jobdir import image_grid
    from trainer.manifest import read_manifest
    from trainer.model import VaeGan
    from trainer.presets import resolve
    from trainer.refine import refine

    recorded = json.loads((job / "config.json").read_text())
    settings, data_dir = recorded["trainer"], recorded["dataset"]["dir"]
    cfg = resolve(settings["preset"], {k: v for k, v in settings.items() if k != "preset"})
    model = VaeGan(cfg)
    tf.train.Checkpoint(encoder=model.encoder, ema_decoder=model.ema_decoder).restore(
        tf.train.latest_checkpoint(str(job / "checkpoints" / "best"))).expect_partial()
    decoder = model.sampler(0)
    held = tdata.eval_images(data_dir, read_manifest(data_dir), "validation", cfg.image_size, 500)
    mean = model.encoder(held, training=False)[0]

    def decode(z: tf.Tensor) -> tf.Tensor:
        return decoder(z, training=False)

    def report(label: str, z: tf.Tensor, seconds: float) -> None:
        out = decode(z)
        print(f"{label:>22}: PSNR {metrics.psnr(held, out):6.2f} dB  SSIM "
              f"{metrics.ssim(held, out):.3f}  |z| {float(tf.reduce_mean(tf.norm(z, axis=1))):.2f}"
              f"  [{seconds:.1f} s for {held.shape[0]} images]", flush=True)

    print(f"{job}: {held.shape[0]} held-out images at {cfg.image_size} px; random embeddings "
          f"have |z| ~ {np.sqrt(cfg.embedding_size):.2f}")
    report("the encoder's mean", mean, 0.0)
    best = mean
    for lr in rates:
        for n in steps:
            if n == 0:
                continue
            t = time.perf_counter()
            z = tf.function(lambda x, z0, n=n, lr=lr: refine(decode, x, z0, n, lr))(held, mean)
            report(f"{n} steps at {lr:g}", z, time.perf_counter() - t)
            best = z
    pick = np.linspace(0, held.shape[0] - 1, 12).astype(int)
    grid = image_grid(tf.concat([tf.gather(t, pick) for t in (held, decode(mean), decode(best))],
                                0), 12)
    grid = grid.numpy() if hasattr(grid, "numpy") else grid
    pic = job.parent / f"{job.name}-refine.png"
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(pic)
    print(f"input / the mean's decode / the last row's refined decode: {pic}")


def cost(presets: list[str]) -> None:
    import numpy as np
    import tensorflow as tf
    from PIL import Image
    from trainer.export import export
    from trainer.model import build_decoder, build_encoder
    from trainer.presets import resolve

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(
        buf, format="PNG")
    image, key = tf.constant([buf.getvalue()]), tf.constant(["0"])
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            cfg = resolve(preset, {})
            for steps in (0, 100):
                path = f"{tmp}/{preset}-{steps}"
                export(path, build_encoder(cfg), build_decoder(cfg),
                       {"image_size": cfg.image_size, "embedding_size": cfg.embedding_size,
                        "refine_steps": steps})
                encode = tf.saved_model.load(path).signatures["encode"]
                encode(image_bytes=image, key=key)          # the first call traces
                t = time.perf_counter()
                for _ in range(5):
                    encode(image_bytes=image, key=key)
                print(f"{preset} ({cfg.image_size} px, width {cfg.width}), refine_steps {steps}: "
                      f"{(time.perf_counter() - t) / 5 * 1000:.0f} ms per image", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("job", type=Path, nargs="?", help="a trained job dir")
    p.add_argument("--steps", default="0,25,50,100,200")
    p.add_argument("--lr", default="0.1")
    p.add_argument("--cost", default="", metavar="PRESETS",
                   help="time the exported encode for these presets instead")
    args = p.parse_args()
    if args.cost:
        cost(args.cost.split(","))
    elif args.job:
        sweep(args.job, [int(s) for s in args.steps.split(",")],
              [float(r) for r in args.lr.split(",")])
    else:
        p.error("give a job dir, or --cost PRESETS")


if __name__ == "__main__":
    main()
