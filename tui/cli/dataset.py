"""genml dataset commands: add, demo, list, show, rm.

Long commands draw a rich progress bar (count, rate, ETA) from the backend's progress
callback; Ctrl-C stops them and leaves nothing half-built (see core/datasets/catalog.py).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from trainer import contract
from tui.cli.common import echo_json, pass_ctx, safe

IMAGE_SIZES = [str(s) for s in contract.IMAGE_SIZES]


def summary(ds: Any, data: dict[str, Any]) -> dict[str, Any]:
    """What `show --json` prints: the registry record, then the manifest's details."""
    out: dict[str, Any] = ds.to_dict()
    out.update({k: v for k, v in data.items() if k != "name"})
    out["skipped"] = [{"path": s["path"], "reason": s["reason"]} for s in data.get("skipped", [])]
    return out


class _Bar:
    """Maps core.backend.Progress reports onto a rich progress bar on stderr."""

    def __init__(self, verb: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.verb = verb
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                 TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=False,
                                 auto_refresh=False)   # no refresh thread: the worker pool may fork
        self.task = self.progress.add_task("starting", total=None, rate="")
        self.stage = ""
        self.started = 0.0
        self.start_done = 0

    def __enter__(self) -> "_Bar":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, p: Any) -> None:
        import time
        if p.stage != self.stage:
            self.stage = p.stage
            self.started, self.start_done = time.monotonic(), p.done
            self.progress.reset(self.task, total=p.total or None)
        if p.stage == "scan":
            self.progress.update(self.task, description=f"scanning ({p.done} images found)",
                                 completed=p.done, total=None)
            self.progress.refresh()
            return
        elapsed = time.monotonic() - self.started
        rate = (p.done - self.start_done) / elapsed if elapsed > 0.5 else 0.0
        desc = self.verb if p.stage == "process" else p.message or p.stage
        self.progress.update(self.task, description=desc, completed=p.done, total=p.total or None,
                             rate=f"{rate:.0f} img/s" if rate else "")
        self.progress.refresh()


def _print_result(ds: Any) -> None:
    click.echo(f"dataset {ds.name}: {ds.train_count} train, {ds.validation_count} validation, "
               f"{ds.skipped_count} skipped, {ds.duplicate_count} duplicates -> {ds.path}")
    if ds.skipped_count:
        click.echo(f"see why files were skipped: genml dataset show {ds.name}")


@click.group("dataset")
def dataset() -> None:
    """Turn folders of images into training-ready datasets, and look at them."""


def _build_options(fn: Callable[..., None]) -> Callable[..., None]:
    """--replace, --force and --json, which every command that builds a dataset takes."""
    fn = pass_ctx(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the new dataset as JSON.")(fn)
    fn = click.option("--force", is_flag=True,
                      help="Go ahead although an unfinished job reads the dataset (it will likely fail).")(fn)
    return click.option("--replace", is_flag=True,
                        help="Rebuild NAME if it exists; the old one stays until the new one is complete.")(fn)


@dataset.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name of the new dataset.")
@click.option("--crop", type=click.Choice(contract.CROPS), default=contract.DEFAULT_CROP, show_default=True,
              help="How training crops the stored images (evaluation always uses the centre).")
@click.option("--image-size", type=click.Choice(IMAGE_SIZES), default=str(contract.DEFAULT_IMAGE_SIZE),
              show_default=True,
              help="The training image size; images are stored a little larger so crops stay sharp.")
@_build_options
def add(ctx: Any, path: Path, name: str, crop: str, image_size: str, replace: bool, force: bool,
        as_json: bool) -> None:
    """Scan PATH (recursively) for images and build dataset NAME from them.

    Files that cannot be used are skipped with a reason (see `genml dataset show NAME`);
    the source folder is never modified.
    """
    with _progress("processing") as bar:
        ds = ctx.backend.add_dataset(path, name, crop=crop, image_size=int(image_size), progress=bar,
                                     replace=replace, force=force)
    echo_json(ds.to_dict()) if as_json else _print_result(ds)


@dataset.command("demo")
@click.option("--name", default="demo", show_default=True)
@click.option("--count", type=click.IntRange(1, 1_000_000), default=2000, show_default=True)
@_build_options
def demo(ctx: Any, name: str, count: int, replace: bool, force: bool, as_json: bool) -> None:
    """Make a procedural dataset (one coloured shape on a plain background) to try genml without your own images."""
    with _progress("rendering") as bar:
        ds = ctx.backend.make_demo_dataset(name, count, progress=bar, replace=replace, force=force)
    echo_json(ds.to_dict()) if as_json else _print_result(ds)


class _progress:
    """A progress bar when stderr is a terminal, nothing otherwise (scripts, CliRunner)."""

    def __init__(self, verb: str) -> None:
        self.bar: _Bar | None = _Bar(verb) if sys.stderr.isatty() else None

    def __enter__(self) -> Callable[[Any], None] | None:
        if self.bar:
            self.bar.__enter__()
        return self.bar

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.__exit__(*exc)


@dataset.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_(ctx: Any, as_json: bool) -> None:
    """List the datasets in the workspace."""
    items = ctx.backend.list_datasets()
    if as_json:
        echo_json([d.to_dict() for d in items])
        return
    if not items:
        click.echo("No datasets yet. Try: genml dataset demo   or   genml dataset add PATH --name NAME")
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("name", "train", "validation", "skipped", "dupes", "size", "crop", "path", box=None)
    for d in items:
        table.add_row(d.name, str(d.train_count), str(d.validation_count), str(d.skipped_count),
                      str(d.duplicate_count), str(d.image_size), d.crop, safe(d.path))
    Console().print(table)


def _lines(data: dict[str, Any], limit: int) -> Iterator[str]:
    opts, counts, stats = data.get("options", {}), data.get("counts", {}), data.get("stats", {})
    yield f"source:     {safe(data.get('source', ''))}"
    yield (f"options:    image size {opts.get('image_size')}, stored short side {opts.get('stored_size')}, "
           f"crop {opts.get('crop')}, background {tuple(opts.get('background', ()))}")
    yield (f"counts:     {counts.get('scanned', 0)} scanned, {counts.get('train', 0)} train, "
           f"{counts.get('validation', 0)} validation, {counts.get('skipped', 0)} skipped, "
           f"{counts.get('duplicates', 0)} duplicates, {counts.get('ignored', 0)} other files ignored")
    sizes = stats.get("sizes") or {}
    if sizes:
        yield (f"sizes:      min {'x'.join(map(str, sizes['min']))}, median {'x'.join(map(str, sizes['median']))}, "
               f"max {'x'.join(map(str, sizes['max']))}; {stats.get('upsampled', 0)} upsampled")
        yield f"mean RGB:   {', '.join(f'{v:.1f}' for v in stats.get('mean_rgb', []))}"
    shards = data.get("shards", {})
    yield f"shards:     {len(shards.get('train', []))} train, {len(shards.get('validation', []))} validation"
    listed: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
        ("skipped", "skipped", lambda s: f"{safe(s['path'])}: {safe(s['reason'])}"),
        ("duplicates", "duplicates", lambda s: f"{safe(s['path'])} = {safe(s['duplicate_of'])}"))
    for title, key, fmt in listed:
        items = data.get(key, [])
        if items:
            yield f"{title}:"
            for s in items[:limit]:
                yield "  " + fmt(s)
            if len(items) > limit:
                yield f"  ... and {len(items) - limit} more (--all, or --json)"


@dataset.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (includes every skipped file).")
@click.option("--all", "show_all", is_flag=True, help="List every skipped file and duplicate.")
@pass_ctx
def show(ctx: Any, name: str, as_json: bool, show_all: bool) -> None:
    """Show a dataset: counts, options, statistics, and every skipped file with its reason."""
    ds = ctx.backend.get_dataset(name)
    data = ctx.backend.dataset_manifest(name)
    if as_json:
        echo_json(summary(ds, data))
        return
    click.echo(f"{ds.name}  ({safe(ds.path)})")
    for line in _lines(data, limit=10**9 if show_all else 20):
        click.echo(line)


@dataset.command("rm")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Go ahead although an unfinished job reads the dataset (it will likely fail).")
@pass_ctx
def rm(ctx: Any, name: str, yes: bool, force: bool) -> None:
    """Remove a dataset (its source images are untouched)."""
    ctx.backend.get_dataset(name)
    if not yes and sys.stdin.isatty():
        click.confirm(f"Remove dataset {name!r}?", abort=True)
    ctx.backend.remove_dataset(name, force=force)
    click.echo(f"removed dataset {name}")


COMMANDS: list[click.Command] = [dataset]
