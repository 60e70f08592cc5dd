"""Prediction: the seed's instance formats and a SavedModel loaded once per process.

Instances (docs/contracts.md):
  {"embeddings": [E floats], "key": "0"}            -> {"image_bytes": {"b64": PNG}, "key": "0"}
  {"image_bytes": {"b64": "<jpeg or png>"}, "key": "0"} -> {"embeddings": [E floats], "key": "0"}
A bad instance gives {"error": "instance N: ...", "key": KEY or None} and never spoils the
others, so parsing is pure Python (no TensorFlow, property-tested with hypothesis) and
checks everything the model would choke on — length, NaN/inf, base64, whether the image
decodes — before any tensor is built. TensorFlow is imported lazily, only when a model
is loaded, so the CLI and TUI start fast.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidInput, NotFound, StorageError
from trainer import sysutil
from trainer.contract import MODEL_INFO, SAVED_MODEL

MAX_IMAGE_B64_CHARS = 16 * 1024 * 1024     # ~12 MB of JPEG/PNG per instance
MAX_IMAGE_PIXELS = 40_000_000              # decompression bombs stop here
MAX_REQUEST_PIXELS = 16_000_000            # pixels decoded for one served request, all its images together
DRAFT_SIDE = 256                           # checking a big JPEG decodes it at 1/2..1/8 scale, not in full
MIN_IMAGE_SIDE = 2                         # floor(CROP_FRACTION * side) must leave at least one pixel
PNG_LEVEL = 1                              # zlib level of generated PNGs: fast, and 64x64 stays small
CHUNK = 64                                 # instances per model call: bounds memory for any request
FLOAT32_MAX = float(np.finfo(np.float32).max)
ALLOWED_FIELDS = {"embeddings", "image_bytes", "key"}
IMAGE_FORMATS = {"JPEG", "PNG"}


@dataclass
class EmbeddingInstance:
    index: int
    key: Any
    z: np.ndarray


@dataclass
class ImageInstance:
    index: int
    key: Any
    data: bytes


@dataclass
class BadInstance:
    index: int
    key: Any
    error: str

    def as_prediction(self) -> dict[str, Any]:
        return {"error": self.error, "key": self.key}


Parsed = EmbeddingInstance | ImageInstance | BadInstance


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


class PixelBudget:
    """Pixels one request may still have decoded, across all its images (serve uses one per
    request). A 16-128 px model needs nothing like 40 MP, and a request of 64 large solid
    PNGs once took 37 s of decoding while every other client waited."""

    def __init__(self, pixels: int) -> None:
        self.total = self.left = pixels


def _check_image(data: bytes, budget: PixelBudget | None = None) -> str | None:
    """None if `data` is a whole JPEG or PNG image of sane size, else why not.

    The check decodes the image (truncated files fail here, with the instance named, not
    inside the model's batch); JPEGs are decoded at reduced scale (libjpeg's DCT scaling,
    Pillow's draft), which is many times cheaper. The model decodes the full image, so
    `budget` is charged the declared pixels.
    """
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in IMAGE_FORMATS:
                return f"is a {img.format} image; send JPEG or PNG"
            w, h = img.size
            if min(w, h) < MIN_IMAGE_SIDE:
                return f"is {w}x{h} pixels; the centre crop needs at least {MIN_IMAGE_SIDE} on each side"
            if w * h > MAX_IMAGE_PIXELS:
                return f"is {w}x{h} pixels; the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
            if budget is not None:
                if w * h > budget.left:
                    return (f"is {w}x{h} pixels ({w * h / 1e6:.1f} MP), more than this request has left of its "
                            f"{budget.total / 1e6:.0f} MP decoding budget; send large images in separate "
                            "requests, or downscale them first")
                budget.left -= w * h
            if img.format == "JPEG" and min(w, h) >= 2 * DRAFT_SIDE:
                img.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))
            img.load()
    except UnidentifiedImageError:
        return "does not decode as an image (JPEG or PNG expected)"
    except Image.DecompressionBombError:
        return f"is over the {MAX_IMAGE_PIXELS // 1_000_000} megapixel limit"
    except Exception as exc:  # noqa: BLE001 - untrusted bytes into C decoders: any failure is "bad image"
        return f"does not decode: {str(exc)[:200]}"
    return None


def parse_instance(obj: Any, index: int, embedding_size: int, check_images: bool = True,
                   budget: PixelBudget | None = None) -> Parsed:
    """One instance -> a typed instance, or BadInstance naming the instance and the field.

    The one parser of the seed's instance format: local predict, serve, batch and the
    Vertex backend all use it, so an instance is valid or not whatever runs it. A
    BadInstance (a line that was not JSON) passes through unchanged.
    """
    if isinstance(obj, BadInstance):
        return obj
    where = f"instance {index}"
    if not isinstance(obj, dict):
        return BadInstance(index, None, f"{where}: expected a JSON object with 'embeddings' or 'image_bytes' "
                                        f"and 'key', got {_kind(obj)}")
    key = obj.get("key")
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        reported = key if isinstance(key, (str, int)) and not isinstance(key, bool) else None
        if "key" not in obj:
            return BadInstance(index, None, f"{where}: missing 'key' (a string such as \"{index}\")")
        return BadInstance(index, reported, f"{where}: 'key' must be a string or a whole number, got {_kind(key)}")
    unknown = sorted(str(k) for k in obj if k not in ALLOWED_FIELDS)
    if unknown:
        return BadInstance(index, key, f"{where}: unknown field(s) {', '.join(repr(u) for u in unknown)}; "
                                       "an instance has 'embeddings' or 'image_bytes', and 'key'")
    has_z, has_img = "embeddings" in obj, "image_bytes" in obj
    if has_z == has_img:
        return BadInstance(index, key, f"{where}: needs exactly one of 'embeddings' or 'image_bytes'"
                                       + (", not both" if has_z else ""))
    if has_z:
        z = obj["embeddings"]
        if not isinstance(z, list):
            return BadInstance(index, key, f"{where}: 'embeddings' must be a list of {embedding_size} numbers, "
                                           f"got {_kind(z)}")
        if len(z) != embedding_size:
            return BadInstance(index, key,
                               f"{where}: 'embeddings' has {len(z)} values, the model takes {embedding_size}")
        for i, v in enumerate(z):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return BadInstance(index, key, f"{where}: 'embeddings'[{i}] is {_kind(v)}, not a number")
            if isinstance(v, float) and not math.isfinite(v):
                return BadInstance(index, key, f"{where}: 'embeddings'[{i}] is {v}; values must be finite")
            if abs(v) > FLOAT32_MAX:
                return BadInstance(index, key, f"{where}: 'embeddings'[{i}] is too large for float32")
        return EmbeddingInstance(index, key, np.asarray(z, dtype=np.float32))
    img = obj["image_bytes"]
    if not isinstance(img, dict) or set(img) != {"b64"} or not isinstance(img.get("b64"), str):
        return BadInstance(index, key, f"{where}: 'image_bytes' must be {{\"b64\": \"<base64 JPEG or PNG>\"}}")
    b64 = img["b64"]
    if len(b64) > MAX_IMAGE_B64_CHARS:
        return BadInstance(index, key,
                           f"{where}: 'image_bytes' is over {MAX_IMAGE_B64_CHARS // (1024 * 1024)} MB of base64")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        try:   # the URL-safe alphabet is common in web clients; accept it too
            data = base64.urlsafe_b64decode(b64) if b64 and set(b64) <= _URLSAFE else b""
        except (binascii.Error, ValueError):
            data = b""
        if not data:
            return BadInstance(index, key, f"{where}: 'image_bytes'.'b64' is not valid base64")
    if not data:
        return BadInstance(index, key, f"{where}: 'image_bytes' is empty")
    if check_images:
        why = _check_image(data, budget)
        if why:
            return BadInstance(index, key, f"{where}: 'image_bytes' {why}")
    return ImageInstance(index, key, data)


_URLSAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def parse_instances(instances: Any, embedding_size: int, first_index: int = 0,
                    pixel_budget: int | None = None) -> list[Parsed]:
    """Every instance of one request; with `pixel_budget`, the images of the request
    together may decode at most that many pixels (later ones over it get an error)."""
    if not isinstance(instances, list):
        raise InvalidInput(f"'instances' must be a list, got {_kind(instances)}.",
                           'Send {"instances": [{"embeddings": [...], "key": "0"}, ...]}.')
    budget = PixelBudget(pixel_budget) if pixel_budget else None
    return [parse_instance(obj, first_index + i, embedding_size, budget=budget) for i, obj in enumerate(instances)]


def import_tensorflow() -> Any:
    """`import tensorflow` without its start-up lines on the terminal (trainer/sysutil.py),
    and with TensorFlow's own log level at warnings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return sysutil.import_tensorflow()


class SavedModelPredictor:
    """The exported VAE-GAN, loaded once. Thread-safe: TF concrete functions may run concurrently."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / SAVED_MODEL).exists():
            raise NotFound(f"No SavedModel in {self.model_dir}.",
                           "The job may not have finished; check `genml jobs show JOB`.")
        tf = import_tensorflow()  # lazily: only processes that predict pay for it
        self._tf = tf
        try:
            self._model = tf.saved_model.load(str(self.model_dir))
        except Exception as exc:  # any load failure means a damaged export
            raise StorageError(f"The model in {self.model_dir} cannot be loaded: {exc}.",
                               "Re-export it by resuming or retraining the job.") from exc
        sigs = self._model.signatures
        missing = {"serving_default", "encode", "decode_raw"} - set(sigs)
        if missing:
            raise StorageError(f"The model in {self.model_dir} lacks the signature(s) {sorted(missing)}.",
                               "It was not exported by genml's trainer; retrain it.")
        self._generate = sigs["serving_default"]
        self._encode = sigs["encode"]
        self._decode_raw = sigs["decode_raw"]
        try:
            self.info = json.loads((self.model_dir / MODEL_INFO).read_text())
        except (OSError, ValueError):
            self.info = {}
        z_spec = self._decode_raw.structured_input_signature[1]["z"]
        self.embedding_size = int(self.info.get("embedding_size") or z_spec.shape[-1])
        out = self._decode_raw.structured_outputs["images"]
        self.image_size = int(self.info.get("image_size") or out.shape[1] or 64)

    # ---- raw arrays (TUI, generate/encode commands, benchmarks) ------------------------
    def generate(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.embedding_size:
            raise InvalidInput(f"Embeddings must have shape (N, {self.embedding_size}), got {z.shape}.",
                               f"This model takes {self.embedding_size} numbers per embedding.")
        if not np.all(np.isfinite(z)):
            raise InvalidInput("Embeddings contain NaN or infinity.", "Use finite numbers.")
        outs = [self._decode_raw(z=self._tf.constant(z[i:i + CHUNK]))["images"].numpy()
                for i in range(0, len(z), CHUNK)]
        return np.concatenate(outs) if outs else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    def encode(self, images: list[bytes]) -> np.ndarray:
        for i, data in enumerate(images):
            why = _check_image(data)
            if why:
                raise InvalidInput(f"Image {i} {why}.", "Give JPEG or PNG files.")
        outs = []
        for i in range(0, len(images), CHUNK):
            part = images[i:i + CHUNK]
            res = self._encode(image_bytes=self._tf.constant(part),
                               key=self._tf.constant([str(j) for j in range(len(part))]))
            outs.append(res["embeddings"].numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.embedding_size), np.float32)

    # ---- the seed's instance formats -------------------------------------------------
    def predict(self, instances: list[Any], first_index: int = 0) -> list[dict[str, Any]]:
        return self.predict_parsed(parse_instances(instances, self.embedding_size, first_index))

    def predict_parsed(self, parsed: list[Parsed]) -> list[dict[str, Any]]:
        out: list[dict[str, Any] | None] = [None] * len(parsed)
        zs = [(i, p) for i, p in enumerate(parsed) if isinstance(p, EmbeddingInstance)]
        ims = [(i, p) for i, p in enumerate(parsed) if isinstance(p, ImageInstance)]
        for i, p in enumerate(parsed):
            if isinstance(p, BadInstance):
                out[i] = p.as_prediction()
        for c in range(0, len(zs), CHUNK):
            zpart = zs[c:c + CHUNK]
            images = self._decode_raw(z=self._tf.constant(np.stack([e.z for _, e in zpart])))["images"].numpy()
            for (i, e), img in zip(zpart, images):
                out[i] = {"image_bytes": {"b64": base64.b64encode(png_bytes(img)).decode("ascii")}, "key": e.key}
        for c in range(0, len(ims), CHUNK):
            ipart = ims[c:c + CHUNK]
            try:
                vecs = self._encode_batch([im.data for _, im in ipart])
                for (i, im), v in zip(ipart, vecs):
                    out[i] = {"embeddings": [float(x) for x in v], "key": im.key}
            except self._tf.errors.OpError:
                for i, im in ipart:   # one image TF cannot decode: find it, keep the others
                    try:
                        v = self._encode_batch([im.data])[0]
                        out[i] = {"embeddings": [float(x) for x in v], "key": im.key}
                    except self._tf.errors.OpError as exc:
                        msg = _op_error_reason(exc.message or str(exc))
                        out[i] = {"error": f"instance {im.index}: 'image_bytes' could not be decoded by the "
                                           f"model: {msg}",
                                  "key": im.key}
        return [o if o is not None else {"error": "internal: no prediction", "key": None} for o in out]

    def _encode_batch(self, datas: list[bytes]) -> np.ndarray:
        res = self._encode(image_bytes=self._tf.constant(datas),
                           key=self._tf.constant([str(j) for j in range(len(datas))]))
        vecs: np.ndarray = res["embeddings"].numpy()
        return vecs


def _op_error_reason(message: str) -> str:
    """The human part of a TensorFlow op error (it comes wrapped in graph-node noise)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    useful = [ln for ln in lines if not ln.startswith(noise)]
    return (useful[-1] if useful else lines[-1] if lines else "unknown error")[:200]


def png_bytes(img: np.ndarray) -> bytes:
    """PNG of one uint8 (H, W, 3) image.

    Why PIL and not the SavedModel's serving_default (tf.map_fn over encode_png): the same
    pixels come out, but the map_fn loop costs several ms per image on a CPU, which alone
    would miss the batched-throughput target; zlib level 1 keeps 64x64 PNGs small anyway.
    """
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


_cache: dict[str, SavedModelPredictor] = {}
_cache_lock = threading.Lock()


def load_predictor(model_dir: str | os.PathLike[str]) -> SavedModelPredictor:
    """One load per model dir per process: loading costs seconds, a call milliseconds."""
    key = str(Path(model_dir).resolve())
    with _cache_lock:
        if key not in _cache:
            _cache[key] = SavedModelPredictor(key)
        return _cache[key]
