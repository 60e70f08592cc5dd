"""The command palette (ctrl+p): every action of every pane, plus switching panes."""
from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

APP_COMMANDS = [
    ("show_pane('datasets')", "Go to Datasets"),
    ("show_pane('jobs')", "Go to Jobs"),
    ("show_pane('models')", "Go to Models"),
    ("show_pane('generator')", "Go to Generator"),
    ("cycle_image_mode", "Cycle the image mode (half-blocks, kitty, sixel)"),
    ("help", "Show the keys of this pane"),
]


class GenmlCommands(Provider):
    """Lists (pane, action, description) for every pane; running one switches to the pane first."""

    def _all(self) -> list[tuple[str, str, Any]]:
        app: Any = self.app
        out: list[tuple[str, str, Any]] = [(desc, f"app.{action}", None) for action, desc in APP_COMMANDS]
        for pane_id, pane in app.panes.items():
            for action, desc in pane.COMMANDS:
                out.append((f"{pane.TITLE}: {desc}", action, pane_id))
        return out

    def _run(self, action: str, pane_id: str | None) -> None:
        app: Any = self.app
        if pane_id is None:
            app.call_later(app.run_action, action.removeprefix("app."))
            return
        app.show_pane(pane_id)
        app.call_later(app.run_action, action, app.panes[pane_id])

    async def discover(self) -> Hits:
        for text, action, pane_id in self._all():
            yield DiscoveryHit(text, partial(self._run, action, pane_id))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, action, pane_id in self._all():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self._run, action, pane_id))
