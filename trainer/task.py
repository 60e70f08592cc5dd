"""`python -m trainer.task`: train the VAE-GAN on a dataset folder into a job dir.

The command line and the job dir are specified in docs/contracts.md. Exit codes:
0 succeeded, 2 bad input (reason in status.json), 1 other failure, 143 after SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from types import FrameType
from typing import Any, NoReturn, Sequence

from trainer.contract import (CHECKPOINTS, CLOCKS, CONFIG, CROP_FRACTION, DEFAULT_PRESET, EXIT_FAILED,
                              EXIT_INPUT, EXIT_OK, EXIT_TERM, LOSS_SUMMARIES, LOSSES, MBSTD_MIXES, MODEL,
                              PRESETS, TENSORBOARD, train_image_size)
from trainer.errors import is_disk_full
from trainer.sysutil import import_tensorflow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The trainer's command line (the TUI's new-job dialog checks its "more options" with it)."""
    p = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__)
    p.add_argument("--data-dir", required=True, help="dataset folder (local or /gcs/BUCKET/...)")
    p.add_argument("--job-dir", required=True, help="where checkpoints, metrics, samples, model go")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESETS)
    for name, kind in [("max-steps", int), ("batch-size", int), ("seed", int),
                       ("image-size", int), ("embedding-size", int), ("width", int), ("d-width", int),
                       ("d-depth", int), ("g-depth", int), ("g-mapping", int), ("d-scales", int), ("d-attn", int),
                       ("g-attn", int), ("d-dropout", float), ("g-mapping-lr", float), ("g-latent", float),
                       ("eval-every", int), ("sample-every", int), ("checkpoint-every", int),
                       ("keep-checkpoints", int), ("log-every", int), ("eval-images", int),
                       ("lr-e", float), ("lr-g", float), ("lr-d", float), ("gamma", float),
                       ("kl-weight", float), ("feature-weight", float), ("ema-decay", float),
                       ("latent-weight", float), ("recon-fraction", float),
                       ("encoder-every", int)]:
        p.add_argument(f"--{name}", type=kind, default=None)
    p.add_argument("--loss", choices=LOSSES, default=None,
                   help="; ".join(f"{k}: {v}" for k, v in LOSS_SUMMARIES.items()))
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes of training (samples and evaluations excluded)")
    p.add_argument("--eval-minutes", type=float, default=None, metavar="M",
                   help="evaluate every M minutes of training instead of every --eval-every steps")
    p.add_argument("--clock", choices=list(CLOCKS), default=None,
                   help="what the minutes count: wall time, or CPU time / cores (benchmarks)")
    p.add_argument("--patience", type=int, default=None, metavar="K",
                   help="evaluations without a new best SWD before the run is called stalled "
                        "(default: a third of the evaluations in the budget, at least 4)")
    p.add_argument("--stop-when-stalled", action="store_true", default=None,
                   help="end the run once SWD has not improved for --patience evaluations")
    p.add_argument("--augment", default=None, metavar="POLICY",
                   help='DiffAugment for the discriminator: a comma-separated subset of '
                        'color,translation,cutout,scale,rotate ("" = off)')
    p.add_argument("--augment-target", type=float, default=None, metavar="T",
                   help="adapt how often images are augmented (ADA's rule) so that the share "
                        "of real images D calls real stays near T (0.6 is ADA's); 0 = always")
    p.add_argument("--augment-late", default=None, metavar="POLICY",
                   help="with --augment-target: augmentations added once every image is "
                        "augmented (p may rise to 2; each image also gets these with p - 1)")
    p.add_argument("--eval-draws", type=int, default=None, metavar="K",
                   help="score each evaluation's SWD K times, each with other embeddings, patches "
                        "and projections, and keep their mean (a steadier best and stop rule; "
                        "each evaluation costs K times as much)")
    p.add_argument("--ema-probes", default=None, metavar="DECAYS",
                   help="also keep EMA copies of the decoder at these decays (e.g. "
                        "0.9995,0.9999) and report each one's SWD at every evaluation, to "
                        "choose --ema-decay from one run; only --ema-decay's copy is exported")
    p.add_argument("--label-smoothing", type=float, default=None, metavar="X",
                   help="one-sided label smoothing: D's target for real images is 1 - X")
    p.add_argument("--r1", type=float, default=None, metavar="GAMMA",
                   help="R1 penalty on the discriminator's gradient at real images, weight "
                        "GAMMA/2 (0 = off)")
    p.add_argument("--r1-every", type=int, default=None, metavar="N",
                   help="with --r1: the penalty on every Nth step only, at N times its weight "
                        "(StyleGAN2's lazy R1: a step in N pays for the second backward pass)")
    p.add_argument("--r1-last", type=float, default=None, metavar="F",
                   help="with --r1: the penalty over the last F (0-1] of the budget "
                        "(--max-minutes, else --max-steps) only; 1 = from the first step")
    p.add_argument("--apa", type=float, default=None, metavar="T",
                   help="adaptive pseudo augmentation (limited data): while E[sign D(real)] is "
                        "above T, more of D's real images are swapped for the generator's, "
                        "labelled real (0 = off; the paper's T is 0.6)")
    p.add_argument("--apa-late", action="store_true", default=None,
                   help="with --apa, --augment and --augment-target: --apa only once every real "
                        "image is augmented (ADA's p at 1), as a second stage; off until then, "
                        "at no cost")
    p.add_argument("--lecam", type=float, default=None, metavar="W",
                   help="LeCam regulariser (limited data): D's logits held near the moving "
                        "average of the other side's, weight W (0 = off)")
    p.add_argument("--d-recon", type=float, default=None, metavar="W",
                   help="FastGAN's self-supervised discriminator: a small decoder redraws each "
                        "real image from D's last features, its pixel error added to D's loss "
                        "with weight W (0 = off)")
    p.add_argument("--mbstd", type=int, default=None, metavar="N",
                   help="ProGAN's minibatch standard deviation: D's last block also sees how "
                        "its features vary across each group of N images (0 = off)")
    p.add_argument("--mbstd-mix", choices=MBSTD_MIXES, default=None,
                   help="how D mixes the --mbstd channel in: ProGAN's 3x3 convolution before the "
                        "logit (conv, the default) or straight into the logit's dense layer "
                        "(dense: no extra convolution, about the steps of a run without --mbstd)")
    p.add_argument("--mbstd-start", type=int, default=None, metavar="STEP",
                   help="hold the --mbstd channel at zero until STEP, then fade it in over "
                        "STEP/4 steps (0 = from the first step, the default)")
    p.add_argument("--spectral-norm", dest="spectral_norm", action="store_true", default=None,
                   help="spectral norm in the discriminator's convolutions (off by default)")
    p.add_argument("--no-spectral-norm", dest="spectral_norm", action="store_false", default=None)
    p.add_argument("--d-batch-norm", dest="d_batch_norm", action="store_true", default=None,
                   help="batch norm in the discriminator after its first layer (DCGAN's D; "
                        "the default)")
    p.add_argument("--no-d-batch-norm", dest="d_batch_norm", action="store_false", default=None)
    p.add_argument("--lr-decay", type=float, default=None, metavar="F",
                   help="over the last F (0-1) of the budget (--max-minutes, else --max-steps) "
                        "the learning rates fall linearly to 0; 0 = constant")
    p.add_argument("--batch-double", type=float, default=None, metavar="F",
                   help="over the last F (0-1) of the budget (--max-minutes, else --max-steps) "
                        "each step takes twice --batch-size images; 0 = one size throughout")
    p.add_argument("--batch-double-images", type=int, default=None, metavar="N",
                   help="twice --batch-size also from the step at which N images have been seen, "
                        "if that comes first (a fast machine reaches it early); 0 = off")
    p.add_argument("--bcr", type=float, default=None, metavar="W",
                   help="balanced consistency regularisation: D's squared logit change between "
                        "each image and its --augment copy, real and fake, weight W (0 = off)")
    p.add_argument("--g-topk", type=float, default=None, metavar="F",
                   help="top-k training: the generator learns only from the fraction F (0-1] of "
                        "its samples that the discriminator rates most real (1 = all, the default)")
    p.add_argument("--g-topk-last", type=float, default=None, metavar="F",
                   help="--g-topk over the last F (0-1] of the budget (--max-minutes, else "
                        "--max-steps) only; 1 = from the first step")
    p.add_argument("--refine-steps", type=int, default=None, metavar="N",
                   help="the exported image -> embedding: the encoder's mean, then N Adam steps "
                        "that bring its decode closer to the image (default 100; 0 = the mean)")
    return p


_UNSET = "\0genml-unset"


def check_args(argv: Sequence[str]) -> None:
    """Raise ValueError naming the problem if the trainer would refuse these options.

    For the options a person passes through `genml train` (everything but --data-dir and
    --job-dir, which genml sets for each job and which may not be given again: the job
    would train elsewhere and then fail with "wrote no model"). The trainer's own parser
    and config checks, without TensorFlow, so a mistake fails before the job is queued
    instead of at its first checkpoint.
    """
    class Raising(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # argparse's own would exit
            raise ValueError(message)

    parser = build_parser()
    parser.__class__ = Raising
    args = parser.parse_args(["--data-dir", _UNSET, "--job-dir", _UNSET, *argv])
    for flag, value in (("--data-dir", args.data_dir), ("--job-dir", args.job_dir)):
        if value != _UNSET:     # also catches abbreviations argparse accepts (--job, --data)
            raise ValueError(f"{flag} is set by genml for each job and cannot be given")
    from trainer.presets import resolve
    resolve(args.preset, {k: v for k, v in vars(args).items()
                          if k not in ("data_dir", "job_dir", "preset") and v is not None})


def gcs_local(path: str) -> str:
    """Vertex AI mounts buckets at /gcs/: prefer the mount to the gs:// API where it exists."""
    if path.startswith("gs://") and os.path.isdir("/gcs"):
        return "/gcs/" + path[len("gs://"):]
    return path


def resolve_dirs(job_dir: str) -> dict[str, str]:
    """The job dir's sub-dirs, each overridable by Vertex AI's AIP_* variable."""
    env = os.environ
    return {
        "model": gcs_local(env.get("AIP_MODEL_DIR") or os.path.join(job_dir, MODEL)),
        "checkpoints": gcs_local(env.get("AIP_CHECKPOINT_DIR") or os.path.join(job_dir, CHECKPOINTS)),
        "logs": gcs_local(env.get("AIP_TENSORBOARD_LOG_DIR") or os.path.join(job_dir, TENSORBOARD)),
    }


class Cancelled(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    job_dir = gcs_local(args.job_dir)
    data_dir = gcs_local(args.data_dir)

    from trainer import cluster as cluster_mod
    cluster = cluster_mod.detect()

    from trainer.jobdir import CANCELLED, FAILED, JobDir
    from trainer.errors import InputError
    try:
        jd = JobDir(job_dir, enabled=cluster.is_chief)
    except OSError as exc:
        print(f"error: cannot create job dir {job_dir}: {exc}", file=sys.stderr)
        return EXIT_INPUT

    cancel: dict[str, Any] = {"flag": False, "signal": signal.SIGTERM}   # bool, signal number

    def on_term(signum: int, frame: FrameType | None) -> None:  # checked between steps
        cancel.update(flag=True, signal=signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)      # Ctrl-C by hand: the same clean stop

    try:
        run(args, job_dir, data_dir, cluster, jd, cancel)
        return EXIT_OK
    except Cancelled:
        name = signal.Signals(cancel["signal"]).name
        print(f"cancelled by {name}: checkpoint written; the same command resumes", flush=True)
        _final_status(jd, CANCELLED, f"cancelled by {name}")
        return EXIT_TERM if cancel["signal"] == signal.SIGTERM else 128 + int(cancel["signal"])
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _final_status(jd, FAILED, str(exc))
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - the status must say why any run ended
        if is_disk_full(exc):
            msg = f"disk full while writing to {job_dir}: {exc}"
            print(f"error: {msg}", file=sys.stderr)
            _final_status(jd, FAILED, msg)
            return EXIT_INPUT
        traceback.print_exc()
        _final_status(jd, FAILED, f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED


def _final_status(jd: Any, state: str, error: str) -> None:
    try:
        jd.status(state=state, error=error)
    except Exception as exc:  # noqa: BLE001 - e.g. the disk is full; stderr still says why
        print(f"warning: could not write status.json: {exc}", file=sys.stderr)


def run(args: argparse.Namespace, job_dir: str, data_dir: str, cluster: Any, jd: Any,
        cancel: dict[str, Any]) -> None:
    from trainer.errors import InputError
    from trainer.jobdir import RUNNING, SUCCEEDED, log
    from trainer.presets import resolve

    overrides = flag_overrides(args)
    preset = args.preset
    dirs = resolve_dirs(job_dir)
    previous = _read_json(os.path.join(job_dir, CONFIG))
    resuming = bool(previous) and _has_checkpoint(dirs["checkpoints"])
    recorded = previous.get("trainer", {}) if resuming else {}
    started_with = recorded_settings(recorded) if resuming else {}
    if resuming:
        # A resumed run keeps the settings it started with (config.json), so a newer
        # version's preset defaults cannot change a job halfway; flags given now still
        # override them (--max-steps to train longer), shape-defining ones are checked below.
        preset = recorded.get("preset", preset)
        overrides = {**started_with, **overrides}
    from trainer import manifest as manifest_mod

    # The checks a person can act on come before the multi-second TensorFlow import.
    manifest = manifest_mod.read_manifest(data_dir)
    limit = manifest_mod.max_image_size(manifest)
    # Without --image-size (given now or recorded) the dataset decides: trainer/contract.py.
    dataset_size = int(manifest.get("options", {}).get("image_size") or limit)
    overrides["image_size"] = train_image_size(preset, overrides.get("image_size"), dataset_size)
    try:
        cfg = resolve(preset, overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    jd.status(state=RUNNING, step=0, max_steps=planned_steps(cfg), error="")
    if cfg.image_size > limit:
        raise InputError(f"image size {cfg.image_size} is larger than the dataset's stored images "
                         f"allow ({limit}); rebuild the dataset with --image-size {cfg.image_size} "
                         f"or train with --image-size {limit} or less")
    for key in ("embedding_size", "image_size", "width", "d_width", "d_depth", "g_depth", "g_mapping",
                "g_mapping_lr", "d_scales", "d_attn", "g_attn", "loss", "spectral_norm", "d_batch_norm", "mbstd",
                "mbstd_mix", "mbstd_start"):
        # recorded_settings gives a key the record lacks its off value: the job ran without
        # it (a job from before --mbstd-start has no fade weight to restore).
        old = started_with.get(key)
        if old is not None and old != getattr(cfg, key):
            flag = "--" + key.replace("_", "-")
            if isinstance(old, bool):       # --spectral-norm / --no-spectral-norm take no value
                use = flag if old else "--no-" + flag[2:]
            else:
                use = f"{flag} {old}"
            raise InputError(f"{key.replace('_', ' ')} {getattr(cfg, key)} does not match the "
                             f"checkpoint being resumed ({old}); use {use} or a new job dir")

    tf = import_tensorflow()
    from trainer.loop import Trainer

    jd.write_json(CONFIG, {
        "trainer": cfg.to_json(),
        "dataset": {"dir": data_dir, "name": manifest.get("name", ""),
                    "counts": manifest.get("counts", {}), "options": manifest.get("options", {})},
        "dirs": dirs, "workers": cluster.workers, "tensorflow": tf.__version__,
    })

    log(f"TensorFlow {tf.__version__} loaded; {cluster.workers} worker(s); preset {cfg.preset}")
    if cluster.is_chief:
        from trainer import checkpoints
        checkpoints.repair_index(dirs["checkpoints"], log)      # the manager cannot start on a damaged one
    trainer = Trainer(cfg, manifest, data_dir, dirs, cluster, jd)
    log("model built")
    start = trainer.restore()
    if start:
        jd.truncate_metrics(start)
        print(f"resumed from step {start}", flush=True)
    jd.status(state=RUNNING, step=start, max_steps=planned_steps(cfg),
              max_minutes=cfg.max_minutes, seconds_left=None)    # until the loop measures a rate
    step = trainer.train(start, lambda: cancel["flag"])
    if cancel["flag"]:
        raise Cancelled()
    log("training done")
    if cluster.is_chief and not trainer.last_eval:     # resumed at the end: no eval ran
        trainer.evaluate(step)
    if cluster.is_chief:
        from trainer.export import export
        best = trainer.restore_best()
        last = trainer.last_eval
        if best and best != step:
            log(f"exporting the best evaluation (step {best}, SWD {last['best_swd']:.1f}), "
                f"not the last (step {step}, SWD {last['swd']:.1f})")
        export_step = best or step
        export(dirs["model"], trainer.model.encoder, trainer.model.sampler(export_step), {
                   "image_size": cfg.image_size, "embedding_size": cfg.embedding_size,
                   "preset": cfg.preset, "step": export_step, "last_step": step,
                   "dataset": manifest.get("name", ""), "crop_fraction": CROP_FRACTION,
                   "loss": cfg.loss, "refine_steps": cfg.refine_steps,
                   "metrics": {"swd": last["best_swd"] if best else last["swd"],
                               "swd_floor": last.get("swd_floor"),
                               **trainer.encode_scores(export_step)},
               })
    log(f"exported to {dirs['model']}")
    jd.status(state=SUCCEEDED, step=step, max_steps=step)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the command line sets: every flag given, except where to read and
    write and the preset they override."""
    return {k: v for k, v in vars(args).items()
            if k not in ("data_dir", "job_dir", "preset") and v is not None}


def recorded_settings(recorded: dict[str, Any]) -> dict[str, Any]:
    """The settings a job started with, as overrides for its resume. A setting its
    config.json does not name was added to the trainer later: the job ran without it, so it
    resumes with the setting's off value (Config's default), not with what the preset turns
    on today (quick's --augment-target would look for a variable its checkpoints lack)."""
    from trainer.presets import Config

    defaults = Config()
    return {k: recorded.get(k, getattr(defaults, k)) for k in Config.fields() - {"preset"}}


def planned_steps(cfg: Any) -> int:
    """status.json's max_steps before training: unknown (0) under a time budget, until the
    loop can estimate it from its rate."""
    return 0 if cfg.max_minutes else cfg.max_steps


def _read_json(path: str) -> dict[str, Any]:
    try:
        if "://" in path:
            import tensorflow as tf
            with tf.io.gfile.GFile(path, "r") as f:
                data: dict[str, Any] = json.load(f)
                return data
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
            return data
    except Exception:  # noqa: BLE001 - missing or unreadable: nothing to compare against
        return {}


def _has_checkpoint(ckpt_dir: str) -> bool:
    """A ckpt-N.index file exists (even if the `checkpoint` index file was lost or damaged)."""
    import re
    try:
        if "://" in ckpt_dir:
            import tensorflow as tf
            names = tf.io.gfile.listdir(ckpt_dir)
        else:
            names = os.listdir(ckpt_dir)
    except Exception:  # noqa: BLE001 - no folder (or none readable): nothing to resume
        return False
    return any(re.fullmatch(r"ckpt-\d+\.index", n.rstrip("/")) for n in names)


if __name__ == "__main__":
    sys.exit(main())
