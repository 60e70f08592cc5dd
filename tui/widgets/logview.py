"""A log tail: follow mode, `/` search with highlighted matches and n/N, wrap, jumps.

Lines are kept in memory up to a cap (k9s keeps 5,000); the backend hands them over in
chunks with a cursor, so a large log is never read whole. Drawing is line by line
(Textual's line API), so only the rows on screen are rendered.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static

from tui.actions import Action, bindings
from tui.widgets.querybox import QueryBox

MAX_LINES = 5000
MATCH = Style(bgcolor="yellow", color="black")
# TensorFlow's own C++ log lines ("E0000 00:00:17.. 14226 util.cc:131] ...") written after start-up
# (the trainer keeps the start-up ones out of train.log, and no longer causes the one it used
# to write while training): drawn dim, so genml's lines stand out and a harmless kernel note
# does not read as the job's error.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.-]+:\d+\] ")
TF_STYLE = Style(dim=True, italic=True)
CURRENT = Style(bgcolor="dark_orange", color="black", bold=True)


class LogView(ScrollView, can_focus=True):
    """The lines themselves. Follow mode pauses when the person scrolls up."""

    DEFAULT_CSS = "LogView { height: 1fr; background: $surface; scrollbar-size-vertical: 1; }"
    ACTIONS = (
        Action("toggle_follow", "f", "Follow", "Log: follow on/off"),
        Action("toggle_wrap", "w", "Wrap", "Log: wrap long lines on/off"),
        Action("search", "slash", "Search", "Log: search", key_display="/"),
        Action("next_match", "n", "Next match"),
        Action("prev_match", "N", "Prev match"),
        Action("start", "g,home", "Start", footer=False),
        Action("end", "G,end", "End (and follow)", footer=False),
        Action("down", "j,down", "Down", footer=False, help=False),
        Action("up", "k,up", "Up", footer=False, help=False),
        Action("page_up", "pageup", "Page up", footer=False, help=False),
        Action("page_down", "pagedown", "Page down", footer=False, help=False),
    )
    BINDINGS = bindings(ACTIONS)

    follow: reactive[bool] = reactive(True)
    wrap: reactive[bool] = reactive(False)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.lines: list[str] = []
        self.pattern: re.Pattern[str] | None = None
        self.matches: list[int] = []          # source line indices with a match
        self.current: int = -1                # index into matches
        self._rows: list[tuple[int, int, int]] = []   # (line, start, end) per visual row
        self._first_row: list[int] = []       # visual row where each source line starts
        self._width = 0

    # ---- content ----------------------------------------------------------------------
    def clear(self) -> None:
        self.lines = []
        self._reflow()

    def append(self, new: Iterable[str]) -> None:
        new = [l.rstrip("\n") for l in new]
        if not new:
            return
        self.lines.extend(new)
        if len(self.lines) > MAX_LINES:
            del self.lines[: len(self.lines) - MAX_LINES]
        self._reflow()
        if self.follow:
            self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _reflow(self) -> None:
        width = max(1, self.scrollable_content_region.width or 80)
        self._width = width
        rows: list[tuple[int, int, int]] = []
        first: list[int] = []
        for i, line in enumerate(self.lines):
            first.append(len(rows))
            if self.wrap and len(line) > width:
                for s in range(0, len(line), width):
                    rows.append((i, s, min(len(line), s + width)))
            else:
                rows.append((i, 0, len(line)))
        self._rows, self._first_row = rows, first
        longest = width if self.wrap else max((len(l) for l in self.lines), default=0)
        self.virtual_size = Size(longest, len(rows))
        if self.pattern is not None:
            self.matches = [i for i, l in enumerate(self.lines) if self.pattern.search(l)]
            self.current = min(self.current, len(self.matches) - 1)
        self.refresh()

    def on_resize(self) -> None:
        if self.wrap and self.scrollable_content_region.width != self._width:
            self._reflow()
        if self.follow:
            self.call_after_refresh(self._to_end)

    def render_line(self, y: int) -> Strip:
        sx, sy = self.scroll_offset
        row = sy + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if row >= len(self._rows):
            return Strip.blank(width, base)
        i, s, e = self._rows[row]
        line = self.lines[i]
        text = Text(line[s:e], style=base + TF_STYLE if TF_LOG_LINE.match(line) else base, no_wrap=True, end="")
        if self.pattern is not None:
            style = CURRENT if (0 <= self.current < len(self.matches) and self.matches[self.current] == i) else MATCH
            for m in self.pattern.finditer(line):
                a, b = max(m.start(), s), min(m.end(), e)
                if a < b:
                    text.stylize(style, a - s, b - s)
        segments = list(text.render(self.app.console))
        strip = Strip(segments).crop(sx, sx + width) if not self.wrap else Strip(segments)
        return strip.extend_cell_length(width, base)

    # ---- search -------------------------------------------------------------------------
    def search(self, term: str) -> int:
        """Highlight every match of `term` (case-insensitive; a plain string) and jump to the first below."""
        if not term:
            self.pattern, self.matches, self.current = None, [], -1
            self.refresh()
            return 0
        self.pattern = re.compile(re.escape(term), re.IGNORECASE)
        self.matches = [i for i, l in enumerate(self.lines) if self.pattern.search(l)]
        self.current = -1
        if self.matches:
            top = self._line_at(int(self.scroll_y))
            self.current = next((k for k, i in enumerate(self.matches) if i >= top), 0)
            self._show_current()
        self.refresh()
        return len(self.matches)

    def _line_at(self, row: int) -> int:
        return self._rows[row][0] if 0 <= row < len(self._rows) else 0

    def _show_current(self) -> None:
        if not (0 <= self.current < len(self.matches)):
            return
        self.follow = False
        row = self._first_row[self.matches[self.current]]
        self.scroll_to(y=max(0, row - self.scrollable_content_region.height // 2), animate=False)
        self.refresh()
        if isinstance(self.parent, LogPanel):
            self.parent.update_status()

    def action_next_match(self) -> None:
        if self.matches:
            self.current = (self.current + 1) % len(self.matches)
            self._show_current()

    def action_prev_match(self) -> None:
        if self.matches:
            self.current = (self.current - 1) % len(self.matches)
            self._show_current()

    def action_search(self) -> None:
        if isinstance(self.parent, LogPanel):
            self.parent.open_query()

    # ---- moving ------------------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.call_after_refresh(self._to_end)
        if isinstance(self.parent, LogPanel):
            self.parent.update_status()

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def watch_wrap(self) -> None:
        self._reflow()
        if isinstance(self.parent, LogPanel):
            self.parent.update_status()

    def action_start(self) -> None:
        self.follow = False
        self.scroll_home(animate=False)

    def action_end(self) -> None:
        self.follow = True
        self.scroll_end(animate=False)

    def action_up(self) -> None:
        self.follow = False
        self.scroll_up(animate=False)

    def action_down(self) -> None:
        self.scroll_down(animate=False)

    def action_page_up(self) -> None:
        self.follow = False
        self.scroll_page_up(animate=False)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def _on_mouse_scroll_up(self, event: Any) -> None:
        self.follow = False


class LogPanel(QueryBox):
    """A LogView with its search box and a status line (follow, wrap, matches)."""

    OPEN_CLASS = "-searching"
    DEFAULT_CSS = """
    LogPanel { height: 1fr; }
    LogPanel > Input { display: none; height: 3; }
    LogPanel.-searching > Input { display: block; }
    LogPanel > .status { height: 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search the log…  (enter: keep, escape: clear)")
        yield LogView()
        yield Static("", classes="status")

    def on_mount(self) -> None:
        self.update_status()

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def update_status(self) -> None:
        v = self.view
        bits = [f"follow {'on' if v.follow else 'off'} (f)", f"wrap {'on' if v.wrap else 'off'} (w)",
                f"{len(v.lines)} lines"]
        if v.pattern is not None:
            bits.append(f"{v.current + 1 if v.matches else 0}/{len(v.matches)} matches (n/N)")
        self.query_one(".status", Static).update("  ".join(bits))

    # ---- the search (QueryBox) ------------------------------------------------------------
    def query_changed(self, text: str) -> None:
        self.view.search(text)
        self.update_status()

    @property
    def query_target(self) -> LogView:
        return self.view
