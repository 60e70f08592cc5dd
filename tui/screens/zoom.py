"""The zoom: any image on screen, one cell at a time, as large as the terminal allows.

A sample grid, a contact sheet, the generator's image or a reconstruction: `z` (or a
click) on it opens this screen over the whole terminal. Grids step cell by cell; `g`
shows the whole grid at full size. It draws in the app's image mode (half-blocks, kitty
graphics or sixel) like every other image, and `m` still cycles the mode.
"""
from __future__ import annotations

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.actions import Action, bindings
from tui.images import ImageView, tile


class ZoomScreen(ModalScreen[int]):
    """Returns the index of the cell it was showing when closed (the caller may follow it)."""

    DEFAULT_CSS = """
    ZoomScreen { background: $background; }
    ZoomScreen > #zoom-title { height: 1; padding: 0 1; background: $panel; }
    ZoomScreen > ImageView#zoom-image { height: 1fr; width: 1fr; border: none; }
    ZoomScreen > #zoom-keys { height: 1; padding: 0 1; color: $text-muted; background: $panel; }
    """
    ACTIONS = (
        Action("next", "l,right,n,space", "Next cell", key_display="→/l"),
        Action("previous", "h,left,p", "Previous cell", key_display="←/h"),
        Action("first", "home", "First cell", footer=False),
        Action("last", "end", "Last cell", footer=False),
        Action("whole", "g", "Whole grid"),
        Action("image_mode", "m", "Image mode", footer=False),
        Action("close", "escape,z,q", "Close", key_display="esc/z"),
    )
    BINDINGS = bindings(ACTIONS)

    def __init__(self, cells: list[PILImage.Image], labels: list[str] | None = None, title: str = "",
                 index: int = 0) -> None:
        super().__init__()
        self.cells = cells
        self.labels = labels or []
        self.title_text = title
        self.index = max(0, min(index, len(cells) - 1))
        self.whole = False
        self._keys = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="zoom-title")
        yield ImageView("", adaptive=False, zoomable=False, image=self.cells[self.index], id="zoom-image")
        yield Static("", id="zoom-keys")

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        view = self.query_one(ImageView)
        n = len(self.cells)
        if self.whole and n > 1:
            cols = min(8, max(1, round(n ** 0.5)))
            view.set_image(tile(self.cells, cols))
            where = f"all {n}"
        else:
            view.set_image(self.cells[self.index])
            where = f"{self.index + 1} of {n}" if n > 1 else ""
            if self.index < len(self.labels) and self.labels[self.index]:
                where += ("  ·  " if where else "") + self.labels[self.index]
        w, h = self.cells[self.index].size
        title = "  ·  ".join(p for p in (where, f"{w}x{h} px", self.title_text) if p)
        self.query_one("#zoom-title", Static).update(f"[b]zoom[/b]  {title}")
        keys = f"←/→ step   g whole grid   m image mode ({view.mode})   esc close"
        if keys != self._keys:                # an unchanged line is not laid out again
            self._keys = keys
            self.query_one("#zoom-keys", Static).update(keys)

    def action_next(self) -> None:
        self.whole = False
        self.index = (self.index + 1) % len(self.cells)
        self._show()

    def action_previous(self) -> None:
        self.whole = False
        self.index = (self.index - 1) % len(self.cells)
        self._show()

    def action_first(self) -> None:
        self.whole, self.index = False, 0
        self._show()

    def action_last(self) -> None:
        self.whole, self.index = False, len(self.cells) - 1
        self._show()

    def action_whole(self) -> None:
        self.whole = not self.whole
        self._show()

    def action_image_mode(self) -> None:
        """The app's `m` (a modal screen keeps the app's keys from reaching it): cycle, then redraw."""
        from tui.widgets.pane import genml_app
        genml_app(self).action_cycle_image_mode()
        self._show()

    def action_close(self) -> None:
        self.dismiss(self.index)
