"""genml train and the genml jobs group: start, watch, stop and resume training jobs."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from core.errors import GenmlError, InvalidState
from core.jobdir import tensorboard_dir
from core.quality import summarize
from core.types import Job
from trainer.contract import DEFAULT_PRESET, IMAGE_SIZES, LOSSES, PRESET_SUMMARIES, PRESETS
from tui.cli.common import Context, echo_json, one_record, pass_ctx, when


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def job_dict(job: Job) -> dict[str, Any]:
    d = job.to_dict()
    d["eta_seconds"] = job.eta_seconds
    return d


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dataset")
@click.option("--preset", type=click.Choice(PRESETS), default=DEFAULT_PRESET, show_default=True,
              help="; ".join(f"{p}: {PRESET_SUMMARIES[p]}" for p in PRESETS) + ".")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable runs.")
@click.option("--loss", type=click.Choice(LOSSES), default=None)
@click.option("--image-size", type=click.Choice([str(s) for s in IMAGE_SIZES]), default=None,
              help="Train at this size. Default: the dataset's own size (tiny and quick: their smaller one).")
@click.option("--embedding-size", type=click.IntRange(min=1), default=None)
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="Vertex AI only: machines to train on (MultiWorkerMirroredStrategy). Default: the profile's.")
@click.option("--machine-type", default=None, help="Vertex AI only: e.g. n1-standard-8. Default: the profile's.")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.pass_context
def train(click_ctx: click.Context, dataset: str, preset: str, max_steps: int | None, batch_size: int | None,
          seed: int | None, loss: str | None, image_size: str | None, embedding_size: int | None,
          replicas: int | None, machine_type: str | None, as_json: bool) -> None:
    """Train a model on DATASET in the background; prints the job id.

    The job runs detached: closing the terminal or the TUI does not stop it. Any other
    option (e.g. --eval-every 200) is passed to the trainer as is. Follow it with
    `genml jobs logs ID -f`.
    """
    from core.backend import TrainOptions
    ctx = click_ctx.find_object(Context)
    assert ctx is not None      # cli() puts one on the root context
    opts = TrainOptions(preset=preset, max_steps=max_steps, batch_size=batch_size, seed=seed, loss=loss,
                        image_size=int(image_size) if image_size else None, embedding_size=embedding_size,
                        extra_args=list(click_ctx.args), machine_type=machine_type)
    machines = ctx.backend.capabilities().machines       # cloud backends choose what a job runs on
    for flag, given in (("--replicas", replicas is not None and replicas > 1), ("--machine-type", machine_type)):
        if given and not machines:
            raise GenmlError(f"{flag} needs the Vertex AI backend: the local backend trains on this machine.",
                             f"Add --backend vertex (see docs/vertex.md), or leave {flag} out.")
    if replicas is not None:
        opts.replicas = replicas
    job = ctx.backend.submit_job(dataset, opts)
    if as_json:
        echo_json(job_dict(job))
        return
    click.echo(job.id)
    click.secho(f"started {job.id} ({job.state.short}); follow it with: genml jobs logs {job.id} -f",
                err=True, fg="green")


@click.group()
def jobs() -> None:
    """List, inspect, follow, cancel and resume training jobs."""


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """All jobs, oldest first."""
    def row(j: Job) -> list[str]:
        steps = f"{j.step}/{j.max_steps}" if j.max_steps else str(j.step)
        end = j.ended or (time.time() if j.started else None)
        return [j.id, ctx.profile_of(j), j.dataset, j.state.short, steps,
                f"{j.images_per_sec:.0f}" if j.images_per_sec else "-",
                when(j.created), _duration(end - j.started if j.started and end else None)]
    ctx.echo_list(ctx.backend.list_jobs(), as_json, job_dict,
                  ["ID", "BACKEND", "DATASET", "STATE", "STEP", "IMG/S", "CREATED", "TIME"], row,
                  none="No jobs yet. Start one with: genml train DATASET --preset tiny")


@jobs.command()
@one_record("job_id")
def show(ctx: Context, job_id: str, as_json: bool) -> None:
    """One job: state, progress, reason for a failure, last evaluation, where its files are."""
    job = ctx.backend.get_job(job_id)
    jd = ctx.backend.job_dir(job) if job.job_dir else None
    last_eval = jd.metrics().last_eval if jd else {}
    if as_json:
        echo_json(dict(job_dict(job), last_eval=last_eval, has_model=bool(jd and jd.has_model())))
        return
    click.echo(f"id:        {job.id}")
    click.echo(f"dataset:   {job.dataset}")
    click.echo(f"state:     {job.state.short}")
    click.echo(f"step:      {job.step}" + (f" of {job.max_steps}" if job.max_steps else ""))
    if job.images_per_sec:
        click.echo(f"speed:     {job.images_per_sec:.1f} images/s")
    if job.eta_seconds is not None:
        click.echo(f"eta:       {_duration(job.eta_seconds)}")
    click.echo(f"created:   {when(job.created)}   started: {when(job.started)}   ended: {when(job.ended)}")
    click.echo(f"preset:    {job.options.get('preset', '-')}   args: {' '.join(job.options.get('args', []))}")
    click.echo(f"job dir:   {job.job_dir}")
    if last_eval:
        click.echo("last eval: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in last_eval.items()
                                             if k not in ("kind", "wall_time", "swd_draws")))
        q = summarize(jd.metrics().eval, jd.status()) if jd else None
        if q and q.has_eval and q.best_swd is not None:
            floor = f", floor {q.swd_floor:.1f}" if q.swd_floor is not None else ""
            spread = f" ({q.spread})" if q.spread else ""
            line = (f"quality:   SWD {q.swd:.1f}{spread}{floor}; best {q.best_swd:.1f} at step {q.best_step}; "
                    f"{q.verdict}")
            if q.stalled:
                line += (f" (no better SWD in {q.evals_since_best} evaluations: more training is "
                         f"unlikely to help; the model is the best step's)")
            click.secho(line, fg="yellow" if q.stalled else None)
    if jd and jd.has_model():
        click.echo(f"model:     {job.job_dir.rstrip('/')}/model  (deploy: genml models deploy {job.id})")
    if job.error:
        click.secho("reason:", fg="red")
        click.echo("  " + job.error.replace("\n", "\n  "))


@jobs.command()
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends (like tail -f).")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=100, show_default=True,
              help="How many of the last lines to print first.")
@pass_ctx
def logs(ctx: Context, job_id: str, follow: bool, lines: int) -> None:
    """The trainer's output (train.log)."""
    backend = ctx.backend
    job = backend.get_job(job_id)
    chunk = backend.read_log(job.id, None, lines)
    for line in chunk.lines:
        click.echo(line)
    if not follow:
        return
    cursor = chunk.cursor
    try:
        while True:
            chunk = backend.read_log(job.id, cursor, 5000)
            for line in chunk.lines:
                click.echo(line)
            cursor = chunk.cursor
            if chunk.lines:
                continue
            job = backend.get_job(job.id)
            if job.state.terminal:
                rest = backend.read_log(job.id, cursor, 5000)   # lines written just before the end
                for line in rest.lines:
                    click.echo(line)
                click.secho(f"job {job.id} {job.state.short}", err=True,
                            fg="green" if job.state.short == "SUCCEEDED" else "yellow")
                return
            backend.reconcile()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


@jobs.command()
@one_record("job_id")
def cancel(ctx: Context, job_id: str, as_json: bool) -> None:
    """Ask a job to checkpoint and stop (resume it later with `genml jobs resume`)."""
    _echo_state(ctx.backend.cancel_job(job_id), as_json)


@jobs.command()
@one_record("job_id")
def resume(ctx: Context, job_id: str, as_json: bool) -> None:
    """Restart a failed or cancelled job from its last checkpoint."""
    _echo_state(ctx.backend.resume_job(job_id), as_json)


def _echo_state(job: Job, as_json: bool) -> None:
    echo_json(job_dict(job)) if as_json else click.echo(f"{job.id} {job.state.short}")


@jobs.command()
@click.argument("job_id")
@click.option("--port", type=click.IntRange(0, 65535), default=6006, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@pass_ctx
def tensorboard(ctx: Context, job_id: str, port: int, host: str) -> None:
    """Start TensorBoard on the job's logs/ in the background and print its URL."""
    job = ctx.backend.get_job(job_id)
    logdir = tensorboard_dir(job.job_dir)
    if "://" not in logdir and not Path(logdir).is_dir():
        raise InvalidState(f"Job {job.id} has no TensorBoard logs yet ({logdir}).",
                           "They appear after the first training steps.")
    if importlib.util.find_spec("tensorboard") is None:
        raise GenmlError("TensorBoard is not installed.",
                         "Install it with `pip install tensorboard`, or watch the job in genml-tui.")
    out = open(Path(job.job_dir) / "tensorboard.log", "ab") if not str(job.job_dir).startswith("gs://") \
        else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                             "--host", host, "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    click.echo(f"http://{host}:{port}/")
    click.secho(f"TensorBoard runs as pid {proc.pid}; stop it with: kill {proc.pid}", err=True)


COMMANDS: list[click.Command] = [train, jobs]
