"""What every pane shares: the backend, errors shown as notifications, coalesced polling.

Polling is a one-shot timer that re-arms only after its worker has finished, and the
worker is exclusive, so a slow disk or bucket delays the next read instead of queueing
reads behind it. A hidden pane polls less often.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, TypeVar, cast

from textual import work
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from core.errors import GenmlError
from tui.actions import Action, bindings, help_rows
from tui.widgets.table import FilterTable

if TYPE_CHECKING:
    from core.backend import Backend
    from tui.app import GenmlApp


def genml_app(widget: Any) -> "GenmlApp":
    """The running GenmlApp, typed (Textual's `widget.app` is a plain App).

    A cast, not an isinstance check: importing tui.app here would close an import cycle
    (the app imports every pane); the panes only ever run inside GenmlApp.
    """
    return cast("GenmlApp", widget.app)


class Pane(Vertical, can_focus=True):
    """Base for the four panes. Subclasses implement `fetch` (thread) and `apply` (UI)."""

    TITLE = ""
    POLL_VISIBLE = 1.0
    POLL_HIDDEN = 5.0
    # the pane's keys, footer, palette entries and help rows (see tui/actions.py); a pane
    # declares only ACTIONS: its BINDINGS are made from them (__init_subclass__). These are
    # every pane's: a pane's BINDINGS add to them (Textual merges a class's with its bases').
    ACTIONS: ClassVar[tuple[Action, ...]] = (Action("focus_home", "escape", "Back", footer=False, help=False),)
    BINDINGS = bindings(ACTIONS)

    def __init_subclass__(cls, **kw: Any) -> None:
        # before Textual's own __init_subclass__, which reads BINDINGS from the class's __dict__
        if "ACTIONS" in cls.__dict__:
            cls.BINDINGS = bindings(cls.ACTIONS)
        super().__init_subclass__(**kw)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._timer: Timer | None = None
        self._polling = False

    @property
    def genml(self) -> "GenmlApp":
        return genml_app(self)

    @property
    def backend(self) -> Backend:
        return self.genml.backend

    @property
    def visible_pane(self) -> bool:
        return self.genml.current_pane is self

    def action_focus_home(self) -> None:
        """escape: back to the pane itself (the generator's canvas), from a field inside it."""
        self.focus()

    # ---- polling -----------------------------------------------------------------------
    def on_mount(self) -> None:
        # neither the greeting nor the list shows until the first read says which one
        for w in self.query(".welcome, .body, FilterTable.body-table"):
            w.display = False
        self.poll_now()

    def poll_now(self) -> None:
        """Read now (after an action), unless a read is already in flight."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if not self._polling and self.is_mounted:
            self._polling = True
            self._poll_worker()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll_worker(self) -> None:
        try:
            data: Any = self.fetch()
        except GenmlError as exc:
            data = exc
        except Exception as exc:  # noqa: BLE001  - shown, and polling goes on
            data = exc
        try:
            self.app.call_from_thread(self._applied, data)
        except RuntimeError:      # the app is closing
            pass

    def _applied(self, data: Any) -> None:
        self._polling = False
        try:
            if isinstance(data, Exception):
                self.poll_failed(data)
            else:
                self.apply(data)
                if self.visible_pane and not isinstance(self.app.screen, ModalScreen):
                    self.genml.focus_pane(self)          # a no-op when the focus is fine
        finally:
            if self.is_attached and not self.app._exit:  # a private attribute: there is no public flag
                delay = self.POLL_VISIBLE if self.visible_pane else self.POLL_HIDDEN
                self._timer = self.set_timer(delay, self.poll_now)

    def fetch(self) -> Any:
        return None

    def apply(self, data: Any) -> None:
        pass

    def poll_failed(self, exc: Exception) -> None:
        if getattr(self, "_last_poll_error", None) != str(exc):
            self._last_poll_error = str(exc)
            self.genml.show_error(exc)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one handler for worker errors: a pane's worker that raised ends here.

        Workers run with exit_on_error=False, so an exception ends the worker (state ERROR)
        instead of the app; Textual tells the widget that started it, which is a pane.
        """
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.genml.show_error(event.worker.error)

    # ---- one-off backend calls -------------------------------------------------------
    def call_backend(self, fn: Callable[[], Any], done: Callable[[Any], None] | None = None,
                     group: str = "action") -> None:
        """Run `fn` in a thread; `done(result)` on the UI thread. An exception ends the worker
        in the ERROR state, which the app's one handler (GenmlApp.on_worker_state_changed) shows."""
        self._call_worker(fn, done, group)

    @work(thread=True, exit_on_error=False)
    def _call_worker(self, fn: Callable[[], Any], done: Callable[[Any], None] | None, group: str) -> None:
        try:
            result = fn()
            if done is not None:
                self.app.call_from_thread(done, result)
        finally:
            self.app.call_from_thread(self.poll_now)

    def help_rows(self) -> list[tuple[str, str]]:
        """(keys, label) for the `?` page: this pane's actions and those of the widgets inside it."""
        rows: list[tuple[str, str]] = []
        for node in [self, *self.query("*")]:
            for row in help_rows(getattr(type(node), "ACTIONS", ())):
                if row not in rows:
                    rows.append(row)
        return rows


R = TypeVar("R")


class ListPane(Pane, Generic[R]):
    """A pane around one list (datasets, jobs, models): `records` holds the last read, by the
    list's keys; escape comes back to the list."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.records: dict[str, R] = {}

    def current(self) -> R | None:
        """The record of the highlighted row, if any."""
        key = self.query_one(FilterTable).current_key
        return self.records.get(key) if key else None

    def action_focus_home(self) -> None:
        """escape: back to the list, from its filter, the log or a detail."""
        self.query_one(FilterTable).focus_table()
