"""genml doctor: the local registry checked against the workspace folders (core/doctor.py)."""
from __future__ import annotations

import dataclasses
import sys

import click

from tui.cli.common import echo_json, safe


@click.command("doctor")
@click.option("--fix", is_flag=True, help="Mend what can be mended (see below); without it, only report.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable findings.")
def doctor(fix: bool, as_json: bool) -> None:
    """Check the local workspace: the registry against the dataset and job folders.

    \b
    Reports, and with --fix mends:
      - a registry that cannot be opened (moved aside, rebuilt from the folders)
      - datasets and jobs on disk but not registered (registered again)
      - registered datasets whose folder is gone (dropped from the registry)
      - leftovers of interrupted builds in tmp/ (deleted)
      - a workspace other users can read (made 0700)
    Also reports registered jobs and models whose folders are gone, and finished jobs
    whose model is deployed under no name (with the command to deploy it).
    Exits 1 if anything is left to mend.
    """
    from core.doctor import check
    from core.workspace import Workspace
    ws = Workspace.open()
    report = check(ws, fix=fix)
    if as_json:
        echo_json({"workspace": str(ws.root), "ok": report.ok,
                   "findings": [dataclasses.asdict(f) for f in report.findings]})
    else:
        click.echo(f"workspace {safe(ws.root)}")
        for f in report.findings:
            mark = "fixed" if f.fixed else "found"
            click.echo(f"  {mark}  {f.kind} {safe(f.what)}: {safe(f.problem)}"
                       + (f" -> {safe(f.action)}" if f.action else ""))
        if not report.findings:
            click.echo("  all good: the registry and the folders agree")
        elif not report.ok and not fix:
            click.secho("run `genml doctor --fix` to mend what can be mended", fg="yellow", err=True)
    if not report.ok:
        sys.exit(1)


COMMANDS: list[click.Command] = [doctor]
