"""A procedural demo dataset: one coloured shape on a plain background, made offline.

It lets a new user try the whole flow (train, watch, deploy, generate) without images of
their own, and gives tests a dataset in seconds. Each picture is one large shape (disc,
square, triangle, star or ring) in one of eight colours, upright (tilted at most 9
degrees), sized and placed a little off centre on one of six plain backgrounds: variety a
small model can learn within minutes on a CPU, so the first run shows shapes a person
recognises rather than blobs. Gradient backgrounds with up to three overlapping shapes
took longer than a first run has; so did shapes turned at any angle, which a 5-minute
model drew as rounded blobs (docs/trainer.md, "Upright shapes"), and stars as small as
the other shapes with thin arms: stars are now larger, their arms thicker, and read as
stars after 5 minutes where the old ones did not; a cross in their place did worse
("Three sets on one morning").
Image `index` of seed `seed` is always the same picture (random.Random seeded per image),
so datasets are reproducible and can be rendered in parallel in any order.
"""
from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from core.datasets.images import Options, Processed, Skip, prepare, to_rgb

RENDER_SIZE = 128
# Which pictures `render` draws: 2 since the shapes stand upright, 3 since stars are
# larger with thicker arms. Folders built outside a
# workspace and kept between runs (benchmarks/quality.py's cache) are named with it, so a
# change to `render` builds a new set instead of reusing the old one.
VERSION = 3
SHAPES = ("disc", "square", "triangle", "star", "ring")
COLOURS = ((220, 40, 40), (245, 140, 20), (240, 205, 20), (40, 170, 60),
           (20, 170, 190), (40, 80, 220), (140, 60, 200), (235, 80, 170))
BACKGROUNDS = ((250, 250, 245), (225, 225, 225), (40, 40, 48), (235, 225, 200),
               (200, 225, 240), (20, 60, 60))
# The angle of a polygon's first corner that stands it upright (image y points down):
# a triangle and a star point up, a square sits on a side.
UPRIGHT = {"square": math.pi / 4, "triangle": -math.pi / 2, "star": -math.pi / 2}
MAX_TILT = math.radians(9)
STAR_INNER = 0.5                # the inner corners' radius over the tips': chunky arms


def render(seed: int, index: int, size: int = RENDER_SIZE) -> Image.Image:
    """One demo picture. The shape stays inside the centre 75% (the crop training uses)."""
    rng = random.Random(seed * 1_000_003 + index)
    im = Image.new("RGB", (size, size), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(im)
    kind, fill = rng.choice(SHAPES), rng.choice(COLOURS)
    r = rng.uniform(0.18, 0.28) * size
    if kind == "star":          # thin arms: a 5-minute model drew stars of the others' size
        r = size * (0.25 + 0.035 * (r / size - 0.18) / 0.10)   # as blobs; 0.25-0.285 here
    cx = size * (0.5 + rng.uniform(-0.08, 0.08))
    cy = size * (0.5 + rng.uniform(-0.08, 0.08))
    tilt = rng.uniform(-MAX_TILT, MAX_TILT)
    if kind == "disc":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r / 2.5)))
    else:
        corners = {"square": 4, "triangle": 3, "star": 10}[kind]
        pts = []
        for k in range(corners):
            radius = r * STAR_INNER if kind == "star" and k % 2 else r * (1.1 if kind == "square" else 1.0)
            ang = UPRIGHT[kind] + tilt + 2 * math.pi * k / corners
            pts.append((cx + radius * math.cos(ang), cy + radius * math.sin(ang)))
        draw.polygon(pts, fill=fill)
    return im


def demo_name(seed: int, index: int) -> str:
    """The `image/filename` a demo image carries (there is no source file)."""
    return f"demo/{seed}/{index:06d}.png"


def process_demo(seed: int, index: int, size: int, options: Options) -> Processed:
    """Render and store one demo image exactly like a file from disk would be."""
    rel = demo_name(seed, index)
    try:
        im = to_rgb(render(seed, index, size), options.background)
        return prepare(rel, im, im.size, options)
    except Skip as exc:
        return Processed(rel=rel, reason=str(exc))
