"""The trainer as a source distribution for Vertex AI's pythonPackageSpec.

Vertex pip-installs the package into a prebuilt TensorFlow container, so it holds
trainer/ and nothing else, with no dependencies (TensorFlow is already there and a
dependency would make pip fetch a second copy). The archive is reproducible (sorted
members, fixed times and owners), so its upload path carries a hash of its content and an
unchanged trainer is uploaded once.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

from core.errors import GenmlError

DIST_NAME = "genml_trainer"
VERSION = "0.1.0"
MTIME = 1_700_000_000

SETUP_PY = f'''from setuptools import find_packages, setup

setup(
    name="{DIST_NAME}",
    version="{VERSION}",
    description="genml's VAE-GAN trainer (python -m trainer.task)",
    packages=find_packages(include=["trainer", "trainer.*"]),
    install_requires=[],
    python_requires=">=3.10",
)
'''

PKG_INFO = f"""Metadata-Version: 2.1
Name: {DIST_NAME}
Version: {VERSION}
Summary: genml's VAE-GAN trainer (python -m trainer.task)
Requires-Python: >=3.10
"""


def trainer_dir() -> Path:
    """Where trainer/ is, without importing it (its __init__ may load TensorFlow)."""
    spec = importlib.util.find_spec("trainer")
    if spec is None or not spec.submodule_search_locations:
        raise GenmlError("The trainer package is not installed next to genml.", "Reinstall genml: pip install -e .")
    return Path(list(spec.submodule_search_locations)[0])


def build_sdist(src: Path | None = None) -> tuple[str, str, bytes]:
    """(content hash, file name, bytes) of the trainer sdist.

    The hash goes into the upload folder, not the file name: pip insists that an sdist's
    file name matches the version in its metadata.
    """
    src = src or trainer_dir()
    files = sorted(p for p in src.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json", ".txt"))
    if not any(p.name == "task.py" for p in files):
        raise GenmlError(f"{src} has no task.py, so Vertex AI could not run `python -m trainer.task`.",
                         "Reinstall genml; the trainer package is incomplete.")
    root = f"{DIST_NAME}-{VERSION}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
        add("PKG-INFO", PKG_INFO.encode())
        add("setup.py", SETUP_PY.encode())
        for p in files:
            add("trainer/" + p.relative_to(src).as_posix(), p.read_bytes())
    data = gzip.compress(raw.getvalue(), mtime=0)
    digest = hashlib.sha256(data).hexdigest()[:12]
    return digest, f"{DIST_NAME}-{VERSION}.tar.gz", data
