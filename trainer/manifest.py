"""Reading and checking a dataset's manifest.json (docs/contracts.md), before TensorFlow loads.

Kept free of TensorFlow for local and /gcs/ paths so a wrong --data-dir fails in
milliseconds, not after the multi-second TensorFlow import. gs:// URIs need tf.io.gfile.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

from trainer.contract import CROP_FRACTION, DATASET_MANIFEST, DEFAULT_IMAGE_SIZE
from trainer.errors import InputError

FORMAT = "genml.dataset/1"


class _Files:
    """os for paths, tf.io.gfile for URIs."""

    def __init__(self, root: str) -> None:
        self.url = "://" in root
        if self.url:
            import tensorflow as tf
            self.gfile = tf.io.gfile

    def isdir(self, p: str) -> bool:
        return self.gfile.isdir(p) if self.url else os.path.isdir(p)

    def exists(self, p: str) -> bool:
        return self.gfile.exists(p) if self.url else os.path.exists(p)

    def read_text(self, p: str) -> str:
        if self.url:
            with self.gfile.GFile(p, "r") as f:
                return str(f.read())
        with open(p, encoding="utf-8") as f:
            return f.read()


def read_manifest(data_dir: str) -> dict[str, Any]:
    """The manifest, checked enough that training will not fail later for a dataset reason."""
    files = _Files(data_dir)
    path = os.path.join(data_dir, DATASET_MANIFEST)
    if not files.isdir(data_dir):
        raise InputError(f"dataset folder {data_dir} does not exist")
    if not files.exists(path):
        raise InputError(f"{data_dir} has no manifest.json: it is not a dataset, or it was "
                         f"not finished")
    try:
        manifest = json.loads(files.read_text(path))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict):
        raise InputError(f"{path} is not a dataset manifest")
    train = shard_paths(data_dir, manifest, "train")
    if not train or train_count(manifest) <= 0:
        raise InputError(f"dataset {data_dir} has no training images")
    missing = [p for p in train + shard_paths(data_dir, manifest, "validation")
               if not files.exists(p)]
    if missing:
        raise InputError(f"dataset {data_dir} is missing shard {os.path.basename(missing[0])}")
    return manifest


def train_count(manifest: dict[str, Any]) -> int:
    """How many training images the manifest records; 0 when it records none."""
    return int(manifest.get("counts", {}).get("train", 0) or 0)


def shard_paths(data_dir: str, manifest: dict[str, Any], split: str) -> list[str]:
    return [os.path.join(data_dir, s) for s in manifest.get("shards", {}).get(split, [])]


def max_image_size(manifest: dict[str, Any]) -> int:
    """The largest training size the stored images allow without upsampling."""
    opts = manifest.get("options", {})
    stored = opts.get("stored_size") or math.ceil(opts.get("image_size", DEFAULT_IMAGE_SIZE) / CROP_FRACTION)
    return int(math.floor(CROP_FRACTION * stored + 1e-6))
