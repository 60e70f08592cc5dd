"""genml-tui: datasets, jobs with live logs, models, and a generator that draws in the terminal.

The app talks only to a core.backend.Backend. It never imports TensorFlow itself: the
generator's Predictor does, lazily, in a worker thread, the first time a model is opened.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from textual.app import App, ComposeResult
from textual.lazy import Lazy
from textual.message import Message
from textual.widgets import Footer, TabbedContent, TabPane

from core.errors import GenmlError
from tui import images
from tui.actions import Action, bindings, help_rows
from tui.commands import GenmlCommands
from tui.widgets.datasets import DatasetsPane
from tui.widgets.generator import GeneratorPane
from tui.widgets.jobs import JobsPane
from tui.widgets.models import ModelsPane
from tui.widgets.pane import Pane

PANES: list[tuple[str, str, type[Pane]]] = [
    ("datasets", "1 Datasets", DatasetsPane),
    ("jobs", "2 Jobs", JobsPane),
    ("models", "3 Models", ModelsPane),
    ("generator", "4 Generator", GeneratorPane),
]


class SerialBackend:
    """The backend with its short calls taken one at a time.

    The app calls the backend from several worker threads (each pane's poll, actions);
    the local backend shares one SQLite connection between threads, so its quick calls
    are serialised here. Long calls (building a dataset, loading a model, batch
    prediction) run outside the lock so polling goes on meanwhile.
    """

    LONG = {"add_dataset", "make_demo_dataset", "predictor", "batch_predict"}

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._backend, name)
        if not callable(attr) or name in self.LONG:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)
        return call


class GenmlApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "genml"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    COMMANDS = App.COMMANDS | {GenmlCommands}
    AUTO_FOCUS = None          # focus goes to the pane's list (see focus_pane), not the tab bar
    ACTIONS = (
        Action("show_pane('datasets')", "1", "Datasets", "Go to Datasets", footer=False, help=False),
        Action("show_pane('jobs')", "2", "Jobs", "Go to Jobs", footer=False, help=False),
        Action("show_pane('models')", "3", "Models", "Go to Models", footer=False, help=False),
        Action("show_pane('generator')", "4", "Generator", "Go to Generator", footer=False, help=False),
        Action("help", "question_mark", "Help", "Show the keys of this pane", key_display="?"),
        Action("cycle_image_mode", "m", "Image mode", "Cycle the image mode (half-blocks, kitty, sixel)",
               footer=False),
        Action("quit", "q", "Quit"),
    )
    BINDINGS = bindings(ACTIONS)

    def __init__(self, backend: Any = None, *, image_mode: str = images.HALFBLOCK,
                 image_modes: list[str] | None = None, backend_name: str | None = None) -> None:
        super().__init__()
        start_resource_tracker()
        if backend is None:       # every configured backend in one list (core/multi.py)
            from core.multi import open_all
            backend = open_all(backend_name, tui=True)
        backend.set_notice_handler(self._notice)    # billing and permission notes: stderr is hidden here
        self.backend = SerialBackend(backend)
        self.image_mode = image_mode
        self.image_modes = image_modes or [image_mode]
        self.panes: dict[str, Pane] = {}

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="datasets"):
            for pane_id, title, cls in PANES:
                with TabPane(title, id=pane_id):
                    pane = cls(id=f"{pane_id}-pane")
                    self.panes[pane_id] = pane
                    # the hidden panes mount just after the first paint
                    yield pane if pane_id == "datasets" else Lazy(pane)
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_pane, "datasets")

    class Notice(Message):
        """A backend's note for the person (billing, permissions)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def _notice(self, text: str) -> None:
        # post_message is thread-safe and does not wait: the backend call that says this may
        # hold the SerialBackend lock, which the UI thread could be waiting for.
        self.post_message(self.Notice(text))

    def on_genml_app_notice(self, message: "GenmlApp.Notice") -> None:
        self.notify(message.text, severity="warning", timeout=20)

    # ---- panes -------------------------------------------------------------------------
    @property
    def current_pane(self) -> Pane | None:
        active = self.query_one(TabbedContent).active
        return self.panes.get(active)

    def action_show_pane(self, pane_id: str) -> None:
        self.show_pane(pane_id)

    def show_pane(self, pane_id: str) -> None:
        self.query_one(TabbedContent).active = pane_id
        self._focus_pane(pane_id)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane_id = event.pane.id or ""
        if pane_id in self.panes and self.panes[pane_id].is_mounted:
            self._focus_pane(pane_id)          # now: a key typed right after the switch goes here
            self.panes[pane_id].poll_now()

    def _focus_pane(self, pane_id: str) -> None:
        self.focus_pane(self.panes[pane_id])

    def focus_pane(self, pane: Pane) -> None:
        """Give the pane's list (or the pane itself) focus unless something inside it has it."""
        if not pane.is_mounted:
            return
        from textual.widgets import Input

        from tui.widgets.table import FilterTable
        f = self.focused
        # An Input just opened (the filter, the log search) has no area until the next
        # layout; a poll landing in between must not take the focus from under the typing.
        if f is not None and f is not pane and pane in f.ancestors_with_self and (
                isinstance(f, Input) or (f.display and f.region.area)):
            return

        def shown(w: Any) -> bool:
            return all(a.display for a in w.ancestors_with_self if a is not pane) and pane.display

        tables = [t for t in pane.query(FilterTable) if shown(t)]
        # set_focus now, not focus() (which queues): a key already on its way must find the focus
        self.set_focus(tables[0].table if tables else pane)

    def open_generator(self, ref: str) -> None:
        self.show_pane("generator")
        gen = self.panes["generator"]
        assert isinstance(gen, GeneratorPane)
        if gen.model_ref != ref:
            gen.load_model(ref)

    # ---- help, images, errors --------------------------------------------------------------
    def action_help(self) -> None:
        from tui.screens.help import HelpScreen
        pane = self.current_pane
        app_rows = help_rows(self.ACTIONS)
        app_rows += [("1-4", "switch pane"), ("ctrl+p", "command palette: every action"),
                     ("tab / shift+tab", "move focus"), ("escape", "back / close")]
        sections = [(pane.TITLE if pane else "", pane.help_rows() if pane else []), ("Everywhere", app_rows)]
        self.push_screen(HelpScreen(f"Keys: {pane.TITLE if pane else 'genml'}", sections))

    def zoom(self, view: images.ImageView) -> None:
        """Open the zoom on an image on screen (a grid opens at its first cell)."""
        from tui.screens.zoom import ZoomScreen
        if not view.cells:
            self.notify("No image to zoom into yet.", severity="warning", timeout=3)
            return
        self.push_screen(ZoomScreen(view.cells, view.labels, view.title))

    def on_image_view_zoom_requested(self, message: images.ImageView.ZoomRequested) -> None:
        self.zoom(message.view)

    def action_cycle_image_mode(self) -> None:
        modes = self.image_modes
        self.image_mode = modes[(modes.index(self.image_mode) + 1) % len(modes)] if self.image_mode in modes \
            else modes[0]
        for screen in self.screen_stack:
            for view in screen.query(images.ImageView):
                view.mode = self.image_mode
        extra = "" if len(modes) > 1 else " (this terminal shows half-blocks only; see --image-mode)"
        self.notify(f"Image mode: {self.image_mode}{extra}", timeout=3)

    def show_error(self, exc: BaseException) -> None:
        """Expected failures as message + hint; anything else still as one line, never a traceback."""
        if isinstance(exc, GenmlError):
            self.notify(exc.message + (f"\n{exc.hint}" if exc.hint else ""), title="Error", severity="error",
                        timeout=12)
        elif isinstance(exc, NotImplementedError):
            self.notify("This backend cannot do that yet.", title="Not available", severity="warning")
        else:
            self.log.error(repr(exc))
            self.notify(f"{type(exc).__name__}: {exc}", title="Unexpected error", severity="error", timeout=12)


def guard_terminal(log_path: str) -> None:
    """Keep TensorFlow's C++ logging off the screen.

    Textual draws on sys.__stderr__ (fd 2); TensorFlow and absl write warnings straight to
    fd 2 when a model loads, which would scribble over the UI. Textual gets its own copy
    of the terminal and fd 2 goes to a log file instead.
    """
    if not os.isatty(2):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return
    term = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.__stderr__ = sys.stderr = term  # type: ignore[misc]  # deliberate: fd 2 is the log


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker while sys.stderr is still a real file.

    Inside the app, Textual swaps sys.stderr for a capture whose fileno() is -1, and the
    tracker, started lazily by the first process pool (the dataset builder's), passes
    sys.stderr.fileno() to its child: "bad value(s) in fds_to_keep".
    """
    try:
        from multiprocessing import resource_tracker
        resource_tracker.ensure_running()
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="genml-tui", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("GENML_BACKEND"),
                        help="backend or profile from the config file (default: local)")
    parser.add_argument("--image-mode", default=os.environ.get("GENML_IMAGE_MODE", "auto"),
                        help="auto, halfblock, tgp (kitty graphics) or sixel; env GENML_IMAGE_MODE")
    args = parser.parse_args(argv)
    try:
        mode, modes = images.detect(args.image_mode)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        app = GenmlApp(image_mode=mode, image_modes=modes, backend_name=args.backend)
    except GenmlError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        raise SystemExit(exc.exit_code)
    from core.workspace import Workspace
    guard_terminal(str(Workspace.open().tmp_dir / "genml-tui.stderr.log"))
    app.run()


if __name__ == "__main__":
    main()
