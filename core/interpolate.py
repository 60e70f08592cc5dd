"""Walks between two embeddings, and saving them as animations (GIF or APNG).

The end points of a walk are given as people have them: a seed (the generator's
`default_rng(seed).standard_normal(E)`), an embedding file (JSON, JSON Lines, .npy, as
`genml generate --embedding-file` reads), or an image, which is encoded first. The
path between them is spherical (slerp), which keeps every frame at the norm a standard
normal embedding has; a straight line passes near the origin, where the generator draws
washed-out images.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from core.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
ANIMATION_FORMATS = {".gif": "GIF", ".png": "PNG", ".apng": "PNG"}
MAX_FRAMES = 1024


def embedding(seed: int, size: int) -> "np.ndarray":
    """The random embedding a seed names: numpy's default_rng(seed).standard_normal(E)."""
    import numpy as np
    return np.random.default_rng(seed).standard_normal(size).astype(np.float32)


def slerp(a: "np.ndarray", b: "np.ndarray", steps: int) -> "np.ndarray":
    """Spherical interpolation from a to b in `steps` points (both ends included)."""
    import numpy as np
    ts = np.linspace(0.0, 1.0, max(2, steps))
    na, nb = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = math.acos(float(np.clip(np.dot(na, nb), -1.0, 1.0)))
    if omega < 1e-6:
        return np.stack([(1 - t) * a + t * b for t in ts]).astype(np.float32)
    so = math.sin(omega)
    return np.stack([(math.sin((1 - t) * omega) / so) * a + (math.sin(t * omega) / so) * b
                     for t in ts]).astype(np.float32)


def load_embeddings(path: Path, size: int) -> "np.ndarray":
    """A .npy array (N, E), a JSON list of lists, or JSON Lines of {"embeddings": [...]}/lists."""
    import numpy as np
    try:
        if path.suffix == ".npy":
            z = np.load(path, allow_pickle=False)
        else:
            text = path.read_text()
            try:
                data = json.loads(text)
                rows = data if isinstance(data, list) and data and isinstance(data[0], list) else [data]
            except ValueError:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            rows = [r["embeddings"] if isinstance(r, dict) else r for r in rows]
            z = np.asarray(rows, dtype=np.float32)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidInput(f"Cannot read embeddings from {path}: {exc}.",
                           'Give a .npy (N, E) array, a JSON list of lists, or JSON Lines {"embeddings": [...]}.'
                           ) from exc
    if z.ndim == 1:
        z = z[None, :]
    if z.ndim != 2 or z.shape[1] != size:
        raise InvalidInput(f"{path} holds embeddings of shape {z.shape}; the model takes {size} numbers each.",
                           f"Give N rows of {size} numbers.")
    if not np.all(np.isfinite(z)):
        raise InvalidInput(f"{path} holds NaN or infinite values.", "Use finite numbers.")
    out: np.ndarray = z.astype(np.float32)     # z is Any: np.load's result
    return out


def endpoint(spec: str, predictor: Any) -> tuple["np.ndarray", str]:
    """One end of a walk and how to name it: a seed, an embedding file (its first row) or an image."""
    text = spec.strip()
    try:
        seed = int(text)
    except ValueError:
        seed = None
    if seed is not None and not Path(text).exists():
        if seed < 0:
            raise InvalidInput(f"Seed {seed} is negative.", "Seeds are whole numbers from 0.")
        return embedding(seed, predictor.embedding_size), f"seed {seed}"
    path = Path(text).expanduser()
    if not path.is_file():
        raise InvalidInput(f"{spec!r} is neither a seed nor a file.",
                           "Give a seed (a whole number), an embedding file (.json, .jsonl, .npy) or an image "
                           "(.png, .jpg).")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"Cannot read {path}: {exc.strerror or exc}.", "Give a readable image.") from exc
        import numpy as np
        return np.asarray(predictor.encode([data]), dtype=np.float32)[0], path.name
    return load_embeddings(path, predictor.embedding_size)[0], path.name


def check_frames(frames: int) -> int:
    if not 2 <= frames <= MAX_FRAMES:
        raise InvalidInput(f"{frames} frames is out of range.", f"Use 2 to {MAX_FRAMES} frames.")
    return frames


def animation_format(path: Path) -> str:
    """PIL's format name for the file's suffix: .gif -> GIF, .png/.apng -> PNG (animated)."""
    fmt = ANIMATION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"Cannot tell the animation format of {path.name}.",
                           "End the file name in .gif, .png or .apng (animated PNG).")
    return fmt


def save_animation(frames: Iterable["np.ndarray | Image.Image"], path: Path, *, duration_ms: int = 80,
                   bounce: bool = False, scale: int = 1) -> Path:
    """Write the frames as a looping GIF or APNG (chosen by the suffix), atomically.

    `bounce` plays the walk back to the start (A -> B -> A) so the loop has no jump;
    `scale` enlarges each frame with nearest-neighbour (small models make 32 px images).
    `frames` may be any iterable of frames, e.g. the (N, H, W, 3) array a predictor returns.
    """
    import io

    import numpy as np
    from PIL import Image

    from core import atomic
    fmt = animation_format(path)
    if duration_ms < 10:
        raise InvalidInput(f"A frame of {duration_ms} ms is too short.", "Use 10 ms or more (GIF's unit is 10 ms).")
    pil = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    if len(pil) < 2:
        raise InvalidInput("An animation needs at least two frames.", "Use 2 frames or more.")
    if scale > 1:
        pil = [f.resize((f.width * scale, f.height * scale), Image.Resampling.NEAREST) for f in pil]
    if bounce:
        pil = pil + pil[-2:0:-1]
    buf = io.BytesIO()
    extra: dict[str, Any] = {"disposal": 1} if fmt == "GIF" else {}
    pil[0].convert("RGB").save(buf, format=fmt, save_all=True, append_images=[f.convert("RGB") for f in pil[1:]],
                               duration=duration_ms, loop=0, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, buf.getvalue())
    return path
