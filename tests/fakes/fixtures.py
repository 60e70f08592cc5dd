"""Fixtures for the Vertex AI tests: a GCS emulator, the fake Vertex server, a configured backend.

Import them into a test module with `from tests.fakes.fixtures import *`.
"""
from __future__ import annotations

import logging
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

__all__ = ["gcs_emulator", "storage_client", "fake_vertex", "vertex_profile", "vertex_backend",
           "PROJECT", "REGION", "BUCKET", "make_backend", "make_bucket"]


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


@pytest.fixture
def storage_client(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real google-cloud-storage client on the emulator, with a fresh bucket in REGION."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = gcs.make_client(PROJECT, None, gcs_emulator)
    for b in list(client.list_buckets()):
        for blob in list(client.list_blobs(b.name)):
            blob.delete()
        b.delete()
    make_bucket(client, BUCKET, REGION.upper())
    gcs.set_default_client(client)
    yield client
    gcs.set_default_client(None)
    gcs.set_default_factory(None)


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
            "poll_interval_s": 0.05, "refresh_interval_s": 0.0, "log_reads_per_minute": 60_000, "operation_deadline_s": 60.0, **extra}


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
