"""What every pane shares: the backend, errors shown as notifications, coalesced polling.

Polling is a one-shot timer that re-arms only after its worker has finished, and the
worker is exclusive, so a slow disk or bucket delays the next read instead of queueing
reads behind it. A hidden pane polls less often.
"""
from __future__ import annotations

from typing import Any, Callable

from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer

from core.errors import GenmlError


class Pane(Vertical, can_focus=True):
    """Base for the four panes. Subclasses implement `fetch` (thread) and `apply` (UI)."""

    TITLE = ""
    POLL_VISIBLE = 1.0
    POLL_HIDDEN = 5.0
    # (action, description) pairs the command palette lists for this pane
    COMMANDS: list[tuple[str, str]] = []

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._timer: Timer | None = None
        self._polling = False

    @property
    def backend(self) -> Any:
        return self.app.backend  # type: ignore[attr-defined]

    @property
    def visible_pane(self) -> bool:
        return getattr(self.app, "current_pane", None) is self

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
                    self.app.focus_pane(self)  # type: ignore[attr-defined]  (no-op when focus is fine)
        finally:
            if self.is_attached and not self.app._exit:  # type: ignore[attr-defined]
                delay = self.POLL_VISIBLE if self.visible_pane else self.POLL_HIDDEN
                self._timer = self.set_timer(delay, self.poll_now)

    def fetch(self) -> Any:
        return None

    def apply(self, data: Any) -> None:
        pass

    def poll_failed(self, exc: Exception) -> None:
        if getattr(self, "_last_poll_error", None) != str(exc):
            self._last_poll_error = str(exc)
            self.app.show_error(exc)  # type: ignore[attr-defined]

    # ---- one-off backend calls -------------------------------------------------------
    def call_backend(self, fn: Callable[[], Any], done: Callable[[Any], None] | None = None,
                     group: str = "action") -> None:
        """Run `fn` in a thread; `done(result)` on the UI thread; errors become notifications."""
        self._call_worker(fn, done, group)

    @work(thread=True, exit_on_error=False)
    def _call_worker(self, fn: Callable[[], Any], done: Callable[[Any], None] | None, group: str) -> None:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, exc)  # type: ignore[attr-defined]
            return
        if done is not None:
            self.app.call_from_thread(done, result)
        self.app.call_from_thread(self.poll_now)

    def help_rows(self) -> list[tuple[str, str]]:
        """(key, description) for the `?` page: this pane's bindings and its children's."""
        rows: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for node in [self, *self.query("*")]:
            if not type(node).__module__.startswith("tui."):
                continue
            for b in getattr(type(node), "BINDINGS", []):
                if isinstance(b, Binding) and b.description and (b.key, b.description) not in seen:
                    seen.add((b.key, b.description))
                    rows.append((b.key_display or b.key.replace("slash", "/"), b.description))
        return rows
