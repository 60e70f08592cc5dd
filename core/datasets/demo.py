"""A procedural demo dataset: coloured shapes on gradients, made offline.

It lets a new user try the whole flow (train, watch, deploy, generate) without images of
their own, and gives tests a dataset in seconds. Image `index` of seed `seed` is always the
same picture (random.Random seeded per image), so datasets are reproducible and can be
rendered in parallel in any order.
"""
from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from core.datasets.images import Options, Processed, Skip, prepare, to_rgb

RENDER_SIZE = 128
SHAPES = ("ellipse", "rectangle", "triangle", "star", "ring")


def _colour(rng: random.Random, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


def render(seed: int, index: int, size: int = RENDER_SIZE) -> Image.Image:
    """One demo picture: a two-colour linear gradient at a random angle, then 1-3 shapes."""
    rng = random.Random(seed * 1_000_003 + index)
    big = math.ceil(size * 1.42)                 # covers the square at any rotation
    mask = Image.linear_gradient("L").resize((big, big), Image.Resampling.BILINEAR)
    mask = mask.rotate(rng.uniform(0, 360), resample=Image.Resampling.BILINEAR)
    off = (big - size) // 2
    mask = mask.crop((off, off, off + size, off + size))
    a = Image.new("RGB", (size, size), _colour(rng, 20, 235))
    b = Image.new("RGB", (size, size), _colour(rng, 20, 235))
    im = Image.composite(a, b, mask)
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(SHAPES)
        r = rng.uniform(0.12, 0.32) * size
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        fill = _colour(rng)
        box = (cx - r, cy - r, cx + r, cy + r)
        if kind == "ellipse":
            draw.ellipse((cx - r, cy - r * rng.uniform(0.6, 1.0), cx + r, cy + r), fill=fill)
        elif kind == "rectangle":
            draw.rectangle((cx - r, cy - r * rng.uniform(0.5, 1.0), cx + r, cy + r), fill=fill)
        elif kind == "ring":
            draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
        else:
            points = 3 if kind == "triangle" else 10
            turn = rng.uniform(0, 2 * math.pi)
            pts = []
            for k in range(points):
                radius = r if kind == "triangle" or k % 2 == 0 else r * 0.45
                ang = turn + 2 * math.pi * k / points
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
