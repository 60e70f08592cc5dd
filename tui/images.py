"""Images in the terminal: half-blocks everywhere, real pixels where the terminal can.

rich-pixels half-blocks (`▄`, fg = lower pixel, bg = upper) are the baseline: they work
in every truecolour terminal, over SSH and inside tmux. textual-image adds the kitty
graphics protocol (TGP) and sixel; it queries the terminal when it is imported, which
must happen before the app starts and costs a round trip, so it is imported only when a
pixel mode is forced or the terminal looks like one that speaks a graphics protocol.

Mode choice: `--image-mode` flag > `GENML_IMAGE_MODE` > detection. A key (`m`) cycles
through the modes that are available; a badge on each image names the one in use.
"""
from __future__ import annotations

import io
import os
import sys
from typing import Any

from PIL import Image as PILImage
from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

HALFBLOCK = "halfblock"
TGP = "tgp"
SIXEL = "sixel"
MODES = (HALFBLOCK, TGP, SIXEL)
ALIASES = {"halfblocks": HALFBLOCK, "half": HALFBLOCK, "blocks": HALFBLOCK, "kitty": TGP, "auto": "auto"}

# Terminals known to speak a graphics protocol; anything else gets half-blocks without a query.
_GRAPHIC_TERMS = ("kitty", "wezterm", "ghostty", "foot", "mlterm", "contour", "konsole", "iterm")


def normalise(mode: str | None) -> str:
    """Map a user's spelling onto a mode name; raises ValueError for an unknown one."""
    if not mode:
        return "auto"
    m = ALIASES.get(mode.strip().lower(), mode.strip().lower())
    if m != "auto" and m not in MODES:
        raise ValueError(f"unknown image mode {mode!r}: use auto, {', '.join(MODES)}")
    return m


def _looks_graphical() -> bool:
    hay = " ".join(os.environ.get(k, "") for k in ("TERM", "TERM_PROGRAM", "LC_TERMINAL")).lower()
    return any(t in hay for t in _GRAPHIC_TERMS)


def detect(requested: str | None) -> tuple[str, list[str]]:
    """Pick the mode to start in and the modes that `m` may cycle through.

    Must run before App.run: textual-image talks to the terminal at import time.
    """
    mode = normalise(requested)
    available = [HALFBLOCK]
    if mode == HALFBLOCK:
        return HALFBLOCK, available
    if mode in (TGP, SIXEL) or (mode == "auto" and sys.__stdout__ is not None and sys.__stdout__.isatty()
                                and _looks_graphical()):
        try:
            from textual_image import renderable as ti_renderable  # runs the terminal query
            from textual_image.renderable.sixel import Image as SixelR
            from textual_image.renderable.tgp import Image as TGPR
            import textual_image.widget  # noqa: F401  (fills the cell-size cache while we still can)
        except Exception:  # noqa: BLE001  - a terminal that cannot answer: stay with half-blocks
            return HALFBLOCK, available
        if ti_renderable.Image is TGPR:
            available.append(TGP)
        if ti_renderable.Image is SixelR:
            available.append(SIXEL)
        if mode in (TGP, SIXEL):          # forced: trust the person even if the query said no
            if mode not in available:
                available.append(mode)
            return mode, available
        return available[-1], available
    return HALFBLOCK, available


def to_pil(data: bytes | PILImage.Image | Any) -> PILImage.Image:
    """PNG/JPEG bytes, a PIL image or an (H, W, 3) uint8 array -> an RGB PIL image."""
    if isinstance(data, PILImage.Image):
        return data if data.mode == "RGB" else data.convert("RGB")
    if isinstance(data, (bytes, bytearray)):
        img = PILImage.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")
    return PILImage.fromarray(data).convert("RGB")


def fit(size: tuple[int, int], cols: int, rows: int, whole: bool = True) -> tuple[int, int]:
    """The largest pixel size, aspect kept, that fits cols x rows half-block cells.

    `whole`: enlarge by whole multiples only (every pixel the same size); the zoom turns it
    off above 2x, where the largest size matters more than equal pixels."""
    w, h = size
    if cols <= 0 or rows <= 0 or w <= 0 or h <= 0:
        return 0, 0
    scale = min(cols / w, (rows * 2) / h)
    if scale >= 1 and (whole or scale < 2):     # whole multiples keep pixels crisp and square
        scale = int(scale)
    tw, th = max(1, int(w * scale)), max(2, int(h * scale))
    return tw, th - (th % 2)


class HalfBlocks(Widget):
    """An image drawn with rich-pixels half-blocks, scaled nearest-neighbour to its space."""

    DEFAULT_CSS = "HalfBlocks { width: 1fr; height: 1fr; }"

    def __init__(self, image: PILImage.Image | None = None, whole: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self._image = image
        self._whole = whole
        self._cache: tuple[tuple[int, int, int], RenderableType] | None = None

    def set_image(self, image: PILImage.Image | None) -> None:
        self._image = image
        self._cache = None
        self.refresh()

    def render(self) -> RenderableType:
        from rich.align import Align
        from rich_pixels import Pixels
        if self._image is None:
            return Text("")
        cols, rows = self.content_size.width, self.content_size.height
        key = (id(self._image), cols, rows)
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        tw, th = fit(self._image.size, cols, rows, self._whole)
        if not tw:
            return Text("")
        out = Align.center(Pixels.from_image(self._image, resize=(tw, th)))
        self._cache = (key, out)
        return out


MIN_THUMB_PX = 16     # a thumbnail in a grid is drawn at least this many pixels across (or at its own size)
GRID_GAP = 1          # pixels between thumbnails


def split_grid(image: PILImage.Image, columns: int, rows: int | None = None, *, gap: int = 0,
               margin: int = 0) -> list[PILImage.Image]:
    """Cut a grid image into its cells (row by row). `columns` x `rows` cells of equal size,
    `gap` pixels between them and `margin` around them; cells left black are dropped."""
    columns = max(1, columns)
    cw = (image.width - 2 * margin - (columns - 1) * gap) // columns
    if cw <= 0:
        return [image]
    if rows is None:
        rows = max(1, (image.height - 2 * margin + gap) // (cw + gap))
    ch = (image.height - 2 * margin - (rows - 1) * gap) // rows
    cells = []
    for r in range(rows):
        for c in range(columns):
            x, y = margin + c * (cw + gap), margin + r * (ch + gap)
            cell = image.crop((x, y, x + cw, y + ch))
            if cell.getbbox() is not None:          # an all-black cell is padding
                cells.append(cell)
    return cells or [image]


def grid_shape(n: int, cell: tuple[int, int], cols: int, rows: int, min_px: int = MIN_THUMB_PX,
               gap: int = GRID_GAP) -> tuple[int, int]:
    """How many thumbnails, across and down, to show in cols x rows half-block cells.

    As many of the n as fit while each stays at least `min_px` pixels across (or its own
    size when smaller): at 80x24 that is a few large thumbnails, on a wide terminal all of
    them. Among layouts showing the same number, the one with the larger thumbnails wins.
    """
    w, h = cell
    floor = min(min_px, w, h)
    best, best_key = (1, 1), (0, 0.0)
    for c in range(1, n + 1):
        for r in range(1, -(-n // c) + 1):
            width, height = c * w + (c - 1) * gap, r * h + (r - 1) * gap
            scale = min(cols / width, rows * 2 / height) if width and height else 0.0
            if scale * min(w, h) < floor and (c, r) != (1, 1):
                continue
            key = (min(n, c * r), scale - 1e-3 * (c * r - min(n, c * r)))   # waste little space
            if key > best_key:
                best, best_key = (c, r), key
    return best


def tile(images: list[PILImage.Image], cols: int, gap: int = GRID_GAP,
         background: tuple[int, int, int] = (0, 0, 0)) -> PILImage.Image:
    """Images of one size side by side, `cols` across, `gap` pixels apart."""
    w, h = images[0].size
    rows = -(-len(images) // cols)
    sheet = PILImage.new("RGB", (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), background)
    for i, im in enumerate(images):
        sheet.paste(im if im.size == (w, h) else im.resize((w, h), PILImage.Resampling.NEAREST),
                    ((i % cols) * (w + gap), (i // cols) * (h + gap)))
    return sheet


class ImageView(Widget):
    """An image or a grid of images, drawn in the app's current image mode, with a badge.

    A grid (`set_cells`) adapts to the space it has: as many cells as fit at a readable
    size, re-laid out when the widget is resized; `z` (or a click) opens the zoom, which
    steps through the cells one at a time (tui/screens/zoom.py).
    """

    DEFAULT_CSS = """
    ImageView { width: 1fr; height: 1fr; }
    ImageView > .placeholder { color: $text-muted; width: 1fr; height: 1fr; content-align: center middle; }
    """
    mode: reactive[str] = reactive(HALFBLOCK, recompose=True)

    class ZoomRequested(Message):
        """A click on the image: the app opens the zoom on it."""

        def __init__(self, view: "ImageView") -> None:
            super().__init__()
            self.view = view

    def __init__(self, placeholder: str = "", *, adaptive: bool = True, zoomable: bool = True,
                 image: PILImage.Image | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self._image: PILImage.Image | None = image     # drawn by the first compose (no second mount)
        self._placeholder = placeholder
        self.cells: list[PILImage.Image] = [image] if image is not None else []   # what the zoom steps through
        self.labels: list[str] = []              # one per cell ("seed 12"), may be empty
        self.title = ""                          # what the zoom says it shows
        self.adaptive = adaptive
        self.zoomable = zoomable
        self._layout: tuple[int, int, int, int] | None = None    # (cols, rows, across, down) shown
        self.set_reactive(ImageView.mode, getattr(self.app_or_none(), "image_mode", HALFBLOCK))

    def app_or_none(self) -> Any:
        try:
            return self.app
        except Exception:  # noqa: BLE001  - built outside an app (unit use)
            return None

    @property
    def image(self) -> PILImage.Image | None:
        return self._image

    @property
    def shown(self) -> int:
        """How many cells the adaptive grid shows now."""
        if len(self.cells) <= 1 or self._layout is None:
            return len(self.cells)
        return min(len(self.cells), self._layout[2] * self._layout[3])

    def _badge(self) -> str:
        parts = []
        if len(self.cells) > 1:
            parts.append(f"{self.shown} of {len(self.cells)}")
        if self.cells and self.zoomable:
            parts.append("z zoom")
        return " · ".join(parts + [self.mode])

    def compose(self) -> ComposeResult:
        self.border_subtitle = self._badge()
        if self._image is None:
            yield Static(self._placeholder, classes="placeholder")
        elif self.mode == HALFBLOCK:
            yield HalfBlocks(self._image, whole=self.adaptive)
        else:
            yield _pixel_widget(self.mode, self._image)

    def set_image(self, data: bytes | PILImage.Image | Any | None, placeholder: str | None = None,
                  *, title: str = "", label: str = "") -> None:
        """Show one image (its own zoom has one cell)."""
        image = None if data is None else to_pil(data)
        self.cells, self.labels, self.title = ([image], [label] if label else [], title) if image else ([], [], "")
        self._layout = None
        self._display(image, placeholder)

    def set_cells(self, cells: list[PILImage.Image], labels: list[str] | None = None, *, title: str = "",
                  placeholder: str | None = None) -> None:
        """Show a grid of images laid out for the space the widget has now (and again on resize)."""
        self.cells, self.labels, self.title = list(cells), list(labels or []), title
        self._layout = None
        if len(self.cells) <= 1 or not self.adaptive:
            self._display(self.cells[0] if len(self.cells) == 1 else (tile(self.cells, 4) if self.cells else None),
                          placeholder)
            return
        self._display(self._composite(), placeholder)

    def _composite(self) -> PILImage.Image:
        cols, rows = self.content_size.width, self.content_size.height
        if cols <= 0 or rows <= 0:          # not laid out yet: on_resize comes back here
            cols, rows = 32, 16
        across, down = grid_shape(len(self.cells), self.cells[0].size, cols, rows)
        self._layout = (cols, rows, across, down)
        return tile(self.cells[: across * down], across)

    def on_resize(self) -> None:
        if len(self.cells) > 1 and self.adaptive and self._layout is not None \
                and self._layout[:2] != (self.content_size.width, self.content_size.height):
            self._display(self._composite())

    def on_click(self) -> None:
        if self.cells and self.zoomable:
            self.post_message(self.ZoomRequested(self))

    def _display(self, image: PILImage.Image | None, placeholder: str | None = None) -> None:
        """Replace what is drawn; in place (no remount) in half-block mode."""
        if placeholder is not None:
            self._placeholder = placeholder
        had = self._image is not None
        self._image = image
        self.border_subtitle = self._badge()
        if had and image is not None and self.mode == HALFBLOCK:
            try:
                self.query_one(HalfBlocks).set_image(image)
                return
            except Exception:  # noqa: BLE001  - not composed yet
                pass
        self.refresh(recompose=True)


def _pixel_widget(mode: str, image: PILImage.Image) -> Widget:
    """A textual-image widget; upscaled with NEAREST first so small images stay crisp."""
    from textual_image.widget import SixelImage, TGPImage
    big = image.resize((image.width * 8, image.height * 8), PILImage.Resampling.NEAREST)
    cls = TGPImage if mode == TGP else SixelImage
    w = cls(big)
    w.styles.width = "auto"
    w.styles.height = "1fr"
    return w
