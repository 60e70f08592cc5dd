"""`genml`: every capability as a command, for scripts and people who prefer them.

Built with click (composable groups, one module per group, tested with CliRunner).
Expected failures (core.errors.GenmlError) print a message and a hint, never a traceback.
"""
from __future__ import annotations

import click

from tui.cli.common import Context, GenmlGroup


@click.group(cls=GenmlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--backend", "backend_name", envvar="GENML_BACKEND", default=None,
              help="Backend or profile from the config file (local, vertex, or a profile name). Without it, "
                   "lists show every configured backend (as with 'all') and a job's or model's commands go "
                   "to the backend that owns it; new work goes to the config's default backend.")
@click.version_option(package_name="genml")
@click.pass_context
def cli(ctx: click.Context, backend_name: str | None) -> None:
    """Train a VAE-GAN on your own images and generate from it, locally or on Vertex AI.

    \b
    Workspace: $GENML_HOME, else the XDG data dir. Config: $GENML_CONFIG, else
    the XDG config dir's genml/config.toml.
    """
    ctx.obj = Context(backend_name)


def _register() -> None:
    from tui.cli import dataset, doctor, jobs, models, predict, vertex  # each adds its commands
    for mod in (dataset, jobs, models, predict, vertex, doctor):
        for command in getattr(mod, "COMMANDS", []):
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="genml")


if __name__ == "__main__":
    main()
