"""The rules Vertex AI enforces that the first version of genml got wrong, and the fake
that now enforces them: container end-of-availability dates, single-region buckets, the
1.5 MB request cap, partial batch failures, log timestamps, directory renames on /gcs,
replica counts and paging. Each test fails on the code before issue 13.
"""
from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.backend import TrainOptions
from core.errors import CloudError, InvalidInput
from core.vertex import images
from core.vertex.errors import ApiError, to_cloud_error
from tests.fakes.fixtures import *  # noqa: F403  (fixtures)
from tests.fakes.fixtures import BUCKET, REGION, make_backend, make_bucket, vertex_profile
from tests.fakes.vertex import GCS_FUSE_SHIM, MAX_PREDICT_BODY, FakeVertex, rfc3339_ns
from tests.test_vertex import _succeeded_job, add_dataset, finish

OLD_TRAINING = "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest"
SERVING = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


def _pool(**task: Any) -> dict[str, Any]:
    return {"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1", **task}


def _container() -> dict[str, Any]:
    return {"containerSpec": {"imageUri": "tensorflow/tensorflow:2.17.1", "command": ["python3", "-c", "pass"]}}


def _refused(fake: FakeVertex, call: Any, text: str) -> None:
    before = len(fake.rejected)
    with pytest.raises(CloudError) as e:
        call()
    assert getattr(e.value, "http_status") == 400, e.value
    assert text.lower() in (e.value.message + " ".join(fake.rejected[before:])).lower(), e.value.message


# ---- the fake's semantic rules ------------------------------------------------------------
def test_the_fake_enforces_the_services_semantic_rules(vertex_backend: Any, fake_vertex: FakeVertex,
                                                       storage_client: Any) -> None:
    c, parent, ai = vertex_backend.clients, vertex_backend.settings.parent, vertex_backend.clients.aiplatform
    out = {"outputUriPrefix": f"gs://{BUCKET}/genml/jobs/x"}

    def job(*pools: dict[str, Any], **extra: Any) -> Any:
        body = {"displayName": "genml-x", "jobSpec": {"workerPoolSpecs": list(pools), "baseOutputDirectory": out},
                **extra}
        return lambda: c.call(ai.customJobs().create(parent=parent, body=body), "test", retry=False)

    pkg = {"packageUris": [f"gs://{BUCKET}/p.tar.gz"], "pythonModule": "trainer.task"}
    _refused(fake_vertex, job(_pool(pythonPackageSpec=dict(pkg, executorImageUri=OLD_TRAINING))), "no longer available")
    _refused(fake_vertex, job(_pool(pythonPackageSpec=dict(pkg, executorImageUri="python:3.10"))),
             "not a supported prebuilt container")
    _refused(fake_vertex, job(_pool(pythonPackageSpec=dict(pkg, executorImageUri=OLD_TRAINING), **_container())),
             "exactly one of")
    _refused(fake_vertex, job(_pool(**_container()), dict(_pool(**_container()), replicaCount="0")), "at least 1")
    _refused(fake_vertex, job(_pool(**_container()), labels={"Genml": "1"}), "invalid label")
    _refused(fake_vertex, job(_pool(**_container()), labels={"genml": "x" * 64}), "invalid label")
    _refused(fake_vertex, job(_pool(**_container()), displayName="x" * 129), "128")
    make_bucket(storage_client, "multi", "US")
    out["outputUriPrefix"] = "gs://multi/genml/jobs/x"
    _refused(fake_vertex, job(_pool(**_container())), "same regional location")
    out["outputUriPrefix"] = f"gs://{BUCKET}/genml/jobs/x"
    assert c.call(ai.customJobs().create(parent=parent, body={"displayName": "ok", "jobSpec": {
        "workerPoolSpecs": [_pool(**_container())], "baseOutputDirectory": out}}), "test")["name"]

    def upload(uri: str, image: str = SERVING) -> Any:
        body = {"model": {"displayName": "m", "artifactUri": uri, "containerSpec": {"imageUri": image}}}
        return lambda: c.call(ai.models().upload(parent=parent, body=body), "test", retry=False)
    _refused(fake_vertex, upload("gs://multi/m/"), "same regional location")
    fake_vertex.today = dt.date(2027, 1, 15)
    _refused(fake_vertex, upload(f"gs://{BUCKET}/m/"), "no longer available")
    fake_vertex.today = dt.date.today()
    assert len(fake_vertex.rejected) == 10
    fake_vertex.rejected.clear()


def test_the_fake_caps_predict_requests_and_checks_traffic_splits(vertex_backend: Any, fake_vertex: FakeVertex,
                                                                  storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    mv = vertex_backend.deploy(job.id, "faces")
    c, ai, ep = vertex_backend.clients, vertex_backend.clients.aiplatform, mv.remote["endpoint"]
    big = {"instances": [{"embeddings": [0.0] * 8, "key": "x" * (MAX_PREDICT_BODY + 10)}]}
    _refused(fake_vertex, lambda: c.call(ai.endpoints().predict(endpoint=ep, body=big), "test", retry=False),
             "payload size exceeds")
    body = {"deployedModel": {"model": mv.remote["model"], "dedicatedResources": {
        "machineSpec": {"machineType": "n1-standard-2"}, "minReplicaCount": 1, "maxReplicaCount": 1}},
        "trafficSplit": {"0": 50, "999": 50}}
    _refused(fake_vertex, lambda: c.call(ai.endpoints().deployModel(endpoint=ep, body=body), "test", retry=False),
             "traffic_split")
    assert mv.remote["endpoint"].startswith("projects/314159265358/")      # project number, as the service
    fake_vertex.rejected.clear()


# ---- 1, 2: containers and their dates -----------------------------------------------------
def test_image_table_warns_ahead_and_refuses_after_the_end_of_availability() -> None:
    assert images.status(SERVING, dt.date(2026, 6, 1))[0] == "ok"
    state, text = images.status(SERVING, dt.date(2026, 12, 2))
    assert state == "warn" and "2027-01-14" in text and "43 days" in text
    assert images.status(SERVING, dt.date(2027, 1, 15))[0] == "expired"
    assert images.status(OLD_TRAINING, dt.date(2026, 12, 2))[0] == "expired"
    assert images.status(images.TRAINING_CPU, dt.date(2030, 1, 1))[0] == "ok"      # no Vertex date applies
    assert images.status("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-99:latest")[0] == "unknown"
    for img in images.TABLE:              # every figure says where it comes from
        assert img.source and (img.end_of_availability or "Docker Hub" in img.source)


def test_an_expired_image_is_refused_before_anything_is_submitted(workspace: Any, fake_vertex: FakeVertex,
                                                                  gcs_emulator: str, storage_client: Any,
                                                                  tmp_path: Path) -> None:
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, training_image=OLD_TRAINING))
    backend.ctx.today = lambda: dt.date(2026, 12, 2)
    add_dataset(backend, tmp_path)
    with pytest.raises(InvalidInput, match="end of availability on 2026-07-11") as e:
        backend.submit_job("faces", TrainOptions(preset="tiny"))
    assert "training_image" in e.value.hint
    assert fake_vertex.calls("aiplatform.projects.locations.customJobs.create") == []
    results = {label: (ok, detail) for label, ok, detail in backend.check()}
    assert results["training image"][0] is False
    assert results["serving image"][0] is True and results["serving image"][1].startswith("warning:")


def test_deploying_on_an_expired_serving_image_is_refused(vertex_backend: Any, fake_vertex: FakeVertex,
                                                          storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    vertex_backend.ctx.today = lambda: dt.date(2027, 1, 15)
    with pytest.raises(InvalidInput, match="tf2-cpu.2-15"):
        vertex_backend.deploy(job.id, "faces")
    assert fake_vertex.calls("aiplatform.projects.locations.models.upload") == []


# ---- 3: bucket location ----------------------------------------------------------------------
@pytest.mark.parametrize("location,kind", [("US", "multi-region"), ("NAM4", "dual-region"),
                                           ("EUR4", "dual-region")])
def test_multi_and_dual_region_buckets_are_refused(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                                   storage_client: Any, tmp_path: Path, location: str,
                                                   kind: str) -> None:
    make_bucket(storage_client, "wide-bucket", location)
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, bucket="wide-bucket"))
    add_dataset(backend, tmp_path)
    with pytest.raises(CloudError) as e:
        backend.submit_job("faces", TrainOptions(preset="tiny"))
    assert kind in e.value.message and "single-region bucket in us-central1" in e.value.message
    assert "--location us-central1" in e.value.hint
    assert fake_vertex.calls("aiplatform.projects.locations.customJobs.create") == []


# ---- 4: online payload -------------------------------------------------------------------------
def _photo(w: int = 2400, h: int = 1800) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_a_phone_photo_is_downscaled_and_requests_stay_under_the_cap(vertex_backend: Any, fake_vertex: FakeVertex,
                                                                     storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    vertex_backend.deploy(job.id, "faces")
    pred = vertex_backend.predictor("faces")
    photo = _photo()
    assert len(base64.b64encode(photo)) > 4_000_000                 # ~5.5 MB of base64, as in the issue
    strip = _photo(6000, 512)                 # already 512 px on its short side: shrinking cannot help
    out = pred.predict([{"image_bytes": {"b64": base64.b64encode(photo).decode()}, "key": "photo"},
                        *[{"image_bytes": {"b64": base64.b64encode(_photo(900, 700)).decode()}, "key": str(i)}
                          for i in range(4)],
                        {"image_bytes": {"b64": base64.b64encode(strip).decode()}, "key": "huge"}])
    assert out[0] == {"embeddings": [0.5] * 8, "key": "photo"}
    assert all("embeddings" in o for o in out[1:5])
    assert out[5]["key"] == "huge" and "1.5 MB" in out[5]["error"] and "genml bug" not in out[5]["error"]
    assert pred.encode([photo]).shape == (1, 8)
    assert fake_vertex.rejected == []
    sent = fake_vertex.calls("aiplatform.projects.locations.endpoints.rawPredict")
    assert len(sent) >= 2 and all(len(json.dumps(b)) < 1_500_000 for b in sent)
    from PIL import Image
    first = base64.b64decode(sent[0]["instances"][0]["image_bytes"]["b64"])
    assert min(Image.open(io.BytesIO(first)).size) == 512 and len(first) < len(photo) // 4


def test_a_too_large_request_is_explained_not_blamed_on_genml() -> None:
    too_big = "Request payload size exceeds the limit: 1572864 bytes."
    err = ApiError.parse(400, json.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": too_big}}))
    exc = to_cloud_error(err, what="Encoding", project="p", region=REGION)
    assert "1.5 MB" in exc.hint and "genml bug" not in exc.hint
    act = ApiError.parse(403, json.dumps({"error": {"code": 403, "status": "PERMISSION_DENIED", "message":
                                                    "Permission 'iam.serviceAccounts.actAs' denied on service "
                                                    "account sa@p.iam.gserviceaccount.com"}}))
    assert "Service Account User" in to_cloud_error(act, what="Submitting", project="p", region=REGION).hint


# ---- 5: batch results -------------------------------------------------------------------------------
def test_a_partly_successful_batch_keeps_its_results_and_its_non_json_errors(
        vertex_backend: Any, fake_vertex: FakeVertex, storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    vertex_backend.deploy(job.id, "faces")
    fake_vertex.batch_refuse = lambda inst: inst.get("key") == "1"
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"embeddings": [float(i)] * 8, "key": str(i)}) for i in range(3)) + "\n")
    res = vertex_backend.batch_predict("faces", src, tmp_path / "out")
    assert (res.predictions, res.errors) == (2, 1)
    rows = [json.loads(x) for x in Path(res.files[0]).read_text().splitlines()]
    errors = [json.loads(x) for x in Path(res.files[1]).read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == ["0", "2"]
    assert errors[0]["error"].startswith("Vertex AI: ('Post request fails")
    raw = [f for f in res.files if Path(f).name.startswith("prediction.errors_stats")]
    assert raw and Path(raw[0]).read_text().startswith("('")          # kept as the service wrote it


# ---- 6: log following ---------------------------------------------------------------------------------
def test_the_log_cursor_compares_parsed_times_and_shows_late_entries(vertex_backend: Any, fake_vertex: FakeVertex,
                                                                     tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    jid = job.remote["job_id"]
    fake_vertex.entries.clear()
    base = (time.time_ns() // 1_000_000_000) * 1_000_000_000
    at = [base + 500_000_000, base + 1_000_000_000, base + 1_000_000_000]
    for i, ns in enumerate(at):
        fake_vertex._log(jid, "INFO", f"line {i}", timestamp=rfc3339_ns(ns))
    assert fake_vertex.entries[1]["timestamp"].endswith(":" + time.strftime("%S", time.gmtime(base // 10**9 + 1)) + "Z")
    first = vertex_backend.read_log(job.id)
    assert [x.split("] ")[1] for x in first.lines] == ["line 0", "line 1", "line 2"]
    # 9 digits one nanosecond later: as a string "...:01.000000001Z" < "...:01Z", as a time it is after
    fake_vertex._log(jid, "INFO", "line 3", timestamp=rfc3339_ns(base + 1_000_000_001))
    # and one that reaches Cloud Logging late, stamped before the newest line already shown
    fake_vertex._log(jid, "INFO", "late line", timestamp=rfc3339_ns(base + 900_000_000))
    # and one that reaches it half a minute late (ingestion delays of tens of seconds happen)
    fake_vertex._log(jid, "INFO", "30 s late", timestamp=rfc3339_ns(base + 1_000_000_000 - 30 * 10**9))
    second = vertex_backend.read_log(job.id, first.cursor)
    assert [x.split("] ")[1] for x in second.lines] == ["30 s late", "late line", "line 3"]
    assert vertex_backend.read_log(job.id, second.cursor).lines == []               # nothing twice
    assert len(json.dumps(second.cursor)) < 2000                                    # the cursor stays small


# ---- 7: the /gcs mount refuses directory renames ------------------------------------------------
def test_the_fakes_gcs_mount_refuses_directory_renames(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(GCS_FUSE_SHIM)
    mount = tmp_path / "gcs"
    (mount / "b" / "d").mkdir(parents=True)
    (mount / "b" / "f").write_text("x")
    code = ("import os, sys\n"
            "m = sys.argv[1]\n"
            "os.rename(m + '/b/f', m + '/b/g')\n"
            "try:\n    os.rename(m + '/b/d', m + '/b/e')\nexcept OSError as e:\n    print('os refused', e.errno)\n"
            "import tensorflow as tf\n"
            "try:\n    tf.io.gfile.rename(m + '/b/d', m + '/b/e')\nexcept OSError as e:\n    print('tf refused')\n"
            "print(sorted(os.listdir(m + '/b')))\n")
    env = dict(os.environ, PYTHONPATH=str(shim), GENML_FAKE_GCS_MOUNT=str(mount), TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code, str(mount)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "os refused 95" in r.stdout and "tf refused" in r.stdout and "['d', 'g']" in r.stdout


# ---- 9: smaller items -----------------------------------------------------------------------------
def test_replicas_1_overrides_the_profile(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                          tmp_path: Path) -> None:
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, replicas=3))
    add_dataset(backend, tmp_path)
    backend.submit_job("faces", TrainOptions(preset="tiny", replicas=1))
    backend.submit_job("faces", TrainOptions(preset="tiny"))
    one, default = fake_vertex.calls("aiplatform.projects.locations.customJobs.create")
    assert len(one["jobSpec"]["workerPoolSpecs"]) == 1
    assert [p["replicaCount"] for p in default["jobSpec"]["workerPoolSpecs"]] == ["1", "2"]


def test_billable_resources_reads_every_page(vertex_backend: Any, fake_vertex: FakeVertex, tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    fake_vertex.max_page = 2
    ids = [vertex_backend.submit_job("faces", TrainOptions(preset="tiny")).remote["name"] for _ in range(5)]
    assert sorted(j["name"] for j in vertex_backend.billable_resources()["training"]) == sorted(ids)
    finish(vertex_backend, vertex_backend.list_jobs()[0].id)
    assert len(vertex_backend.billable_resources()["training"]) == 4


def test_resuming_a_job_saved_on_the_old_prebuilt_image_moves_it_to_the_container(
        vertex_backend: Any, fake_vertex: FakeVertex, tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    vertex_backend.cancel_job(job.id)
    finish(vertex_backend, job.id)
    saved = vertex_backend.registry.get_job(job.id).remote
    pool = saved["body"]["jobSpec"]["workerPoolSpecs"][0]
    args = pool["containerSpec"]["args"][1:]
    old = {k: v for k, v in pool.items() if k != "containerSpec"}
    old["pythonPackageSpec"] = {"executorImageUri": OLD_TRAINING, "packageUris": ["gs://x/p.tar.gz"],
                                "pythonModule": "trainer.task", "args": args}
    body = dict(saved["body"], jobSpec=dict(saved["body"]["jobSpec"], workerPoolSpecs=[old]))
    vertex_backend.registry.update_job(job.id, remote=dict(saved, body=body))      # as genml 0.1 saved it
    vertex_backend.resume_job(job.id)
    sent = fake_vertex.calls("aiplatform.projects.locations.customJobs.create")[-1]["jobSpec"]["workerPoolSpecs"][0]
    assert "pythonPackageSpec" not in sent and sent["containerSpec"]["args"][1:] == args
    assert sent["containerSpec"]["imageUri"] == images.TRAINING_CPU
