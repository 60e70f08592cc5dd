"""genml models: deploy a finished job's model as a version of a name, list, show, undeploy, rm."""
from __future__ import annotations

from typing import Any

import click

from core.types import ModelVersion
from tui.cli.common import Context, echo_json, one_record, pass_ctx, when


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


@click.group()
def models() -> None:
    """Deployed models: versions of a name, each pointing at a finished job's export."""


@models.command()
@click.argument("job_id")
@click.option("--name", default=None, help="Model name (default: the job's dataset name).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def deploy(ctx: Context, job_id: str, name: str | None, as_json: bool) -> None:
    """Register JOB's exported model as the next version of NAME."""
    mv = ctx.backend.deploy(job_id, name)
    if as_json:
        echo_json(mv.to_dict())
        return
    click.echo(mv.ref)
    click.secho(f"deployed {mv.ref}; try: genml generate {mv.name} -n 4", err=True, fg="green")


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="Include undeployed versions.")
@pass_ctx
def list_(ctx: Context, as_json: bool, show_all: bool) -> None:
    """Model versions with their job and last evaluation (swd lower is better; psnr, ssim higher).

    A cloud model deleted outside genml is listed as "missing in Vertex AI" (deploy its job
    again, or `genml models rm` it)."""
    def row(m: ModelVersion) -> list[str]:
        return [m.ref, ctx.profile_of(m), m.job_id, m.deployed_label, _fmt(m.metrics.get("swd")),
                _fmt(m.metrics.get("psnr")), _fmt(m.metrics.get("ssim")), _fmt(m.metrics.get("step")),
                when(m.created)]
    ctx.echo_list([m for m in ctx.backend.list_models() if show_all or m.deployed or m.missing], as_json,
                  ModelVersion.to_dict,
                  ["MODEL", "BACKEND", "JOB", "DEPLOYED", "SWD", "PSNR", "SSIM", "STEP", "CREATED"], row,
                  none="No models. Deploy a finished job with: genml models deploy JOB")


@models.command()
@one_record("ref")
def show(ctx: Context, ref: str, as_json: bool) -> None:
    """One model version (REF is NAME for the newest deployed, or NAME@vN)."""
    mv = ctx.backend.get_model(ref)
    if as_json:
        echo_json(mv.to_dict())
        return
    state = "" if mv.deployed else f"  ({'missing in Vertex AI' if mv.missing else 'undeployed'})"
    click.echo(f"model:     {mv.ref}{state}")
    if mv.remote.get("note"):
        click.echo(f"cloud:     {mv.remote['note']}")
    click.echo(f"job:       {mv.job_id}")
    click.echo(f"path:      {mv.path}")
    click.echo(f"created:   {when(mv.created)}")
    for k in ("image_size", "embedding_size", "preset", "step", "dataset"):
        if k in mv.info:
            click.echo(f"{k + ':':<10} {mv.info[k]}")
    if mv.metrics:
        click.echo("metrics:   " + ", ".join(f"{k} {_fmt(v)}" for k, v in mv.metrics.items()))


@models.command()
@click.argument("ref")
@pass_ctx
def undeploy(ctx: Context, ref: str) -> None:
    """Stop serving a version (it stays listed with --all; its job dir is untouched)."""
    mv = ctx.backend.undeploy(ref)
    click.echo(f"{mv.ref} undeployed")


@models.command()
@click.argument("ref")
@pass_ctx
def rm(ctx: Context, ref: str) -> None:
    """Forget NAME (every version) or NAME@vN. The job dir and its export stay on disk."""
    ctx.backend.remove_model(ref)
    click.echo(f"{ref} removed")


COMMANDS: list[click.Command] = [models]
