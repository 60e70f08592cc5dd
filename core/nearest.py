"""Nearest in the data: which training images a generated image is closest to.

The first question people ask of a generator trained on a small dataset is whether it
copies its pictures. This module answers it for one image or a few: the k closest
training images, with their distances, and a flag on those that are near-copies.

Two spaces:
  - "pixels": each image's centre crop (the box the model trains on) at 16x16, RGB in
    [0, 1]; the distance is the RMS pixel difference (0 identical, 1 black vs white).
    Model-independent and easy to read.
  - "embedding": the model's encoder output for each image; the generated image is
    encoded too. Closer to what the model "thinks" is similar, but needs the model.

Near-copy: a sample closer to a training image than 95 % of training images are to
their own nearest other training image (the 5th percentile of those leave-one-out
distances, measured on up to 500 of them when the index is built). A threshold that
comes from the data itself works in both spaces and at any image size.

An index of a few thousand images is a (N, D) float32 matrix: a query is one matrix
product (well under 10 ms). Building it decodes every training PNG once (about a second
per thousand 86 px images on one core); `load_or_build` keeps it in an .npz file keyed
by the dataset's manifest and, for the embedding space, the model, so the next session
loads it in milliseconds.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from core.errors import InvalidInput, NotFound
from trainer.contract import CROP_FRACTION, DATASET_MANIFEST

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

PIXELS, EMBEDDING = "pixels", "embedding"
SPACES = (PIXELS, EMBEDDING)
PIXEL_SIDE = 16          # the "small size" of the pixel space
THUMB_SIDE = 32          # what is kept of each training image, for showing it
COPY_PERCENTILE = 5.0
CALIBRATION_SAMPLE = 500
FORMAT = 1               # bump when the cached file's layout changes


@dataclass(frozen=True)
class Neighbour:
    index: int                 # row in the index
    name: str                  # the training image's file name in the source folder
    distance: float
    near_copy: bool
    thumbnail: "np.ndarray"    # (THUMB_SIDE, THUMB_SIDE, 3) uint8, to show it


def centre_crop(image: "Image.Image") -> "Image.Image":
    """The square box of CROP_FRACTION of the short side, centred: what training and
    evaluation feed the model (trainer/contract.py)."""
    w, h = image.size
    box = int(min(w, h) * CROP_FRACTION)
    left, top = (w - box) // 2, (h - box) // 2
    return image.crop((left, top, left + box, top + box))


def pixel_features(images: Iterable["Image.Image | np.ndarray"], already_cropped: bool = True) -> "np.ndarray":
    """(N, 16*16*3) float32 in [0, 1]. Generated images are already the crop; stored
    training images are not (already_cropped=False)."""
    import numpy as np
    from PIL import Image
    rows = []
    for im in images:
        pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8))
        pil = pil.convert("RGB")
        if not already_cropped:
            pil = centre_crop(pil)
        small = pil.resize((PIXEL_SIDE, PIXEL_SIDE), Image.Resampling.BOX)
        rows.append(np.asarray(small, dtype=np.float32).reshape(-1) / 255.0)
    return np.stack(rows) if rows else np.zeros((0, PIXEL_SIDE * PIXEL_SIDE * 3), np.float32)


def _distances(queries: "np.ndarray", features: "np.ndarray", sq_norms: "np.ndarray") -> "np.ndarray":
    """(Q, N) RMS distances, by ||a-b||^2 = |a|^2 - 2ab + |b|^2 (one matrix product)."""
    import numpy as np
    q = queries.astype(np.float32)
    d2 = (q * q).sum(1)[:, None] - 2.0 * q @ features.T + sq_norms[None, :]
    dist: np.ndarray = np.sqrt(np.maximum(d2, 0.0) / features.shape[1])   # Any to numpy's stubs here
    return dist


@dataclass
class NeighbourIndex:
    space: str
    features: "np.ndarray"        # (N, D) float32
    names: list[str]
    thumbnails: "np.ndarray"      # (N, THUMB_SIDE, THUMB_SIDE, 3) uint8
    copy_threshold: float

    def __post_init__(self) -> None:
        self._sq = (self.features.astype("float32") ** 2).sum(1)

    def __len__(self) -> int:
        return len(self.names)

    def query(self, features: "np.ndarray", k: int = 6) -> list[list[Neighbour]]:
        """The k nearest training images of each query row, nearest first."""
        import numpy as np
        if len(self) == 0:
            return [[] for _ in range(len(features))]
        d = _distances(np.atleast_2d(features), self.features, self._sq)
        k = max(1, min(k, len(self)))
        out = []
        for row in d:
            idx = np.argpartition(row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            idx = idx[np.argsort(row[idx], kind="stable")]
            out.append([Neighbour(int(i), self.names[i], float(row[i]), bool(row[i] < self.copy_threshold),
                                  self.thumbnails[i]) for i in idx])
        return out

    # ---- the cache file ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        import numpy as np
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(f, features=self.features, thumbnails=self.thumbnails,
                     meta=np.frombuffer(json.dumps({"format": FORMAT, "space": self.space, "names": self.names,
                                                    "copy_threshold": self.copy_threshold}).encode(), np.uint8))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "NeighbourIndex":
        import numpy as np
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: cache format {meta.get('format')}, expected {FORMAT}")
            return cls(meta["space"], z["features"], list(meta["names"]), z["thumbnails"],
                       float(meta["copy_threshold"]))


def copy_threshold(features: "np.ndarray", sample: int = CALIBRATION_SAMPLE, seed: int = 0) -> float:
    """The COPY_PERCENTILE-th percentile of training images' distance to their nearest other one."""
    import numpy as np
    n = len(features)
    if n < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    pick = rng.choice(n, size=min(sample, n), replace=False)
    sq = (features ** 2).sum(1)
    d = _distances(features[pick], features, sq)
    d[np.arange(len(pick)), pick] = np.inf          # not itself
    return float(np.percentile(d.min(1), COPY_PERCENTILE))


def read_training_images(dataset_dir: Path, limit: int | None = None) -> Iterable[tuple[str, "Image.Image"]]:
    """(file name, stored RGB image) for each image of the dataset's training shards."""
    from PIL import Image

    from core.datasets.tfrecord import decode_example, read_records
    manifest_path = Path(dataset_dir) / DATASET_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise NotFound(f"No dataset at {dataset_dir} (no {DATASET_MANIFEST}).",
                       "Nearest-in-the-data needs the model's training dataset on this machine.") from None
    count = 0
    for shard in manifest.get("shards", {}).get("train", []):
        for record in read_records(Path(dataset_dir) / shard):
            ex = decode_example(record)
            png = ex["image/encoded"][0]
            name = ex.get("image/filename", [b""])[0]
            assert isinstance(png, bytes)
            image = Image.open(io.BytesIO(png))
            image.load()
            yield (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)), image.convert("RGB")
            count += 1
            if limit is not None and count >= limit:
                return


def build_index(dataset_dir: Path, space: str = PIXELS, *,
                encode: Callable[[list[bytes]], "np.ndarray"] | None = None, limit: int | None = None,
                progress: Callable[[int], None] | None = None, batch: int = 256) -> NeighbourIndex:
    """Read the training images once and make the index (pixels, or the encoder's embeddings)."""
    import numpy as np
    from PIL import Image
    if space not in SPACES:
        raise InvalidInput(f"Unknown space {space!r} for nearest neighbours.", f"Use {' or '.join(SPACES)}.")
    if space == EMBEDDING and encode is None:
        raise InvalidInput("The embedding space needs a model to encode the training images.",
                           "Open a model first, or use the pixel space.")
    names: list[str] = []
    thumbs: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    pending: list[Image.Image] = []

    def flush() -> None:
        if not pending:
            return
        if space == PIXELS:
            feats.append(pixel_features(pending, already_cropped=False))
        else:
            assert encode is not None
            pngs = []
            for im in pending:
                buf = io.BytesIO()
                im.save(buf, "PNG", compress_level=1)
                pngs.append(buf.getvalue())
            feats.append(np.asarray(encode(pngs), dtype=np.float32))
        pending.clear()
        if progress is not None:
            progress(len(names))

    for name, image in read_training_images(dataset_dir, limit):
        names.append(name)
        thumbs.append(np.asarray(centre_crop(image).resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX),
                                 dtype=np.uint8))
        pending.append(image)
        if len(pending) >= batch:
            flush()
    flush()
    features = np.concatenate(feats) if feats else np.zeros((0, 1), np.float32)
    return NeighbourIndex(space, features, names,
                          np.stack(thumbs) if thumbs else np.zeros((0, THUMB_SIDE, THUMB_SIDE, 3), np.uint8),
                          copy_threshold(features))


def cache_key(dataset_dir: Path, space: str, model_ref: str | None = None) -> str:
    """Changes when the dataset is rebuilt (its manifest) or, for embeddings, the model."""
    try:
        manifest = (Path(dataset_dir) / DATASET_MANIFEST).read_bytes()
    except OSError:
        manifest = b""
    h = hashlib.sha256(manifest)
    h.update(f"|{space}|{model_ref if space == EMBEDDING else ''}|{FORMAT}".encode())
    return h.hexdigest()[:24]


def load_or_build(cache_dir: Path, dataset_dir: Path, space: str = PIXELS, *, model_ref: str | None = None,
                  encode: Callable[[list[bytes]], "np.ndarray"] | None = None,
                  progress: Callable[[int], None] | None = None) -> NeighbourIndex:
    """The index from `cache_dir` if one was built for this dataset (and model), else built and saved."""
    path = Path(cache_dir) / f"nearest-{cache_key(dataset_dir, space, model_ref)}.npz"
    if path.exists():
        try:
            return NeighbourIndex.load(path)
        except (OSError, ValueError, KeyError):
            pass                                   # damaged or old: build again
    index = build_index(dataset_dir, space, encode=encode, progress=progress)
    try:
        index.save(path)
    except OSError:
        pass                                       # a read-only cache still answers, just slower next time
    return index


def query_images(index: NeighbourIndex, images: Sequence["np.ndarray"], k: int = 6,
                 encode: Callable[[list[bytes]], "np.ndarray"] | None = None) -> list[list[Neighbour]]:
    """The nearest training images of generated images ((H, W, 3) uint8, already the crop)."""
    import numpy as np
    from PIL import Image
    if index.space == PIXELS:
        return index.query(pixel_features(images), k)
    if encode is None:
        raise InvalidInput("This index is in embedding space: give the model's encoder.", "")
    pngs = []
    for im in images:
        buf = io.BytesIO()
        uncrop(Image.fromarray(np.asarray(im, dtype=np.uint8))).save(buf, "PNG", compress_level=1)
        pngs.append(buf.getvalue())
    return index.query(np.asarray(encode(pngs), dtype=np.float32), k)


def uncrop(image: "Image.Image") -> "Image.Image":
    """A generated image is already the crop box; the encoder cuts the box again. Centred on
    a black square large enough that the encoder's centre crop gives back exactly it."""
    import math

    from PIL import Image
    s = image.width
    side = math.ceil(s / CROP_FRACTION)
    while int(side * CROP_FRACTION) < s:
        side += 1
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    canvas.paste(image.convert("RGB"), ((side - s) // 2, (side - s) // 2))
    return canvas


def describe(neighbours: list[Neighbour]) -> dict[str, Any]:
    """A JSON-able summary (for the CLI or a log)."""
    return {"nearest": [{"name": n.name, "distance": round(n.distance, 5), "near_copy": n.near_copy}
                        for n in neighbours]}
