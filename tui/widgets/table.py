"""A list with vim keys and a `/` filter: every list in the app is one of these."""
from __future__ import annotations

from typing import Any, Generic, Sequence, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Input

from tui.actions import Action, bindings
from tui.widgets.querybox import QueryBox


def backend_markup(plain: str, cell: str | None) -> str:
    """The backend column: `plain` as it is, or the longer cell core.multi.backend_cell gave
    (an unreachable profile's row) in yellow."""
    return plain if not cell or cell == plain else f"[yellow]{cell}[/]"


class VimTable(DataTable[Any]):
    """DataTable with j/k/g/G beside the arrows."""

    ACTIONS = (
        Action("cursor_down", "j", "Down", footer=False, help=False),
        Action("cursor_up", "k", "Up", footer=False, help=False),
        Action("scroll_top", "g", "Top", footer=False, help=False),
        Action("scroll_bottom", "G", "Bottom", footer=False, help=False),
    )
    BINDINGS = bindings(ACTIONS)


K = TypeVar("K")   # the key: str, or str | None where "no row" is news


class RowMessage(Message, Generic[K]):
    """A message about one of a FilterTable's rows. `control` is the table: what Textual's
    `@on(message, selector)` matches, so a handler can pick a table by its id."""

    def __init__(self, table: "FilterTable", key: K) -> None:
        super().__init__()
        self.table = table
        self.key = key

    @property
    def control(self) -> "FilterTable":
        return self.table


class FilterTable(QueryBox):
    """A table of rows keyed by id, with a filter input that `/` opens and escape closes.

    Rows are replaced wholesale by `set_rows`; the cursor stays on the same key so a
    live-updating list does not jump under the person's feet.
    """

    DEFAULT_CSS = """
    FilterTable { height: 1fr; }
    FilterTable > Input { display: none; height: 3; }
    FilterTable.-filtering > Input { display: block; }
    FilterTable > VimTable { height: 1fr; }
    """
    OPEN_CLASS = "-filtering"
    ACTIONS = (Action("filter", "slash", "Filter", key_display="/"),)
    BINDINGS = bindings(ACTIONS)

    class Selected(RowMessage[str | None]):
        """The highlighted row changed (key None when the list is empty)."""

    class Activated(RowMessage[str]):
        """Enter (or a click) on a row."""

    def __init__(self, columns: Sequence[str], **kw: Any) -> None:
        super().__init__(**kw)
        self._columns = list(columns)
        self._rows: list[tuple[str, tuple[Any, ...]]] = []
        self._filter = ""
        self._last_key: str | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter…  (enter: keep, escape: clear)")
        table = VimTable(cursor_type="row", zebra_stripes=True)
        for c in self._columns:
            table.add_column(c, key=c)
        yield table

    @property
    def table(self) -> VimTable:
        return self.query_one(VimTable)

    @property
    def current_key(self) -> str | None:
        t = self.table
        if not t.row_count:
            return None
        try:
            return str(t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - no rows or no cursor: no key
            return None

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self._rows]

    def set_rows(self, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
        if rows == self._rows:
            return
        self._rows = rows
        self._redraw()

    def _redraw(self) -> None:
        t = self.table
        keep = self.current_key
        needle = self._filter.lower()
        shown = [(k, cells) for k, cells in self._rows
                 if not needle or any(needle in str(c).lower() for c in (k, *cells))]
        t.clear()
        for k, cells in shown:
            t.add_row(*cells, key=k)
        if keep is not None:
            for i, (k, _) in enumerate(shown):
                if k == keep:
                    t.move_cursor(row=i, animate=False)
                    break
        self._announce()

    def _announce(self) -> None:
        key = self.current_key
        if key != self._last_key:
            self._last_key = key
            self.post_message(self.Selected(self, key))

    def focus_table(self) -> None:
        self.table.focus()

    def select(self, key: str) -> None:
        for i, k in enumerate(self.table.rows):
            if k.value == key:
                self.table.move_cursor(row=i, animate=False)
                self._announce()
                return

    def action_filter(self) -> None:
        self.open_query()

    # ---- the filter (QueryBox) ------------------------------------------------------------
    def query_changed(self, text: str) -> None:
        self._filter = text
        self._redraw()

    @property
    def query_target(self) -> VimTable:
        return self.table

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Activated(self, str(event.row_key.value)))
