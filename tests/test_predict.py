"""Instance parsing (property-based) and the loaded-once SavedModel predictor (real tiny export)."""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.predict import (BadInstance, EmbeddingInstance, ImageInstance, load_predictor, parse_instance,
                          parse_instances)

E = 8


def _png(size: int = 20, color: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (size, size + 6), color).save(buf, format=fmt)
    return buf.getvalue()


PNG_B64 = base64.b64encode(_png()).decode()

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=20)
keys = st.one_of(st.text(max_size=10), st.integers())
floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
near_instances = st.fixed_dictionaries(
    {},
    optional={"key": keys | json_values,
              "embeddings": st.lists(floats | json_scalars, min_size=0, max_size=2 * E) | json_values,
              "image_bytes": st.fixed_dictionaries(
                  {"b64": st.sampled_from([PNG_B64, "", "!!", "aGVsbG8=", PNG_B64[:40]]) | st.text(max_size=12)})
              | json_values,
              "extra": json_values})


@given(st.one_of(json_values, near_instances), st.integers(min_value=0, max_value=10_000))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_any_json_gives_a_typed_instance_or_an_error_naming_it(obj: Any, index: int) -> None:
    got = parse_instance(obj, index, E)
    assert isinstance(got, (EmbeddingInstance, ImageInstance, BadInstance))
    if isinstance(got, BadInstance):
        assert got.error.startswith(f"instance {index}: ")
        assert got.key is None or isinstance(got.key, (str, int))
        pred = got.as_prediction()
        assert set(pred) == {"error", "key"}
    elif isinstance(got, EmbeddingInstance):
        assert got.z.shape == (E,) and got.z.dtype == np.float32 and np.all(np.isfinite(got.z))
        assert got.key == obj["key"]
    else:
        assert got.data and got.key == obj["key"]


@given(st.lists(floats, min_size=E, max_size=E), keys)
def test_valid_embeddings_always_parse(z: list[float], key: Any) -> None:
    got = parse_instance({"embeddings": z, "key": key}, 0, E)
    assert isinstance(got, EmbeddingInstance)
    assert np.array_equal(got.z, np.asarray(z, np.float32))


@pytest.mark.parametrize("obj, message", [
    ({"embeddings": [0.0] * 7, "key": "a"}, "'embeddings' has 7 values, the model takes 8"),
    ({"embeddings": [0.0] * 7 + [math.nan], "key": "a"}, "'embeddings'[7] is nan"),
    ({"embeddings": [0.0] * 7 + [math.inf], "key": "a"}, "must be finite"),
    ({"embeddings": [0.0] * 7 + [1e39], "key": "a"}, "too large for float32"),
    ({"embeddings": [0.0] * 7 + ["1"], "key": "a"}, "is a string, not a number"),
    ({"embeddings": [0.0] * 8}, "missing 'key'"),
    ({"embeddings": [0.0] * 8, "key": True}, "'key' must be a string"),
    ({"embeddings": [0.0] * 8, "key": "a", "extra": 1}, "unknown field(s) 'extra'"),
    ({"key": "a"}, "needs exactly one of"),
    ({"embeddings": [0.0] * 8, "image_bytes": {"b64": PNG_B64}, "key": "a"}, "not both"),
    ({"image_bytes": {"b64": "not base64!"}, "key": "a"}, "not valid base64"),
    ({"image_bytes": {"b64": "aGVsbG8="}, "key": "a"}, "does not decode as an image"),
    ({"image_bytes": {"b64": PNG_B64[: len(PNG_B64) // 2 // 4 * 4]}, "key": "a"}, "does not decode"),
    ({"image_bytes": "abc", "key": "a"}, "must be {\"b64\""),
    ([1, 2, 3], "expected a JSON object"),
])
def test_each_bad_instance_says_what_is_wrong(obj: Any, message: str) -> None:
    got = parse_instance(obj, 3, E)
    assert isinstance(got, BadInstance)
    assert got.error.startswith("instance 3: ") and message in got.error


def test_too_small_to_crop_is_refused() -> None:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (1, 5)).save(buf, format="PNG")
    got = parse_instance({"image_bytes": {"b64": base64.b64encode(buf.getvalue()).decode()}, "key": "s"}, 2, E)
    assert isinstance(got, BadInstance) and "1x5 pixels" in got.error


def test_gif_is_refused_and_jpeg_accepted() -> None:
    gif = base64.b64encode(_png(fmt="GIF")).decode()
    jpg = base64.b64encode(_png(fmt="JPEG")).decode()
    assert "GIF" in parse_instance({"image_bytes": {"b64": gif}, "key": "g"}, 0, E).error  # type: ignore[union-attr]  # a BadInstance
    assert isinstance(parse_instance({"image_bytes": {"b64": jpg}, "key": "j"}, 0, E), ImageInstance)


def test_instances_must_be_a_list() -> None:
    with pytest.raises(InvalidInput):
        parse_instances({"embeddings": []}, E)


# ---- the real model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor(tiny_job_dir: Path):
    return load_predictor(tiny_job_dir / "model")


@pytest.mark.slow
def test_predictor_is_loaded_once_per_process(tiny_job_dir: Path, predictor: Any) -> None:
    assert load_predictor(tiny_job_dir / "model") is predictor
    assert predictor.embedding_size == E and predictor.image_size == 16


@pytest.mark.slow
def test_generate_and_encode_arrays(predictor: Any) -> None:
    z = np.random.default_rng(0).standard_normal((3, E)).astype(np.float32)
    images = predictor.generate(z)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(predictor.generate(z[:1]), images[:1])      # batch-independent (inference mode)
    emb = predictor.encode([_png(), _png(fmt="JPEG", size=40)])
    assert emb.shape == (2, E) and np.all(np.isfinite(emb))
    with pytest.raises(InvalidInput):
        predictor.generate(np.zeros((1, E + 1), np.float32))
    with pytest.raises(InvalidInput):
        predictor.encode([b"nope"])


@pytest.mark.slow
def test_bad_instances_do_not_spoil_the_others(predictor: Any) -> None:
    from PIL import Image
    z = [0.1] * E
    instances = [
        {"embeddings": z, "key": "0"},
        {"embeddings": z[:-1], "key": "1"},
        {"image_bytes": {"b64": PNG_B64}, "key": 2},
        {"image_bytes": {"b64": "aGVsbG8="}, "key": "3"},
        "nonsense",
        {"embeddings": z, "key": "5"},
    ]
    out = predictor.predict(instances)
    assert [o.get("key") for o in out] == ["0", "1", 2, "3", None, "5"]
    assert [("error" in o) for o in out] == [False, True, False, True, True, False]
    png = base64.b64decode(out[0]["image_bytes"]["b64"])
    assert Image.open(io.BytesIO(png)).size == (16, 16)
    assert out[0]["image_bytes"] == out[5]["image_bytes"]
    assert len(out[2]["embeddings"]) == E
    assert out[1]["error"] == "instance 1: 'embeddings' has 7 values, the model takes 8"
    assert out[4]["error"].startswith("instance 4: ")


@pytest.mark.slow
def test_large_requests_are_chunked(predictor: Any) -> None:
    out = predictor.predict([{"embeddings": [float(i % 3)] * E, "key": str(i)} for i in range(150)])
    assert len(out) == 150 and all("image_bytes" in o for o in out)
    assert [o["key"] for o in out] == [str(i) for i in range(150)]


@pytest.mark.slow
def test_png_pixels_match_the_saved_models_own_serving_signature(predictor: Any) -> None:
    """predict() encodes PNGs with PIL (fast); the pixels must equal serving_default's PNGs."""
    import tensorflow as tf
    from PIL import Image
    z = np.random.default_rng(1).standard_normal((4, E)).astype(np.float32)
    ours = predictor.predict([{"embeddings": v.tolist(), "key": str(i)} for i, v in enumerate(z)])
    theirs = predictor._generate(embeddings=tf.constant(z), key=tf.constant(["k"] * 4))["image_bytes"].numpy()
    for o, t in zip(ours, theirs):
        a = np.asarray(Image.open(io.BytesIO(base64.b64decode(o["image_bytes"]["b64"]))))
        b = np.asarray(Image.open(io.BytesIO(t)))
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_unusual_but_valid_images_encode(predictor: Any) -> None:
    from PIL import Image
    rgb = Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8))
    sixteen = Image.fromarray((np.random.default_rng(0).random((30, 40)) * 65535).astype(np.uint16))

    def b64(img: Any, fmt: str, **kw: Any) -> str:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return base64.b64encode(buf.getvalue()).decode()

    cases = [b64(rgb.convert("L"), "PNG"), b64(rgb.convert("RGBA"), "PNG"), b64(sixteen, "PNG"),
             b64(rgb.convert("P"), "PNG"), b64(rgb.convert("CMYK"), "JPEG"), b64(rgb, "JPEG", progressive=True),
             b64(rgb.convert("L"), "JPEG"), b64(Image.new("RGB", (2, 2)), "PNG")]
    out = predictor.predict([{"image_bytes": {"b64": c}, "key": str(i)} for i, c in enumerate(cases)])
    assert all("embeddings" in o for o in out), [o.get("error") for o in out]
