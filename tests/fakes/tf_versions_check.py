"""By hand, not in CI: train with the training container's TensorFlow, serve with the serving one's.

Vertex AI's newest prebuilt containers carry TensorFlow 2.17 for training
(tf-cpu.2-17.py310) and 2.15 for serving (tf2-cpu.2-15). This builds the trainer sdist
exactly as the Vertex backend uploads it, runs `python -m trainer.task --preset tiny`
from it with one interpreter, then loads the exported SavedModel with another and calls
the `serving_default` and `encode` signatures.

    python3.11 -m venv /tmp/tf217 && /tmp/tf217/bin/pip install "tensorflow-cpu==2.17.*"
    python3.11 -m venv /tmp/tf215 && /tmp/tf215/bin/pip install "tensorflow-cpu==2.15.*"
    .venv/bin/python tests/fakes/tf_versions_check.py /tmp/tf217/bin/python /tmp/tf215/bin/python
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

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
print("served with TensorFlow", tf.__version__, "signatures", sorted(m.signatures))
'''


def main() -> None:
    train_py, serve_py = sys.argv[1], sys.argv[2]
    from core.datasets.catalog import build_folder
    from core.vertex.packaging import build_sdist
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        _, _, data = build_sdist()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(t / "pkg", filter="data")
        pkg = next((t / "pkg").iterdir())
        build_folder(t / "data", count=40, image_size=32, name="demo", workers=1)
        env = dict(os.environ, PYTHONPATH=str(pkg), TF_CPP_MIN_LOG_LEVEL="2")
        subprocess.run([train_py, "-c", "import tensorflow as tf; print('training with TensorFlow', tf.__version__)"],
                       env=env, check=True)
        subprocess.run([train_py, "-m", "trainer.task", "--data-dir", str(t / "data"), "--job-dir", str(t / "job"),
                        "--preset", "tiny"], env=env, check=True, cwd=t)
        subprocess.run([serve_py, "-c", SERVE, str(t / "job" / "model")], env=env, check=True)
    print("ok")


if __name__ == "__main__":
    main()
