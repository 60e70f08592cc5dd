"""Writing the job dir of docs/contracts.md: status, metrics, samples, config.

Local and `/gcs/BUCKET/...` paths go through the os module (atomic rename + fsync);
`gs://` URIs (what Vertex AI puts in AIP_* variables) go through tf.io.gfile.
Only the chief worker writes; the others get a JobDir with `enabled=False`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, TYPE_CHECKING

from trainer.contract import CANCELLED, FAILED, METRICS, RUNNING, SAMPLE_NAME, SAMPLES, STATUS, SUCCEEDED

if TYPE_CHECKING:
    import tensorflow as tf


_T0 = time.monotonic()


def log(msg: str) -> None:
    """Progress lines with seconds since start: what a person tailing train.log wants.

    stdout, not stderr: Vertex AI logs everything on stderr at ERROR severity, and a job's
    "last errors" should be errors (locally both go to train.log).
    """
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


def _gfile() -> Any:  # TensorFlow loads only for gs:// job dirs; tf.io.gfile is untyped
    import tensorflow as tf
    return tf.io.gfile


def is_url(path: str) -> bool:
    return "://" in path


def join(*parts: str) -> str:
    return os.path.join(*parts)


def makedirs(path: str) -> None:
    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Temporary name, fsync, rename: a reader sees the old file or the new one, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    if is_url(path):
        with _gfile().GFile(tmp, "wb") as f:
            f.write(data)
        _gfile().rename(tmp, path, overwrite=True)
        return
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JobDir:
    def __init__(self, root: str, enabled: bool = True) -> None:
        self.root, self.enabled = root, enabled
        self._status: dict[str, Any] = {"state": RUNNING, "step": 0, "max_steps": 0, "error": "",
                                        "updated": time.time(), "pid": os.getpid(),
                                        "images_per_sec": 0.0}
        if enabled:
            for sub in ("", SAMPLES):
                makedirs(join(root, sub) if sub else root)

    def path(self, *parts: str) -> str:
        return join(self.root, *parts)

    def write_json(self, name: str, obj: Any) -> None:
        if self.enabled:
            write_bytes_atomic(self.path(name), json.dumps(obj, indent=1).encode())

    def status(self, **fields: Any) -> None:
        self._status.update(fields, updated=time.time(), pid=os.getpid())
        self.write_json(STATUS, self._status)

    def append_metrics(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps(row) + "\n"
        if is_url(self.root):      # object stores cannot append: rewrite (small file)
            old = self._read_metrics()
            write_bytes_atomic(self.path(METRICS), old + line.encode())
            return
        with open(self.path(METRICS), "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    def _read_metrics(self) -> bytes:
        path = self.path(METRICS)
        if is_url(path):
            gfile = _gfile()
            if not gfile.exists(path):
                return b""
            with gfile.GFile(path, "rb") as f:
                data: bytes = f.read()
                return data
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def truncate_metrics(self, step: int) -> None:
        """On resume: drop rows written after the checkpoint we restart from (they will be redone)."""
        if not self.enabled:
            return
        keep = []
        for line in self._read_metrics().decode("utf-8", "replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue          # a half-written last line from a killed run
            if int(row.get("step", 0)) <= step:
                keep.append(json.dumps(row) + "\n")
        write_bytes_atomic(self.path(METRICS), "".join(keep).encode())

    def write_sample(self, step: int, grid_png: bytes) -> None:
        if self.enabled:
            write_bytes_atomic(self.path(SAMPLES, SAMPLE_NAME.format(step=step)), grid_png)

    def write_probe_sample(self, probe: str, step: int, grid_png: bytes) -> None:
        """A grid from an --ema-probes copy: probes/<probe>/step-N.png, beside samples/."""
        if self.enabled:
            folder = self.path("probes", probe)
            makedirs(folder)
            write_bytes_atomic(join(folder, SAMPLE_NAME.format(step=step)), grid_png)


def image_grid(images: tf.Tensor, columns: int) -> tf.Tensor:
    """[n, h, w, 3] in [-1, 1] -> one uint8 grid image [rows*h, columns*w, 3]."""
    import tensorflow as tf
    n, h, w = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
    rows = max(1, -(-n // columns))
    pad = rows * columns - n
    # laid out in float, cast last: a uint8 transpose makes oneDNN write an E0000 line to
    # fd 2 (train.log) on CPUs without AVX-512
    x = tf.clip_by_value(tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5), 0, 255)
    if pad:
        x = tf.concat([x, tf.zeros([pad, h, w, 3], tf.float32)], 0)
    x = tf.reshape(x, [rows, columns, h, w, 3])
    x = tf.transpose(x, [0, 2, 1, 3, 4])
    return tf.cast(tf.reshape(x, [rows * h, columns * w, 3]), tf.uint8)


def png(image: tf.Tensor) -> bytes:
    import tensorflow as tf
    encoded: bytes = tf.io.encode_png(image).numpy()
    return encoded


__all__ = ["JobDir", "image_grid", "png", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
