"""The command palette (ctrl+p): every action of every pane, plus the app's own.

The entries come from the same Action registries as the keys and the `?` page
(tui/actions.py), so a new action appears in all three at once.
"""
from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.widget import Widget

from tui.actions import palette_entries


class GenmlCommands(Provider):
    """Lists (pane, action, description) for every pane; running one switches to the pane first."""

    def _all(self) -> list[tuple[str, str, tuple[str, Widget | None] | None]]:
        from tui.widgets.pane import genml_app
        app = genml_app(self)
        out: list[tuple[str, str, tuple[str, Widget | None] | None]] = [(desc, action, None)
                                                  for action, desc in palette_entries(app.ACTIONS)]
        for pane_id, pane in app.panes.items():
            for action, desc in palette_entries(pane.ACTIONS):
                out.append((f"{pane.TITLE}: {desc}", action, (pane_id, None)))
            # the widgets inside a pane (its log view, its images) have actions of their own
            for node in pane.query("*") if pane.is_mounted else []:
                for action, desc in palette_entries(getattr(type(node), "ACTIONS", ())):
                    out.append((f"{pane.TITLE}: {desc}", action, (pane_id, node)))
        return out

    def _run(self, action: str, where: tuple[str, Widget | None] | None) -> None:
        from tui.widgets.pane import genml_app
        app = genml_app(self)
        if where is None:
            app.call_later(app.run_action, action)
            return
        pane_id, node = where
        app.show_pane(pane_id)
        app.call_later(app.run_action, action, node or app.panes[pane_id])

    async def discover(self) -> Hits:
        for text, action, where in self._all():
            yield DiscoveryHit(text, partial(self._run, action, where))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, action, where in self._all():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self._run, action, where))
