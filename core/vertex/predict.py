"""Online prediction through a Vertex AI endpoint, with the seed's instance formats.

The TF Serving container behind a Vertex endpoint serves the SavedModel's
`serving_default` signature (embeddings -> image) through `endpoints:predict`. The
`encode` signature (image -> embedding) is not reachable through `predict`, whose body
only has `instances` and `parameters`, so genml sends those instances through
`endpoints:rawPredict` with TF Serving's own body, `{"signature_name": "encode",
"instances": [...]}`, which the container passes to TF Serving unchanged.

Instances are checked here first by core.predict.parse_instance, the parser the local
backend uses, so one bad instance gets the same error (naming the instance and the
field) on either backend, and the others still go through.

A shared public endpoint refuses requests over 1.5 MB, and a phone photo is several MB
before base64 adds a third. The model crops and shrinks every image to at most 128 px,
so images are downscaled and re-encoded here before they are sent (`shrink_image`), and
requests are split to stay under MAX_BODY; an instance still too big gets its own error.
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np

from core.errors import CloudError, InvalidInput
from core.predict import BadInstance, EmbeddingInstance, Parsed, parse_instances
from core.types import ModelVersion
from core.vertex.clients import Clients

CHUNK = 64               # instances per request
MAX_BODY = 1_000_000     # bytes of JSON per request: Vertex caps a request body at 1.5 MB
SERVICE_CAP = 1_500_000
SHRINK_ABOVE = 256_000   # bytes: smaller images are sent as they are
SHRINK_EDGE = 512        # px, the shorter side after shrinking: 4x the largest model size


def shrink_image(raw: bytes, edge: int = SHRINK_EDGE) -> bytes:
    """A large JPEG/PNG downscaled (shorter side `edge`) and re-encoded as JPEG; small ones as they are.

    The model keeps the centre of the image and resizes it to its own size (at most 128 px),
    so this loses nothing the model would see, and turns a 4 MB photo into ~100 KB.
    """
    if len(raw) <= SHRINK_ABOVE:
        return raw
    from PIL import Image
    try:
        img: Image.Image = Image.open(io.BytesIO(raw))
        img.load()
    except (OSError, ValueError):
        return raw                       # let the model say what is wrong with it
    img = img.convert("RGB")
    short = min(img.size)
    if short > edge:
        scale = edge / short
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=92)
    return out.getvalue() if out.tell() < len(raw) else raw


def too_big(index: int, inst: dict[str, Any], key: Any) -> dict[str, Any] | None:
    """An error for an instance that cannot fit in one request, even alone."""
    n = len(json.dumps(inst))
    if n <= MAX_BODY:
        return None
    return {"error": f"instance {index}: is {n / 1e6:.1f} MB of JSON even after downscaling; a Vertex AI endpoint "
                     f"takes at most {SERVICE_CAP / 1e6:.1f} MB a request. Send a smaller image.", "key": key}


def _chunks(instances: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Requests of at most CHUNK instances and about 1 MB of JSON (Vertex refuses bodies over 1.5 MB)."""
    out: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = 0
    for inst in instances:
        n = len(json.dumps(inst))
        if cur and (len(cur) >= CHUNK or size + n > MAX_BODY):
            out.append(cur)
            cur, size = [], 0
        cur.append(inst)
        size += n
    if cur:
        out.append(cur)
    return out


class VertexPredictor:
    """core.backend.Predictor over a deployed endpoint."""

    def __init__(self, clients: Clients, mv: ModelVersion) -> None:
        self.clients = clients
        self.mv = mv
        self.endpoint = str(mv.remote.get("endpoint", ""))
        self.image_size = int(mv.info.get("image_size", 64))
        self.embedding_size = int(mv.info.get("embedding_size", 100))

    # ---- requests ---------------------------------------------------------------------
    def _generate(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        c = self.clients
        req = c.aiplatform.endpoints().predict(endpoint=self.endpoint, body={"instances": instances})
        return list(c.call(req, f"Predicting with {self.mv.ref}").get("predictions", []))

    def _encode(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        c = self.clients
        req = c.aiplatform.endpoints().rawPredict(endpoint=self.endpoint, body={})
        # rawPredict's request message is an HttpBody: the service passes the raw HTTP body to
        # the container, so the body is TF Serving's own JSON, not the discovery document's
        # {"httpBody": {...}} wrapper (which would reach TF Serving as it is).
        req.body = json.dumps({"signature_name": "encode", "instances": instances})
        req.headers["content-type"] = "application/json"
        req.headers["content-length"] = str(len(req.body.encode()))
        return list(c.call(req, f"Encoding with {self.mv.ref}").get("predictions", []))

    def _run(self, kind: str, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fn = self._generate if kind == "generate" else self._encode
        out: list[dict[str, Any]] = []
        for part in _chunks(instances):
            preds = fn(part)
            if len(preds) != len(part):
                raise CloudError(f"The endpoint of {self.mv.ref} answered {len(preds)} predictions for "
                                 f"{len(part)} instances.",
                                 "Check the deployed model in the console; redeploy with `genml models deploy`.")
            out += preds
        return out

    # ---- Predictor --------------------------------------------------------------------
    def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        return self.predict_parsed(parse_instances(instances, self.embedding_size))

    def predict_parsed(self, parsed: list[Parsed]) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(parsed)
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {"generate": [], "encode": []}
        for i, p in enumerate(parsed):
            if isinstance(p, BadInstance):
                results[i] = p.as_prediction()
            elif isinstance(p, EmbeddingInstance):   # the container's signatures take string keys
                groups["generate"].append((i, {"embeddings": [float(x) for x in p.z], "key": str(p.key)}))
            else:
                inst = {"image_bytes": {"b64": base64.b64encode(shrink_image(p.data)).decode("ascii")},
                        "key": str(p.key)}
                big = too_big(p.index, inst, p.key)
                if big:
                    results[i] = big
                else:
                    groups["encode"].append((i, inst))
        for kind, items in groups.items():
            if not items:
                continue
            try:
                preds: list[dict[str, Any] | None] = list(self._run(kind, [inst for _, inst in items]))
            except CloudError as exc:
                if getattr(exc, "http_status", 0) != 400 or len(items) == 1:
                    for i, _ in items:
                        results[i] = {"error": f"instance {parsed[i].index}: {exc.message}", "key": parsed[i].key}
                    continue
                preds = []                    # the model refused the batch: find the instance it refused
                for i, inst in items:
                    try:
                        preds.append(self._run(kind, [inst])[0])
                    except CloudError as one:
                        preds.append(None)
                        results[i] = {"error": f"instance {parsed[i].index}: {one.message}", "key": parsed[i].key}
            for (i, _), pred in zip(items, preds):
                if pred is None:
                    continue
                pred = dict(pred)
                pred["key"] = parsed[i].key            # the key comes back as it was sent
                results[i] = pred
        return [r or {"error": f"instance {parsed[i].index}: no answer", "key": None} for i, r in enumerate(results)]

    def generate(self, z: np.ndarray) -> np.ndarray:
        from PIL import Image
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.embedding_size:
            raise InvalidInput(f"Embeddings must have shape (N, {self.embedding_size}), not {z.shape}.",
                               "Use the model's embedding size.")
        preds = self._run("generate", [{"embeddings": row.tolist(), "key": str(i)} for i, row in enumerate(z)])
        imgs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(p["image_bytes"]["b64"]))).convert("RGB"))
                for p in preds]
        return np.stack(imgs).astype(np.uint8) if imgs else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    def encode(self, images: list[bytes]) -> np.ndarray:
        instances = [{"image_bytes": {"b64": base64.b64encode(shrink_image(b)).decode()}, "key": str(i)}
                     for i, b in enumerate(images)]
        for i, inst in enumerate(instances):
            big = too_big(i, inst, str(i))
            if big:
                raise InvalidInput(f"Image {i} {big['error'].split(': ', 1)[1]}", "Send a smaller image.")
        preds = self._run("encode", instances)
        return np.asarray([p["embeddings"] for p in preds], dtype=np.float32).reshape(len(images), self.embedding_size)
