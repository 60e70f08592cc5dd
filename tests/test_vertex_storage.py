"""genml's Cloud Storage code on two stand-ins: gcp-storage-emulator (pure Python) and
fake-gcs-server (Go; honours generation preconditions and pages its listings). Code that
passes on only one of them leans on a quirk, not on the API."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from core.jobdir import JobDir
from core.vertex import storage as gcs
from tests.fakes.fixtures import *  # noqa: F403  (fixtures)
from tests.fakes.fixtures import BUCKET


def _folder(tmp_path: Path, shards: int = 3) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir()
    for i in range(shards):
        (folder / f"train-{i:05d}-of-{shards:05d}.tfrecord").write_bytes(bytes([i]) * (1000 + i))
    (folder / "manifest.json").write_text(json.dumps({"shards": shards}))
    return folder


def test_upload_dir_skips_unchanged_replaces_changed_and_deletes_stale(any_storage: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    uri = f"gs://{BUCKET}/genml/datasets/ds"
    first = gcs.upload_dir(any_storage, folder, uri, delete_extra=True)
    assert (first.uploaded, first.skipped) == (4, 0)
    names = {b.name: b for b in any_storage.list_blobs(BUCKET, prefix="genml/datasets/ds/")}
    assert len(names) == 4
    assert names["genml/datasets/ds/manifest.json"].updated >= max(
        b.updated for n, b in names.items() if not n.endswith("manifest.json"))
    (folder / "train-00001-of-00003.tfrecord").write_bytes(b"changed")
    again = gcs.upload_dir(any_storage, folder, uri, delete_extra=True)
    assert (again.uploaded, again.skipped) == (1, 3)
    (folder / "train-00002-of-00003.tfrecord").unlink()
    third = gcs.upload_dir(any_storage, folder, uri, delete_extra=True)
    assert (third.uploaded, third.deleted) == (0, 1)
    assert sorted(gcs.remote_checksums(any_storage, uri)) == ["manifest.json", "train-00000-of-00003.tfrecord",
                                                              "train-00001-of-00003.tfrecord"]


def test_a_big_file_goes_up_in_chunks_and_comes_back_whole(any_storage: Any, tmp_path: Path) -> None:
    data = os.urandom(gcs.CHUNK_SIZE + 1_000_000)           # more than one resumable chunk
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    gcs.upload_dir(any_storage, src.parent, f"gs://{BUCKET}/big")
    back = gcs.download_prefix(any_storage, f"gs://{BUCKET}/big", tmp_path / "back", want=lambda n: n == "big.bin")
    assert [p.name for p in back] == ["big.bin"] and back[0].read_bytes() == data


def test_gcs_store_reads_ranges_lists_folders_and_says_missing(any_storage: Any) -> None:
    b = any_storage.bucket(BUCKET)
    b.blob("genml/jobs/j1/status.json").upload_from_string(json.dumps({"state": "JOB_STATE_RUNNING", "step": 3}))
    b.blob("genml/jobs/j1/metrics.jsonl").upload_from_string('{"kind": "train", "step": 1, "loss_g": 2.0}\n')
    b.blob("genml/jobs/j1/samples/step-000100.png").upload_from_string(b"png")
    store = gcs.GcsStore(f"gs://{BUCKET}/genml/jobs/j1", any_storage)
    assert store.read_range("status.json", 2, 7) == b"state"
    assert store.list() == ["metrics.jsonl", "samples", "status.json"]
    assert store.exists("samples") and not store.exists("model")
    assert store.size("metrics.jsonl") == len('{"kind": "train", "step": 1, "loss_g": 2.0}\n')
    assert JobDir(store).status()["step"] == 3
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nope.json")


def test_the_stricter_stand_in_honours_preconditions(fake_gcs_server: str) -> None:
    """Why fake-gcs-server is worth running: gcp-storage-emulator ignores if_generation_match."""
    from google.api_core import exceptions as gexc
    client = gcs.make_client("p", None, fake_gcs_server)
    bucket = client.bucket(BUCKET) if client.lookup_bucket(BUCKET) else client.create_bucket(BUCKET)
    bucket.blob("once").upload_from_string(b"1", if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("once").upload_from_string(b"2", if_generation_match=0)
    assert bucket.blob("once").download_as_bytes() == b"1"


def test_copy_prefix_copies_server_side_keeping_the_layout_with_the_marker_last(any_storage: Any) -> None:
    """How a model is laid out for TF Serving (core/vertex/serving.py): JOB/model/ -> JOB/serving/1/."""
    b = any_storage.bucket(BUCKET)
    for name, data in (("saved_model.pb", b"pb"), ("variables/variables.index", b"ix"), ("genml.json", b"{}")):
        b.blob(f"genml/jobs/j1/model/{name}").upload_from_string(data)
    b.blob("genml/jobs/j1/modelx/other").upload_from_string(b"not under model/")
    n = gcs.copy_prefix(any_storage, f"gs://{BUCKET}/genml/jobs/j1/model", f"gs://{BUCKET}/genml/jobs/j1/serving/1",
                        last="saved_model.pb")
    copied = list(any_storage.list_blobs(BUCKET, prefix="genml/jobs/j1/serving/"))
    assert n == 3 and sorted(x.name for x in copied) == ["genml/jobs/j1/serving/1/genml.json",
                                                         "genml/jobs/j1/serving/1/saved_model.pb",
                                                         "genml/jobs/j1/serving/1/variables/variables.index"]
    assert b.blob("genml/jobs/j1/serving/1/variables/variables.index").download_as_bytes() == b"ix"
    # again: the same objects, no error (a resumed deploy repeats the copy)
    assert gcs.copy_prefix(any_storage, f"gs://{BUCKET}/genml/jobs/j1/model",
                           f"gs://{BUCKET}/genml/jobs/j1/serving/1", last="saved_model.pb") == 3
