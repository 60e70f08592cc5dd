"""Opt-in: train with the training image's TensorFlow, serve with the serving image's.

genml trains on `tensorflow/tensorflow:2.17.1` and serves on Vertex AI's prebuilt
`tf2-cpu.2-15` (core/vertex/images.py). This builds the trainer sdist exactly as the
Vertex backend uploads it, runs it through the same launcher the CustomJob runs (so the
export copies files instead of renaming folders, as on the /gcs mount), then loads the
exported SavedModel with the other TensorFlow and calls `serving_default` and `encode`.

It needs one Python per TensorFlow, so it is skipped unless both are named:

    python3.11 -m venv /tmp/tf217 && /tmp/tf217/bin/pip install tensorflow-cpu==2.17.1
    python3.11 -m venv /tmp/tf215 && /tmp/tf215/bin/pip install tensorflow-cpu==2.15.1
    GENML_TRAINING_PYTHON=/tmp/tf217/bin/python GENML_SERVING_PYTHON=/tmp/tf215/bin/python \\
        .venv/bin/python -m pytest tests/test_vertex_tf_pairing.py
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.vertex import images

TRAIN_PY = os.environ.get("GENML_TRAINING_PYTHON", "")
SERVE_PY = os.environ.get("GENML_SERVING_PYTHON", "")

SERVE = r'''
import sys
import numpy as np
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
gen = m.signatures["serving_default"]
e = gen.structured_input_signature[1]["embeddings"].shape[-1]
out = gen(embeddings=tf.zeros([2, e]), key=tf.constant(["a", "b"]))
png = out["image_bytes"].numpy()[0]
assert png.startswith(b"\x89PNG"), png[:8]
enc = m.signatures["encode"](image_bytes=tf.constant([png]), key=tf.constant(["a"]))
assert enc["embeddings"].shape == (1, e) and np.isfinite(enc["embeddings"].numpy()).all()
print("served with TensorFlow", tf.__version__)
'''


def _version(python: str) -> str:
    return subprocess.run([python, "-c", "import tensorflow as tf; print(tf.__version__)"], capture_output=True,
                          text=True, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout.strip()


@pytest.mark.slow
@pytest.mark.skipif(not (TRAIN_PY and SERVE_PY), reason="needs GENML_TRAINING_PYTHON and GENML_SERVING_PYTHON")
def test_a_model_trained_on_the_training_image_serves_on_the_serving_image(tmp_path: Path) -> None:
    from core.datasets.catalog import build_folder
    from core.vertex.packaging import build_sdist
    train_tf, serve_tf = _version(TRAIN_PY), _version(SERVE_PY)
    assert train_tf == images.find(images.TRAINING_CPU).tensorflow            # type: ignore[union-attr]  # known image
    assert serve_tf.startswith(images.find(images.SERVING_CPU).tensorflow)    # type: ignore[union-attr]  # known image
    _, name, data = build_sdist()
    (tmp_path / name).write_bytes(data)
    build_folder(tmp_path / "data", count=40, image_size=32, name="demo", workers=1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH="")
    r = subprocess.run([TRAIN_PY, "-c", images.LAUNCHER, str(tmp_path / name), "--data-dir", str(tmp_path / "data"),
                        "--job-dir", str(tmp_path / "job"), "--preset", "tiny"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([SERVE_PY, "-c", SERVE, str(tmp_path / "job" / "model")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"served with TensorFlow {serve_tf}" in r.stdout


def test_the_tf_serving_way_out_serves_the_trainers_tensorflow_version() -> None:
    """The TF Serving image genml suggests (docs/vertex.md, Containers) pairs with the training
    image by version only: tensorflow/serving:X is built on TensorFlow X. Nothing here runs
    tensorflow_model_server; this keeps the two tags moving together."""
    assert images.tag_version(images.TF_SERVING) == images.tag_version(images.TRAINING_CPU) == "2.17.1"
    custom = images.find(images.tf_serving_uri("p", "us-central1"), "serving")
    assert custom is not None and custom.kind == "tf-serving" and custom.tensorflow == "2.17.1"
