"""`?`: every binding of the pane in front (and the app-wide ones), in one page."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    AUTO_FOCUS = "*"
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 72; max-width: 95%; height: auto; max-height: 90%;
        border: round $accent; background: $panel; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, title: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self._title = title
        self._sections = sections

    def compose(self) -> ComposeResult:
        lines: list[str] = []
        for name, rows in self._sections:
            if not rows:
                continue
            lines.append(f"[b]{name}[/b]")
            lines += [f"  [b $accent]{k:<14}[/] {d}" for k, d in rows]
            lines.append("")
        lines.append("[dim]escape closes this page[/dim]")
        with VerticalScroll() as v:
            v.border_title = self._title
            yield Static("\n".join(lines))
