"""One registry of actions per pane: the keys, the footer, the command palette and `?` help.

Before, each pane spelled its actions three times (BINDINGS, a COMMANDS list for the
palette, and the help rows read back from the bindings); they drifted. Now a pane
declares `ACTIONS = (Action(...), ...)` and the Pane base makes its BINDINGS from them
(another widget writes `BINDINGS = bindings(ACTIONS)`); the palette (tui/commands.py)
and the help page (tui/screens/help.py) read the same tuple.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from textual.binding import Binding, BindingType

_KEY_NAMES = {"question_mark": "?", "slash": "/", "left_square_bracket": "[", "right_square_bracket": "]",
              "left": "←", "right": "→", "up": "↑", "down": "↓", "space": "space"}


@dataclass(frozen=True)
class Action:
    """One thing a person can do: `action` names the `action_*` method (with arguments, if any)."""

    action: str
    keys: str                       # Textual key names, comma-separated ("r,space")
    label: str                      # short: the footer and the help page
    description: str = ""           # longer: the command palette ("" = not listed there)
    footer: bool = True             # shown in the footer
    help: bool = True               # listed on the `?` page
    key_display: str | None = None  # how the keys are written for people ("h/←")

    @property
    def keys_text(self) -> str:
        """The keys as a person types them: "r/space", "?", "/"."""
        if self.key_display:
            return self.key_display
        return "/".join(_KEY_NAMES.get(k.strip(), k.strip()) for k in self.keys.split(","))

    def binding(self) -> Binding:
        return Binding(self.keys, self.action, self.label, show=self.footer, key_display=self.key_display)


def bindings(actions: Iterable[Action]) -> list[BindingType]:
    """The BINDINGS list for a widget, built from its actions."""
    return [a.binding() for a in actions]


def palette_entries(actions: Iterable[Action]) -> list[tuple[str, str]]:
    """(action, description) for the command palette."""
    return [(a.action, a.description) for a in actions if a.description]


def help_rows(actions: Iterable[Action]) -> list[tuple[str, str]]:
    """(keys, label) for the `?` page."""
    return [(a.keys_text, a.label) for a in actions if a.help]
