"""genml predict, generate, encode, serve and batch-predict: using a deployed model.

TensorFlow loads only inside these commands (through core/predict.py), never when the
CLI starts.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import click
import numpy as np

from core.errors import InvalidInput
from tui.cli.common import Context, echo_json, pass_ctx

BATCH = 64


def _read_jsonl(path: Path) -> Iterator[Any]:
    """Each non-blank line parsed, through batch prediction's bounded reader (a huge line or
    /dev/zero cannot take all the memory); a bad line becomes a marker the parser rejects."""
    from core.batch import read_instances
    from core.predict import BadInstance
    with open(path, "rb") as f:
        for n, (lineno, obj) in enumerate(read_instances(f)):
            if isinstance(obj, BadInstance):   # numbered as the n-th instance, as the others are
                why = obj.error.split(": ", 1)[-1]
                obj = BadInstance(n, None, f"instance {n} (line {lineno}): {why}")
            yield obj


@click.command()
@click.argument("model")
@click.option("--json-instances", "instances_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON Lines: {"embeddings": [...], "key": "0"} or {"image_bytes": {"b64": ...}, "key": "0"}.')
@pass_ctx
def predict(ctx: Context, model: str, instances_file: Path) -> None:
    """Online prediction with the seed's instance formats; one JSON prediction per line.

    Exits 1 if any instance was rejected (its line says why, with its key).
    """
    from core.predict import parse_instance
    p = ctx.backend.predictor(model)
    bad = 0
    batch: list[tuple[int, Any]] = []

    def flush() -> int:
        preds = p.predict_parsed([parse_instance(o, i, p.embedding_size) for i, o in batch])
        for pred in preds:
            click.echo(json.dumps(pred))
        batch.clear()
        return sum(1 for x in preds if "error" in x)

    for i, obj in enumerate(_read_jsonl(instances_file)):
        batch.append((i, obj))
        if len(batch) >= BATCH:
            bad += flush()
    if batch:
        bad += flush()
    if bad:
        click.secho(f"{bad} instance(s) rejected", err=True, fg="yellow")
        sys.exit(1)


def ctx_output_given() -> bool:
    """Whether -o/--output was on the command line (its default is for single PNGs)."""
    ctx = click.get_current_context()
    return ctx.get_parameter_source("output") is not click.core.ParameterSource.DEFAULT


def _draw(images: np.ndarray) -> None:
    """Half-block pixels in the terminal: up to as many images side by side as fit."""
    from PIL import Image
    from rich.console import Console
    from rich_pixels import HalfcellRenderer, Pixels
    console = Console()
    h, w = images.shape[1:3]
    scale = max(1, 32 // max(h, w))
    tile = w * scale + 1
    per_row = max(1, min(len(images), console.width // tile))
    for start in range(0, len(images), per_row):
        row = images[start:start + per_row]
        canvas = Image.new("RGB", (tile * len(row) - 1, h * scale), (0, 0, 0))
        for i, im in enumerate(row):
            canvas.paste(Image.fromarray(im).resize((w * scale, h * scale), Image.Resampling.NEAREST), (i * tile, 0))
        console.print(Pixels.from_image(canvas, renderer=HalfcellRenderer()))


def _out_paths(out: Path, n: int) -> list[Path]:
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i:03d}{out.suffix or '.png'}") for i in range(n)]


@click.command()
@click.argument("model")
@click.option("-n", "count", type=click.IntRange(1, 4096), default=1, show_default=True, help="How many images.")
@click.option("--seed", type=int, default=None, help="Random seed for the embeddings (repeatable images).")
@click.option("--embedding-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Use these embeddings instead of random ones (.npy, JSON, or JSON Lines).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("generated.png"),
              show_default=True, help="PNG to write (with -n > 1: NAME-000.png, NAME-001.png, ...).")
@click.option("--show/--no-show", default=None, help="Draw the images here (default: when stdout is a terminal).")
@click.option("--interpolate", nargs=2, metavar="A B", default=None,
              help="Walk from A to B (each a seed, an embedding file or an image, encoded first) and save it as an "
                   "animation: -o walk.gif or walk.png (APNG).")
@click.option("--frames", type=click.IntRange(2, 1024), default=24, show_default=True,
              help="With --interpolate: frames of the walk, both ends included.")
@click.option("--duration", "duration_ms", type=click.IntRange(min=10), default=80, show_default=True,
              help="With --interpolate: milliseconds per frame.")
@click.option("--bounce/--no-bounce", default=False, help="With --interpolate: play back to A, so the loop is smooth.")
@click.option("--scale", type=click.IntRange(1, 16), default=1, show_default=True,
              help="With --interpolate: enlarge each frame this many times (nearest-neighbour).")
@pass_ctx
def generate(ctx: Context, model: str, count: int, seed: int | None, embedding_file: Path | None,
             output: Path, show: bool | None, interpolate: tuple[str, str] | None, frames: int,
             duration_ms: int, bounce: bool, scale: int) -> None:
    """Images from random (standard normal) or given embeddings, saved as PNG.

    With --interpolate A B, a spherical walk from A to B saved as one animated GIF or PNG:
    genml generate MODEL --interpolate 1 2 --frames 32 -o walk.gif
    """
    from PIL import Image
    if interpolate:
        from core.interpolate import animation_format
        if output == Path("generated.png") and not ctx_output_given():
            output = Path("walk.gif")
        animation_format(output)                   # a bad suffix fails before the model loads
    p = ctx.backend.predictor(model)
    if interpolate:
        from core.interpolate import endpoint, save_animation, slerp
        (za, la), (zb, lb) = endpoint(interpolate[0], p), endpoint(interpolate[1], p)
        images = p.generate(slerp(za, zb, frames))
        save_animation(images, output, duration_ms=duration_ms, bounce=bounce, scale=scale)
        click.echo(str(output))
        click.secho(f"{len(images)} frames from {la} to {lb}, {duration_ms} ms each"
                    + (", there and back" if bounce else ""), err=True, fg="green")
        if show if show is not None else sys.stdout.isatty():
            _draw(images[:: max(1, len(images) // 8)])
        return
    if embedding_file:
        from core.interpolate import load_embeddings
        z = load_embeddings(embedding_file, p.embedding_size)
    else:
        z = np.random.default_rng(seed).standard_normal((count, p.embedding_size)).astype(np.float32)
    images = p.generate(z)
    output.parent.mkdir(parents=True, exist_ok=True)
    for path, im in zip(_out_paths(output, len(images)), images):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        from core import atomic
        atomic.write_bytes(path, buf.getvalue())
        click.echo(str(path))
    if show if show is not None else sys.stdout.isatty():
        _draw(images)


@click.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON array of {file, embeddings} instead of lines.")
@pass_ctx
def encode(ctx: Context, model: str, images: tuple[Path, ...], as_json: bool) -> None:
    """Embeddings of IMAGE files, one JSON line per image (the encoder's mean, refined so that
    its decode looks like the image; the same image always gets the same embedding)."""
    p = ctx.backend.predictor(model)
    z = p.encode([path.read_bytes() for path in images])
    rows = [{"file": str(path), "embeddings": [float(x) for x in v]} for path, v in zip(images, z)]
    if as_json:
        echo_json(rows)
    else:
        for r in rows:
            click.echo(json.dumps(r))


def _read_token(path: Path) -> str:
    """The token from a file (its first line), so it never shows in `ps` or shell history."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"Cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}.",
                           "Give a readable text file holding the token on its first line.") from exc
    token = text.splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise InvalidInput(f"The token file {path} is empty.", "Put the token on its first line.")
    return token


@click.command()
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless a token is set).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 picks a free port.")
@click.option("--token-file", envvar="GENML_SERVE_TOKEN_FILE", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Read the token from this file (first line); env: GENML_SERVE_TOKEN_FILE. "
                   "Clients send 'Authorization: Bearer TOKEN'; a token is needed to listen beyond loopback.")
@click.option("--token", envvar="GENML_SERVE_TOKEN", default=None,
              help="The token itself; prefer the env var GENML_SERVE_TOKEN or --token-file, since a "
                   "command-line argument is visible to every user in `ps`.")
@click.option("--quiet", is_flag=True, help="No access log.")
@click.pass_context
def serve(click_ctx: click.Context, model: str, host: str, port: int, token_file: Path | None,
          token: str | None, quiet: bool) -> None:
    """Serve MODEL over REST in the Vertex AI / TF Serving shape until Ctrl-C or SIGTERM.

    The token comes from --token-file / GENML_SERVE_TOKEN_FILE, else GENML_SERVE_TOKEN,
    else --token (visible in `ps`: a warning says so).
    """
    from core.serve import check_bind, make_server, serve_until_signal
    ctx = click_ctx.find_object(Context)
    assert ctx is not None      # cli() puts one on the root context
    if token_file is not None:
        if token is not None and click_ctx.get_parameter_source("token") is click.core.ParameterSource.COMMANDLINE:
            raise InvalidInput("Both --token and --token-file were given.", "Give one of them.")
        token = _read_token(token_file)
    elif token and click_ctx.get_parameter_source("token") is click.core.ParameterSource.COMMANDLINE:
        click.secho("warning: --token on the command line is visible to every user of this machine "
                    "(ps, /proc); use GENML_SERVE_TOKEN or --token-file instead", fg="yellow", err=True)
    check_bind(host, token)                     # before the slow model load
    mv = ctx.backend.get_model(model)
    p = ctx.backend.predictor(model)
    server = make_server(p, mv.name, host, port, token=token, version=mv.version, quiet=quiet)

    def ready(s: Any) -> None:
        click.echo(f"serving {mv.ref} on {s.url}", err=False)
        click.secho(f"  POST {s.url}/v1/models/{mv.name}:predict   GET {s.url}/healthz   (Ctrl-C stops)",
                    err=True)
        sys.stdout.flush()

    serve_until_signal(server, ready)
    click.secho("stopped", err=True)


@click.command("batch-predict")
@click.argument("model")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON Lines of instances.")
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for predictions-NNNNN-of-NNNNN.jsonl and errors-*.jsonl; rerun to resume.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def batch_predict(ctx: Context, model: str, input_path: Path, output_dir: Path, as_json: bool) -> None:
    """Predict every line of a file into sharded output; safe to kill and rerun."""
    def progress(pr: Any) -> None:
        if not as_json:
            click.echo(f"\r{pr.done}/{pr.total} lines ({pr.message})", nl=False, err=True)

    res = ctx.backend.batch_predict(model, input_path, output_dir, progress=progress)
    if as_json:
        echo_json(vars(res))
        return
    click.echo("", err=True)
    click.echo(f"{res.predictions} predictions, {res.errors} errors in {res.output_dir}")


COMMANDS: list[click.Command] = [predict, generate, encode, serve, batch_predict]
