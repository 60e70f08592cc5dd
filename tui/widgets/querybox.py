"""A widget with a one-line query above its content: the list filter, the log search.

Both behave alike on purpose, so the keys mean the same everywhere: `/` opens the box,
each keystroke re-runs the query, enter keeps it (an empty one closes the box), escape
clears and closes it; the focus then goes back to what the query narrows.
"""
from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input


class QueryBox(Vertical):
    """Subclasses yield one Input (hidden by their CSS unless OPEN_CLASS is set) and say
    what a query does (`query_changed`) and what gets the focus back (`query_target`)."""

    OPEN_CLASS: ClassVar[str] = "-querying"     # the CSS class that shows the Input

    def query_changed(self, text: str) -> None:
        """Apply the query as typed so far ("" clears it)."""
        raise NotImplementedError

    @property
    def query_target(self) -> Widget:
        """The widget the query narrows: it gets the focus when the box is left."""
        raise NotImplementedError

    def open_query(self) -> None:
        self.add_class(self.OPEN_CLASS)
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _query_typed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_changed(event.value)

    @on(Input.Submitted)
    def _query_kept(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.remove_class(self.OPEN_CLASS)
        self.query_target.focus()

    def on_key(self, event: Any) -> None:
        if event.key == "escape" and self.query_one(Input).has_focus:
            event.stop()
            self.query_one(Input).value = ""
            self.remove_class(self.OPEN_CLASS)
            self.query_changed("")
            self.query_target.focus()
