"""What every `genml` command module shares: the per-invocation Context, output helpers,
and the group class that turns GenmlError into a message and an exit code.

Apart from tui/cli/__init__.py (the group and its registration), so the command modules
import this and not their own package: no import cycle between the group and its commands.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from core.errors import GenmlError

if TYPE_CHECKING:
    from core.backend import Backend

R = TypeVar("R")


class Context:
    """Carried on click's context: opens the backend only when a command needs it.

    Without --backend (or with --backend all) that is every configured backend at once
    (core/multi.py): lists show local and cloud rows together, and a command about one
    job or model goes to the backend that owns it.
    """

    def __init__(self, backend_name: str | None) -> None:
        self.backend_name = backend_name
        self._backend: Backend | None = None
        self._cfg: Any = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            if self.backend_name in (None, "all"):
                from core.multi import open_all
                self._backend = open_all(None)
            else:
                from core.backends import open_backend
                self._backend = open_backend(self.backend_name)
        return self._backend

    def profile_of(self, item: Any) -> str:
        """The backend column of a job or model row: "local" or the Vertex AI profile's name."""
        from core import config as config_mod
        from core.multi import owner_of
        if self._cfg is None:
            self._cfg = config_mod.load()
        return owner_of(item, self._cfg)

    def echo_list(self, records: list[R], as_json: bool, as_dict: Callable[[R], dict[str, Any]],
                  header: list[str], row: Callable[[R], list[str]], none: str) -> None:
        """What `jobs list` and `models list` print: the named backend's rows only (every
        backend's without --backend or with --backend all), as JSON (each with its profile)
        or as a table (`none` on stderr when there are no rows), then the profiles that could
        not be reached."""
        if self.backend_name not in (None, "all"):
            records = [r for r in records if self.profile_of(r) == self.backend_name]
        if as_json:
            echo_json([dict(as_dict(r), profile=self.profile_of(r)) for r in records])
        elif not records:
            click.echo(none, err=True)
        else:
            echo_table([row(r) for r in records], header)
        self.say_unreachable()

    def say_unreachable(self) -> None:
        """After a list: which configured profiles could not be reached (their rows are as last seen)."""
        from core.multi import unreachable
        for st in unreachable(self.backend):
            click.secho(f"{st.name}: cannot be reached ({st.message}); its rows show what genml last knew "
                        f"(genml --backend {st.name} vertex check)", err=True, fg="yellow")


pass_ctx = click.make_pass_decorator(Context)


def one_record(argument: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """ARGUMENT, --json and the context: what every command about one job or model takes."""
    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        fn = pass_ctx(fn)
        fn = click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")(fn)
        return click.argument(argument)(fn)
    return wrap


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def safe(text: object) -> str:
    """Text from files and folders, fit to print: control characters (a newline in a file
    name would forge an output line) and lone surrogates (the undecodable bytes of a
    non-UTF-8 name, which would raise UnicodeEncodeError on a UTF-8 terminal) are escaped,
    \\n, \\x1b, \\xff and so on; everything else prints as it is."""
    out = []
    for ch in str(text):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:                   # surrogateescape: the byte that did not decode
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0xD800 <= o <= 0xDFFF or o < 0x20 or 0x7F <= o < 0xA0 or o in (0x2028, 0x2029):
            out.append(ch.encode("unicode_escape").decode("ascii") if o < 0xD800 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def echo_table(rows: list[list[str]], header: list[str]) -> None:
    """Plain aligned columns: readable in a terminal and easy to cut with awk."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def when(t: float | None) -> str:
    """A timestamp as local date and minute, '-' when unset."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


class GenmlGroup(click.Group):
    """Turns GenmlError into a message + hint on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GenmlError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.secho(f"hint: {exc.hint}", fg="yellow", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            ctx.exit(130)
