"""genml vertex commands: set up a Vertex AI profile and check that it works."""
from __future__ import annotations

from typing import Any, Callable

import click

from core import config as config_mod
from core.backend import CloudConsole
from core.errors import CloudError
from core.types import JobState
from tui.cli.common import GenmlGroup, echo_json


@click.group("vertex", cls=GenmlGroup)
def vertex() -> None:
    """Google Cloud Vertex AI: configure a profile, check it, list what bills, run the live smoke check."""


@vertex.command("configure")
@click.option("--profile", "name", default="vertex", show_default=True, help="Profile name in the config file.")
@click.option("--project", help="Google Cloud project ID.")
@click.option("--region", help="Vertex AI region, e.g. us-central1.")
@click.option("--bucket", help="Cloud Storage bucket in that region (gs:// optional).")
@click.option("--service-account", help="Service account the jobs run as (optional).")
@click.option("--machine-type", help="Training machine type, e.g. n1-standard-8.")
@click.option("--replicas", type=click.IntRange(1, 64), help="Machines per training job.")
@click.option("--accelerator-type", help="e.g. NVIDIA_TESLA_T4 (switches to the GPU container).")
@click.option("--accelerator-count", type=click.IntRange(0, 16))
@click.option("--credentials", type=click.Path(dir_okay=False), help="Service-account key file (else ADC).")
@click.option("--serving-image", help="TensorFlow Serving image in your Artifact Registry to deploy models on, "
              "e.g. REGION-docker.pkg.dev/PROJECT/dockerhub/tensorflow/serving:2.17.1 (docs/vertex.md, Containers); "
              "'' for Vertex AI's prebuilt image.")
@click.option("--default/--no-default", "make_default", default=False, help="Make this profile the default backend.")
def configure(name: str, make_default: bool, **values: Any) -> None:
    """Write (or update) a Vertex AI profile in the config file."""
    cfg = config_mod.load()
    prof = dict(cfg.profiles.get(name, {}))
    prof["backend"] = "vertex"
    for key, value in values.items():
        if value is not None:
            prof[key] = value.removeprefix("gs://").strip("/") if key == "bucket" else value
    from core.vertex.settings import Settings
    prof.setdefault("region", Settings.region)          # written out, so the file says where jobs run
    settings = Settings.from_profile(prof)
    settings.name = name
    settings.validate().validate_serving_image()
    cfg.profiles[name] = prof
    if make_default:
        cfg.backend = name
    path = config_mod.save(cfg)
    click.echo(f"Saved profile {name!r} in {path}.")
    click.echo(f"Use it with `genml --backend {name} ...`" + ("" if make_default else
               f" or make it the default with `genml vertex configure --profile {name} --default`") + ".")
    click.echo(f"Then run `genml --backend {name} vertex check`.")


def _console(ctx: click.Context, command: str) -> CloudConsole:
    """The selected backend's cloud console (Backend.capabilities), or a clear refusal."""
    console: CloudConsole | None = ctx.find_root().obj.backend.capabilities().cloud
    if console is None:
        raise CloudError("The selected backend is not a Vertex AI profile.",
                         f"Run `genml --backend PROFILE vertex {command}` with your Vertex AI profile "
                         "(`genml vertex configure` makes one).")
    return console


def console_command(name: str) -> Callable[[Callable[..., None]], click.Command]:
    """`genml vertex NAME [--json]`, a command about the selected Vertex AI profile: it takes
    the context (for _console and the exit code) and as_json."""
    def wrap(fn: Callable[..., None]) -> click.Command:
        fn = click.pass_context(fn)
        fn = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)
        return vertex.command(name)(fn)
    return wrap


@console_command("check")
def check(ctx: click.Context, as_json: bool) -> None:
    """Check the profile, credentials, bucket location and the Vertex AI and Logging APIs."""
    results = _console(ctx, "check").check()
    if as_json:
        echo_json([{"check": c, "ok": ok, "detail": d} for c, ok, d in results])
    else:
        for label, ok, detail in results:
            mark = click.style("ok  ", fg="green") if ok else click.style("FAIL", fg="red")
            if ok and detail.startswith("warning: "):
                mark, detail = click.style("WARN", fg="yellow"), detail.removeprefix("warning: ")
            click.echo(f"{mark} {label}: {detail}")
    if not all(ok for _, ok, _ in results):
        ctx.exit(1)


@console_command("resources")
def resources(ctx: click.Context, as_json: bool) -> None:
    """What genml has running in Google Cloud that may be billing (jobs, batch jobs, deployed endpoints)."""
    found = _console(ctx, "resources").billable_resources()
    if as_json:
        echo_json(found)
        return
    if not any(found.values()):
        click.echo("Nothing genml started is running or deployed.")
        return
    for j in found["training"]:
        click.echo(f"training  {j['display_name']}  {JobState.parse(j['state']).short}  {j['name']}")
    for j in found["batch"]:
        click.echo(f"batch     {j['display_name']}  {JobState.parse(j['state']).short}  {j['name']}")
    for e in found["endpoints"]:
        click.echo(f"endpoint  {e['display_name']}  {e['deployed_models']} deployed model(s)  {e['name']}")
    if found["endpoints"]:
        click.echo("Deployed models bill per node-hour until undeployed: genml models undeploy NAME@vN")


@vertex.command("smoke")
@click.option("--yes", is_flag=True, help="Start without asking (the expected cost is still printed first).")
@click.pass_context
def smoke(ctx: click.Context, yes: bool) -> None:
    """Opt-in, billable: train the tiny preset on the smallest machine, deploy, predict once, delete it all.

    Prints the expected cost first. Skipped (exit 0) when no credentials are found; never
    run by CI. `make cloud-check PROFILE=NAME` runs it.
    """
    passed = _console(ctx, "smoke").smoke_check(click.echo, lambda: yes or click.confirm("Start it?", default=False))
    if passed is not None:
        click.secho("smoke check passed" if passed else "smoke check FAILED", fg="green" if passed else "red")
    if passed is False:
        ctx.exit(1)


COMMANDS: list[click.Command] = [vertex]
