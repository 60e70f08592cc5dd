"""A small grid of thumbnails per dataset, for the TUI's datasets pane and `dataset show`.

Which images appear is chosen by content hash (the smallest hashes), not by folder order,
so the sheet is a fair sample of the whole dataset and the same for the same content.
"""
from __future__ import annotations

import heapq
import io

from PIL import Image

THUMB = 64
COLUMNS = 8
ROWS = 6
GAP = 2


class Sampler:
    """Keeps the `limit` images with the smallest sha256 seen so far (bounded memory)."""

    def __init__(self, limit: int = COLUMNS * ROWS) -> None:
        self.limit = limit
        self._heap: list[tuple[int, str, bytes]] = []   # max-heap on the hash via negation

    def offer(self, sha256: str, png: bytes) -> None:
        key = -int(sha256[:16], 16)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, (key, sha256, png))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, sha256, png))

    def images(self) -> list[bytes]:
        return [png for _, _, png in sorted(self._heap, key=lambda t: t[1])]


def thumbnail(png: bytes, size: int = THUMB) -> Image.Image:
    """The centre square of a stored image (what a centre-cropped model sees), scaled."""
    im = Image.open(io.BytesIO(png)).convert("RGB")
    w, h = im.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return im.resize((size, size), Image.Resampling.BICUBIC, box=box)


def render(pngs: list[bytes], columns: int = COLUMNS, thumb: int = THUMB) -> bytes | None:
    if not pngs:
        return None
    columns = min(columns, len(pngs))
    rows = -(-len(pngs) // columns)
    sheet = Image.new("RGB", (columns * (thumb + GAP) + GAP, rows * (thumb + GAP) + GAP), (24, 24, 24))
    for i, png in enumerate(pngs):
        r, c = divmod(i, columns)
        sheet.paste(thumbnail(png, thumb), (GAP + c * (thumb + GAP), GAP + r * (thumb + GAP)))
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    return buf.getvalue()
