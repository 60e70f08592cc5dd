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
            from textual_image import renderable as ti_renderable  # noqa: F401  (runs the terminal query)
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


def fit(size: tuple[int, int], cols: int, rows: int) -> tuple[int, int]:
    """The largest pixel size, aspect kept, that fits cols x rows half-block cells."""
    w, h = size
    if cols <= 0 or rows <= 0 or w <= 0 or h <= 0:
        return 0, 0
    scale = min(cols / w, (rows * 2) / h)
    if scale >= 1:               # whole multiples keep pixels crisp and square
        scale = int(scale)
    tw, th = max(1, int(w * scale)), max(2, int(h * scale))
    return tw, th - (th % 2)


class HalfBlocks(Widget):
    """An image drawn with rich-pixels half-blocks, scaled nearest-neighbour to its space."""

    DEFAULT_CSS = "HalfBlocks { width: 1fr; height: 1fr; }"

    def __init__(self, image: PILImage.Image | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self._image = image
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
        tw, th = fit(self._image.size, cols, rows)
        if not tw:
            return Text("")
        out = Align.center(Pixels.from_image(self._image, resize=(tw, th)))
        self._cache = (key, out)
        return out


class ImageView(Widget):
    """One image, drawn in the app's current image mode, with a badge naming the mode."""

    DEFAULT_CSS = """
    ImageView { width: 1fr; height: 1fr; }
    ImageView > .placeholder { color: $text-muted; width: 1fr; height: 1fr; content-align: center middle; }
    """
    mode: reactive[str] = reactive(HALFBLOCK, recompose=True)

    def __init__(self, placeholder: str = "", **kw: Any) -> None:
        super().__init__(**kw)
        self._image: PILImage.Image | None = None
        self._placeholder = placeholder
        self.set_reactive(ImageView.mode, getattr(self.app_or_none(), "image_mode", HALFBLOCK))

    def app_or_none(self) -> Any:
        try:
            return self.app
        except Exception:  # noqa: BLE001  - built outside an app (unit use)
            return None

    @property
    def image(self) -> PILImage.Image | None:
        return self._image

    def compose(self) -> ComposeResult:
        self.border_subtitle = self.mode
        if self._image is None:
            yield Static(self._placeholder, classes="placeholder")
        elif self.mode == HALFBLOCK:
            yield HalfBlocks(self._image)
        else:
            yield _pixel_widget(self.mode, self._image)

    def set_image(self, data: bytes | PILImage.Image | Any | None, placeholder: str | None = None) -> None:
        """Show a new image; replaces the old one in place (no remount) in half-block mode."""
        if placeholder is not None:
            self._placeholder = placeholder
        had = self._image is not None
        self._image = None if data is None else to_pil(data)
        if had and self._image is not None and self.mode == HALFBLOCK:
            try:
                self.query_one(HalfBlocks).set_image(self._image)
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
