"""The Vertex AI backend against the GCS emulator and the fake Vertex AI + Logging server.

Real google-cloud-storage and google-api-python-client clients, real HTTP on 127.0.0.1;
the fake checks every request against the shipped discovery documents (see
tests/fakes/vertex.py). Jobs here are simulated (one state per poll); the end-to-end
test in test_vertex_e2e.py runs the real trainer.
"""
from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from core.backend import TrainOptions
from core.errors import CloudError, InvalidState
from core.jobdir import JobDir
from core.registry import Registry
from core.store import open_store
from core.types import Dataset, JobState
from core.vertex import storage as gcs
from core.vertex.packaging import build_sdist
from tests.fakes.fixtures import *  # noqa: F403  (fixtures)
from tests.fakes.fixtures import BUCKET, make_backend, make_bucket, vertex_profile, without_credentials
from tests.fakes.vertex import PROJECT_NUMBER, FakeVertex, google_error


def _png(size: int = 8) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def stub_predict(uri: str, signature: str, instances: list[Any]) -> list[Any]:
    """What TF Serving answers for the two signatures, without loading TensorFlow."""
    if signature == "encode":
        return [{"embeddings": [0.5] * 8, "key": i["key"]} for i in instances]
    return [{"image_bytes": {"b64": base64.b64encode(_png()).decode()}, "key": i["key"]} for i in instances]


def add_dataset(backend: Any, tmp_path: Path, name: str = "faces", shards: int = 3) -> Path:
    """A dataset folder with the contract's file names (contents are not read by these tests)."""
    folder = tmp_path / "datasets" / name
    folder.mkdir(parents=True)
    names = [f"train-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    for i, n in enumerate(names):
        (folder / n).write_bytes(bytes([i]) * (1000 + i))
    (folder / "contact_sheet.png").write_bytes(_png())
    (folder / "manifest.json").write_text(json.dumps({"format": "genml.dataset/1", "name": name,
                                                      "shards": {"train": names, "validation": []}}))
    backend.registry.add_dataset(Dataset(name=name, path=str(folder), created=time.time(), train_count=10))
    return folder


def put_model(client: Any, job_dir: str, embedding_size: int = 8) -> None:
    bucket, prefix = gcs.split_uri(job_dir)
    b = client.bucket(bucket)
    b.blob(f"{prefix}/model/saved_model.pb").upload_from_string(b"pb")
    b.blob(f"{prefix}/model/genml.json").upload_from_string(json.dumps(
        {"image_size": 16, "embedding_size": embedding_size, "preset": "tiny", "step": 12, "dataset": "faces",
         "metrics": {"swd": 1.0}}))
    b.blob(f"{prefix}/status.json").upload_from_string(json.dumps(
        {"state": "JOB_STATE_SUCCEEDED", "step": 12, "max_steps": 12, "images_per_sec": 50.0}))


def finish(backend: Any, job_id: str, limit: int = 10) -> Any:
    for _ in range(limit):
        job = backend.get_job(job_id)
        if job.state.terminal:
            return job
    raise AssertionError(f"job {job_id} did not finish: {job.state}")


# ---- storage ------------------------------------------------------------------------------
def test_dataset_upload_is_parallel_resumable_and_manifest_last(vertex_backend: Any, storage_client: Any,
                                                                tmp_path: Path) -> None:
    folder = add_dataset(vertex_backend, tmp_path)
    order: list[str] = []
    real = gcs.upload_dir

    stats = real(storage_client, folder, vertex_backend.dataset_uri("faces"),
                 progress=lambda p: order.append(p.message))
    assert (stats.uploaded, stats.skipped) == (5, 0)
    blobs = {b.name: b for b in storage_client.list_blobs(BUCKET, prefix="genml/datasets/faces/")}
    assert "genml/datasets/faces/manifest.json" in blobs and len(blobs) == 5
    assert blobs["genml/datasets/faces/manifest.json"].updated >= max(b.updated for b in blobs.values() if
                                                                      not b.name.endswith("manifest.json"))
    # a second run only compares checksums; a changed shard goes up again
    (folder / "train-00001-of-00003.tfrecord").write_bytes(b"changed")
    again = vertex_backend.upload_dataset("faces")
    assert (again.uploaded, again.skipped) == (1, 4)
    # a rebuild with fewer shards: the stale shard goes from the bucket too
    (folder / "train-00002-of-00003.tfrecord").unlink()
    (folder / "manifest.json").write_text("{}")
    third = vertex_backend.upload_dataset("faces")
    assert (third.uploaded, third.deleted) == (1, 1)
    assert not storage_client.bucket(BUCKET).blob("genml/datasets/faces/train-00002-of-00003.tfrecord").exists()


def test_gcs_store_reads_a_cloud_job_dir_like_a_local_one(storage_client: Any) -> None:
    uri = f"gs://{BUCKET}/genml/jobs/j1"
    b = storage_client.bucket(BUCKET)
    b.blob("genml/jobs/j1/status.json").upload_from_string(json.dumps({"state": "JOB_STATE_RUNNING", "step": 3}))
    b.blob("genml/jobs/j1/metrics.jsonl").upload_from_string('{"kind": "train", "step": 1, "loss_g": 2.0}\n')
    for s in (100, 200):
        b.blob(f"genml/jobs/j1/samples/step-{s:06d}.png").upload_from_string(_png())
    store = open_store(uri)
    assert isinstance(store, gcs.GcsStore)
    jd = JobDir(store)
    assert jd.status()["step"] == 3
    assert jd.metrics().series("loss_g") == ([1], [2.0])
    b.blob("genml/jobs/j1/metrics.jsonl").upload_from_string(
        '{"kind": "train", "step": 1, "loss_g": 2.0}\n{"kind": "eval", "step": 2, "swd": 0.5}\n')
    assert jd.metrics().last_eval["swd"] == 0.5            # only the appended bytes were read
    assert jd.sample_names() == ["step-000100.png", "step-000200.png"]
    assert jd.read_sample("step-000200.png") == _png()
    assert store.list() == ["metrics.jsonl", "samples", "status.json"]
    assert store.exists("samples") and not store.exists("model") and not jd.has_model()
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nope.json")


# ---- training ----------------------------------------------------------------------------
def test_submit_poll_logs_and_succeed(vertex_backend: Any, fake_vertex: FakeVertex, storage_client: Any,
                                      tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny", max_steps=12))
    assert job.backend == "vertex" and job.state is JobState.QUEUED
    assert job.job_dir == f"gs://{BUCKET}/genml/jobs/{job.id}"
    assert len(vertex_backend.notices) == 1 and "billable" in vertex_backend.notices[0]
    body = fake_vertex.calls("aiplatform.projects.locations.customJobs.create")[0]
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert len(pools) == 1
    # a public TensorFlow image, not an expiring prebuilt one; the package comes from the /gcs mount
    spec = pools[0]["containerSpec"]
    assert "pythonPackageSpec" not in pools[0]
    assert spec["imageUri"] == "tensorflow/tensorflow:2.17.1"
    assert spec["command"][:2] == ["python3", "-c"] and "trainer.task" in spec["command"][2]
    pkg_mount = spec["args"][0]
    assert spec["args"][1:5] == ["--data-dir", f"/gcs/{BUCKET}/genml/datasets/faces",
                                 "--job-dir", f"/gcs/{BUCKET}/genml/jobs/{job.id}"]
    assert "--preset" in spec["args"] and "tiny" in spec["args"]
    assert body["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == job.job_dir
    pkg = "gs://" + pkg_mount.removeprefix("/gcs/")
    assert pkg.startswith(f"gs://{BUCKET}/genml/packages/") and pkg.endswith("/genml_trainer-0.1.0.tar.gz")
    assert storage_client.bucket(BUCKET).blob(pkg.split("/", 3)[3]).exists()
    assert storage_client.bucket(BUCKET).blob("genml/datasets/faces/manifest.json").exists()

    fake_vertex.entries.clear()             # machines not provisioned yet: no entries at all
    first = vertex_backend.read_log(job.id)
    assert len(first.lines) == 1 and "provisioning machines" in first.lines[0]
    flt = fake_vertex.calls("logging.entries.list")[0]["filter"]
    assert flt.startswith('resource.type="ml_job" AND resource.labels.job_id="')
    assert 'timestamp>="' in flt            # entries.list looks back only 24 hours without one
    assert vertex_backend.read_log(job.id, first.cursor).lines == []      # said once
    states = [vertex_backend.get_job(job.id).state for _ in range(3)]
    assert states == [JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED]
    chunk = vertex_backend.read_log(job.id, first.cursor)
    assert any("step 1/10" in line for line in chunk.lines) and chunk.lines[0].startswith("[workerpool0-0]")
    assert vertex_backend.read_log(job.id, chunk.cursor).lines == []       # nothing twice
    fake_vertex._log(job.remote["job_id"] if False else vertex_backend.get_job(job.id).remote["job_id"],
                     "INFO", "one more line")
    assert vertex_backend.read_log(job.id, chunk.cursor).lines == ["[workerpool0-0] one more line"]
    assert [j.id for j in vertex_backend.list_jobs()] == [job.id]
    # a second submit reuses the uploaded trainer package and the uploaded shards
    vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    bodies = fake_vertex.calls("aiplatform.projects.locations.customJobs.create")
    assert bodies[1]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"][0] == pkg_mount
    assert len(vertex_backend.notices) == 1


def test_replicas_add_a_worker_pool_and_accelerators_pick_the_gpu_image(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, tmp_path: Path) -> None:
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, accelerator_type="NVIDIA_TESLA_T4",
                                                     accelerator_count=1,
                                                     service_account="sa@p.iam.gserviceaccount.com"))
    add_dataset(backend, tmp_path)
    backend.submit_job("faces", TrainOptions(preset="tiny", replicas=3))
    body = fake_vertex.calls("aiplatform.projects.locations.customJobs.create")[0]
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "2"]
    assert pools[1]["containerSpec"] == pools[0]["containerSpec"]
    assert pools[0]["machineSpec"] == {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4",
                                       "acceleratorCount": 1}
    assert pools[0]["containerSpec"]["imageUri"] == "tensorflow/tensorflow:2.17.1-gpu"
    assert body["jobSpec"]["serviceAccount"] == "sa@p.iam.gserviceaccount.com"


def test_failed_job_shows_its_error_and_last_error_lines(vertex_backend: Any, fake_vertex: FakeVertex,
                                                         tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    fake_vertex.job_script = ["JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_FAILED"]
    submitted = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    bucket, prefix = gcs.split_uri(submitted.job_dir)
    vertex_backend.clients.storage.bucket(bucket).blob(f"{prefix}/status.json").upload_from_string(json.dumps(
        {"state": "JOB_STATE_FAILED", "step": 0, "error": "the dataset has no train shards"}))
    job = finish(vertex_backend, submitted.id)
    assert job.state is JobState.FAILED
    assert "trainer: the dataset has no train shards" in job.error
    assert "workerpool0-0 exited with a non-zero status" in job.error
    assert "ValueError: the dataset has no train shards" in job.error


def test_cancel_then_resume_runs_a_new_custom_job_on_the_same_job_dir(vertex_backend: Any, fake_vertex: FakeVertex,
                                                                      tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    assert vertex_backend.cancel_job(job.id).state is JobState.CANCELLING
    assert finish(vertex_backend, job.id).state is JobState.CANCELLED
    with pytest.raises(InvalidState):
        vertex_backend.cancel_job(job.id)
    resumed = vertex_backend.resume_job(job.id)
    assert resumed.id == job.id and resumed.state is JobState.QUEUED
    assert resumed.remote["name"] != job.remote["name"] and len(resumed.remote["history"]) == 2
    bodies = fake_vertex.calls("aiplatform.projects.locations.customJobs.create")
    assert bodies[1]["jobSpec"]["baseOutputDirectory"] == bodies[0]["jobSpec"]["baseOutputDirectory"]


def test_bucket_in_another_region_is_refused_before_submitting(workspace: Any, fake_vertex: FakeVertex,
                                                               gcs_emulator: str, storage_client: Any,
                                                               tmp_path: Path) -> None:
    make_bucket(storage_client, "eu-bucket", "EUROPE-WEST4")
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, bucket="eu-bucket"))
    add_dataset(backend, tmp_path)
    with pytest.raises(CloudError) as e:
        backend.submit_job("faces", TrainOptions(preset="tiny"))
    assert "EUROPE-WEST4" in e.value.message and "us-central1" in e.value.message
    assert "--location us-central1" in e.value.hint
    assert fake_vertex.calls("aiplatform.projects.locations.customJobs.create") == []
    assert backend.notices == []          # nothing billable happened


def test_quota_error_on_submit_marks_the_job_failed_and_is_not_retried(vertex_backend: Any, fake_vertex: FakeVertex,
                                                                       tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    fake_vertex.fail_next("aiplatform.projects.locations.customJobs.create", 429, google_error(
        429, "RESOURCE_EXHAUSTED", "The following quota metrics exceed quota limits: "
        "aiplatform.googleapis.com/custom_model_training_cpus"))
    with pytest.raises(CloudError) as e:
        vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    assert "custom_model_training_cpus" in e.value.message and "us-central1" in e.value.message
    assert len(fake_vertex.calls("aiplatform.projects.locations.customJobs.create")) == 1
    [job] = vertex_backend.registry.list_jobs()
    assert job.state is JobState.FAILED and "custom_model_training_cpus" in job.error


def test_lost_create_answer_does_not_submit_twice(vertex_backend: Any, fake_vertex: FakeVertex, tmp_path: Path) -> None:
    """A 503 after the job was created: the retry finds it by display name instead of creating another."""
    add_dataset(vertex_backend, tmp_path)
    orig = fake_vertex._customJobs_create

    def create_then_fail(name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        orig(name, query, body)
        fake_vertex._customJobs_create = orig
        return 503, google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
    fake_vertex._customJobs_create = create_then_fail
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    assert len(fake_vertex.custom_jobs) == 1 and job.remote["name"].endswith(next(iter(fake_vertex.custom_jobs)))


def test_log_reads_respect_the_quota_and_back_off_on_429(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                                         tmp_path: Path) -> None:
    from core.vertex import logs
    vertex_backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, log_reads_per_minute=60))
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    logs._limiters.clear()
    before = fake_vertex.log_reads
    cursors = [vertex_backend.read_log(job.id)]
    for _ in range(20):
        cursors.append(vertex_backend.read_log(job.id, cursors[-1].cursor))
    assert fake_vertex.log_reads - before <= 6          # a burst of 5 (+1 token refilled), not 21
    logs._limiters.clear()
    fake_vertex.fail_next("logging.entries.list", 429, google_error(
        429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Read requests' and limit "
        "'Read requests per minute' of service 'logging.googleapis.com'"))
    chunk = vertex_backend.read_log(job.id, cursors[-1].cursor)
    assert chunk.lines == [] and chunk.cursor == cursors[-1].cursor
    lim = logs.limiter("test-project", 60)
    assert lim.not_before > time.monotonic() and not lim.try_acquire()


# ---- models and prediction -----------------------------------------------------------------
def _succeeded_job(backend: Any, fake: FakeVertex, client: Any, tmp_path: Path) -> Any:
    add_dataset(backend, tmp_path)
    fake.predict_fn = stub_predict
    job = finish(backend, backend.submit_job("faces", TrainOptions(preset="tiny")).id)
    put_model(client, job.job_dir)
    return job


def test_deploy_predict_undeploy_remove(vertex_backend: Any, fake_vertex: FakeVertex, storage_client: Any,
                                       tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    fake_vertex.op_polls = 3
    mv = vertex_backend.deploy(job.id, "faces")
    assert mv.deployed and mv.backend == "vertex" and mv.ref == "faces@v1"
    assert mv.info["embedding_size"] == 8 and mv.remote["stage"] == "deployed"
    up = fake_vertex.calls("aiplatform.projects.locations.models.upload")[0]["model"]
    assert up["artifactUri"] == job.job_dir + "/model/"
    assert up["containerSpec"]["imageUri"] == "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    dep = fake_vertex.calls("aiplatform.projects.locations.endpoints.deployModel")[0]
    assert dep["trafficSplit"] == {"0": 100} and dep["deployedModel"]["model"] == mv.remote["model"]

    pred = vertex_backend.predictor("faces")
    assert pred.embedding_size == 8
    out = pred.predict([{"embeddings": [0.1] * 8, "key": "a"}, {"embeddings": [0.1] * 7, "key": "b"},
                        {"image_bytes": {"b64": base64.b64encode(_png()).decode()}, "key": "c"}, {"key": 4}])
    assert out[0]["key"] == "a" and "b64" in out[0]["image_bytes"]
    assert out[1] == {"error": "instance 1: 'embeddings' has 7 values, the model takes 8", "key": "b"}
    assert out[2] == {"embeddings": [0.5] * 8, "key": "c"}
    assert out[3]["key"] == 4 and "error" in out[3]        # keys come back as sent, as with the local backend
    raw = fake_vertex.calls("aiplatform.projects.locations.endpoints.rawPredict")[0]
    assert raw["signature_name"] == "encode" and raw["instances"][0]["key"] == "c"
    # one strict parser for both backends: these four were sent to the endpoint before
    sent_before = len(fake_vertex.calls("aiplatform.projects.locations.endpoints.predict"))
    odd = pred.predict([{"embeddings": [0.1] * 8}, {"embeddings": [0.1] * 8, "key": True},
                        {"embeddings": [0.1] * 8, "image_bytes": {"b64": "AAAA"}, "key": "both"},
                        {"embeddings": [0.1] * 8, "key": "u", "extra": 1}])
    assert [o["error"].split(": ", 1)[1][:12] for o in odd] == ["missing 'key", "'key' must b", "needs exactl",
                                                                "unknown fiel"]
    assert len(fake_vertex.calls("aiplatform.projects.locations.endpoints.predict")) == sent_before
    assert pred.generate(__import__("numpy").zeros((2, 8), "float32")).shape == (2, 8, 8, 3)
    assert pred.encode([_png()]).shape == (1, 8)

    billing = vertex_backend.billable_resources()
    assert [e["deployed_models"] for e in billing["endpoints"]] == [1] and billing["training"] == []
    undeployed = vertex_backend.undeploy("faces@v1")
    assert not undeployed.deployed and fake_vertex.endpoints == {}
    with pytest.raises(InvalidState):
        vertex_backend.predictor("faces@v1")
    vertex_backend.remove_model("faces")
    assert fake_vertex.models == {} and vertex_backend.list_models() == []


def test_deploy_resumes_after_a_deadline_without_uploading_again(workspace: Any, fake_vertex: FakeVertex,
                                                                 gcs_emulator: str, storage_client: Any,
                                                                 tmp_path: Path) -> None:
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, operation_deadline_s=0.0))
    job = _succeeded_job(backend, fake_vertex, storage_client, tmp_path)
    fake_vertex.op_polls = 2                  # the first poll of every operation says "not done"
    with pytest.raises(CloudError) as e:
        backend.deploy(job.id, "faces")
    assert "still running" in e.value.message and "again" in e.value.hint
    [mv] = backend.list_models()
    assert not mv.deployed and mv.remote["upload_op"]
    # a restart: a new backend (same workspace) carries on from the saved operation name
    again = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
    mv = again.deploy(job.id, "faces")
    assert mv.deployed and mv.version == 1
    assert len(fake_vertex.calls("aiplatform.projects.locations.models.upload")) == 1
    assert len(fake_vertex.calls("aiplatform.projects.locations.endpoints.create")) == 1


def test_deploy_needs_a_finished_job_with_a_model(vertex_backend: Any, fake_vertex: FakeVertex,
                                                  tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    with pytest.raises(InvalidState, match="only a finished job"):
        vertex_backend.deploy(job.id)
    finish(vertex_backend, job.id)
    with pytest.raises(InvalidState, match="no exported model"):
        vertex_backend.deploy(job.id)


def test_batch_prediction_uploads_input_and_downloads_output(vertex_backend: Any, fake_vertex: FakeVertex,
                                                             storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    vertex_backend.deploy(job.id, "faces")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in [
        {"embeddings": [0.0] * 8, "key": "0"}, {"embeddings": [1.0] * 8, "key": "1"},
        {"embeddings": [1.0] * 3, "key": "2"},
        {"image_bytes": {"b64": base64.b64encode(_png()).decode()}, "key": "3"}]))
    res = vertex_backend.batch_predict("faces", src, tmp_path / "out")
    assert (res.predictions, res.errors) == (2, 2)
    rows = [json.loads(x) for x in Path(res.files[0]).read_text().splitlines()]
    errors = [json.loads(x) for x in Path(res.files[1]).read_text().splitlines()]
    assert Path(res.files[0]).name == "predictions-00000-of-00001.jsonl"
    assert sorted(r["key"] for r in rows) == ["0", "1"] and all("b64" in r["image_bytes"] for r in rows)
    assert [(e["line"], e["key"]) for e in errors] == [(3, "2"), (4, "3")]
    assert any(Path(f).name.startswith("prediction.results") for f in res.files)
    sent = fake_vertex.calls("aiplatform.projects.locations.batchPredictionJobs.create")[0]
    assert sent["inputConfig"]["gcsSource"]["uris"][0].startswith(f"gs://{BUCKET}/genml/batch/")


# ---- packaging, registry cache, CLI -----------------------------------------------------------
def test_trainer_sdist_holds_only_the_trainer_and_is_reproducible() -> None:
    import tarfile
    digest, name, data = build_sdist()
    assert name == "genml_trainer-0.1.0.tar.gz" and build_sdist()[0] == digest
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        setup = tar.extractfile("genml_trainer-0.1.0/setup.py").read().decode()  # type: ignore[union-attr]  # a file
    assert "genml_trainer-0.1.0/trainer/task.py" in names and "genml_trainer-0.1.0/PKG-INFO" in names
    assert all(n.startswith(("genml_trainer-0.1.0/trainer/", "genml_trainer-0.1.0/setup.py",
                             "genml_trainer-0.1.0/PKG-INFO")) for n in names)
    assert "install_requires=[]" in setup


def test_the_trainer_runs_on_the_training_container_python() -> None:
    """The prebuilt container has Python 3.10 and TensorFlow 2.17: no newer syntax, no other packages."""
    import ast
    import sys

    from core.vertex.packaging import trainer_dir
    third_party = set()
    for path in trainer_dir().rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                third_party |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                third_party.add(node.module.split(".")[0])
    third_party -= set(sys.stdlib_module_names) | {"trainer"}
    assert third_party <= {"tensorflow", "keras", "numpy"}


@pytest.mark.slow
def test_the_sdist_installs_with_pip_without_dependencies(tmp_path: Path) -> None:
    import subprocess
    import sys
    _, name, data = build_sdist()
    (tmp_path / name).write_bytes(data)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "--target", str(tmp_path / "site"), str(tmp_path / name)], check=True, timeout=120)
    assert (tmp_path / "site" / "trainer" / "task.py").exists()


def test_vertex_jobs_live_in_the_shared_registry(vertex_backend: Any, tmp_path: Path, workspace: Any) -> None:
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    stored = Registry(workspace.registry_path).get_job(job.id)
    # the service answers with the project number in resource names, not the ID genml sent
    assert stored.backend == "vertex" and stored.remote["name"].startswith(f"projects/{PROJECT_NUMBER}/")


def test_cli_configure_and_check(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                 storage_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from core import config as config_mod
    from tui.cli import cli
    runner = CliRunner()
    r = runner.invoke(cli, ["vertex", "configure", "--profile", "cloud", "--project", "test-project",
                            "--region", "us-central1", "--bucket", f"gs://{BUCKET}", "--replicas", "2"])
    assert r.exit_code == 0, r.output
    prof = config_mod.load().profiles["cloud"]
    assert prof == {"backend": "vertex", "project": "test-project", "region": "us-central1", "bucket": BUCKET,
                    "replicas": 2}
    cfg = config_mod.load()
    cfg.profiles["cloud"].update(api_endpoint=fake_vertex.url, storage_endpoint=gcs_emulator)
    config_mod.save(cfg)
    r = runner.invoke(cli, ["--backend", "cloud", "vertex", "check"])
    assert r.exit_code == 0, r.output
    assert "bucket: gs://genml-test-bucket in US-CENTRAL1" in r.output and "FAIL" not in r.output
    assert "credentials: none needed (emulator" in r.output
    r = runner.invoke(cli, ["vertex", "configure", "--profile", "bad", "--project", "p", "--region", "nowhere",
                            "--bucket", "b12"])
    assert r.exit_code != 0 and "not a region name" in r.output


def test_a_failed_upload_is_started_afresh_on_the_next_deploy(vertex_backend: Any, fake_vertex: FakeVertex,
                                                              storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    fake_vertex.next_operation_error = {"code": 13, "message": "Internal error while copying the model."}
    with pytest.raises(CloudError, match="copying the model"):
        vertex_backend.deploy(job.id, "faces")
    mv = vertex_backend.deploy(job.id, "faces")
    assert mv.deployed and mv.version == 1
    assert len(fake_vertex.calls("aiplatform.projects.locations.models.upload")) == 2


def test_undeploy_and_remove_tolerate_resources_deleted_in_the_console(
        vertex_backend: Any, fake_vertex: FakeVertex, storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    vertex_backend.deploy(job.id, "faces")
    fake_vertex.endpoints.clear()
    fake_vertex.models.clear()
    assert not vertex_backend.undeploy("faces").deployed
    vertex_backend.remove_model("faces@v1")
    assert vertex_backend.list_models() == []


def test_a_submission_interrupted_before_the_answer_is_recovered(vertex_backend: Any, fake_vertex: FakeVertex,
                                                                 tmp_path: Path) -> None:
    add_dataset(vertex_backend, tmp_path)
    job = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    remote = {k: v for k, v in job.remote.items() if k not in ("name", "job_id", "history")}
    vertex_backend.registry.update_job(job.id, remote=remote)           # as if genml died mid-call
    again = vertex_backend.get_job(job.id)
    assert again.remote["name"] == job.remote["name"]
    lost = vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    fake_vertex.custom_jobs.pop(lost.remote["job_id"])
    vertex_backend.registry.update_job(lost.id, remote={"body": lost.remote["body"]}, created=time.time() - 600)
    assert vertex_backend.get_job(lost.id).state is JobState.FAILED


def test_the_genml_commands_work_with_a_vertex_profile(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                                       storage_client: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared CLI (jobs, models, generate) on a cloud profile, as a person would use it."""
    from click.testing import CliRunner

    from core import config as config_mod
    from tui.cli import cli
    cfg = config_mod.Config(profiles={"cloud": vertex_profile(fake_vertex, gcs_emulator)})
    config_mod.save(cfg)
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
    add_dataset(backend, tmp_path)
    fake_vertex.predict_fn = stub_predict
    runner = CliRunner()

    def run(*args: str) -> str:
        r = runner.invoke(cli, ["--backend", "cloud", *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    job_id = run("train", "faces", "--preset", "tiny").splitlines()[0].strip()
    assert job_id.startswith("vx-")
    for _ in range(3):
        run("jobs", "show", job_id)
    put_model(storage_client, f"gs://{BUCKET}/genml/jobs/{job_id}")
    shown = json.loads(run("jobs", "show", job_id, "--json"))
    assert shown["state"] == "JOB_STATE_SUCCEEDED" and shown["has_model"] and shown["backend"] == "vertex"
    assert job_id in run("jobs", "list")
    assert "provisioned" in run("jobs", "logs", job_id)
    assert run("models", "deploy", job_id).strip().splitlines()[0] == "faces@v1"
    assert "1 deployed model(s)" in run("vertex", "resources")
    assert "faces@v1" in run("models", "list")
    run("generate", "faces", "-n", "2", "-o", str(tmp_path / "g.png"), "--no-show")
    assert (tmp_path / "g.png").exists() or list(tmp_path.glob("g*.png"))


def test_predict_isolates_an_instance_the_model_refuses(vertex_backend: Any, fake_vertex: FakeVertex,
                                                        storage_client: Any, tmp_path: Path) -> None:
    from core.vertex.predict import _chunks
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    vertex_backend.deploy(job.id, "faces")

    def picky(uri: str, signature: str, instances: list[Any]) -> list[Any]:
        if any(i["embeddings"][0] > 100 for i in instances):
            raise ValueError("embeddings out of range")
        return stub_predict(uri, signature, instances)
    fake_vertex.predict_fn = picky
    out = vertex_backend.predictor("faces").predict([{"embeddings": [v] + [0.0] * 7, "key": str(k)}
                                                    for k, v in enumerate([0.0, 1e6, 1.0])])
    assert "b64" in out[0]["image_bytes"] and "b64" in out[2]["image_bytes"]
    assert out[1]["key"] == "1" and "out of range" in out[1]["error"]
    big = [{"image_bytes": {"b64": "A" * 400_000}, "key": str(i)} for i in range(5)]
    assert [len(c) for c in _chunks(big)] == [2, 2, 1]


def test_the_fake_rejects_what_the_real_service_would(vertex_backend: Any, fake_vertex: FakeVertex) -> None:
    """The fake's discovery-document checks are what make the other tests meaningful."""
    c, parent = vertex_backend.clients, vertex_backend.settings.parent
    bad = [
        {"displayName": "x", "jobSpec": {"workerPoolSpecs": []}, "colour": "red"},                # unknown field
        {"displayName": "x", "jobSpec": {"workerPoolSpecs": [{"replicaCount": "one"}]}},          # int64 not a number
        {"jobSpec": {"workerPoolSpecs": []}},                                                     # required displayName
        {"displayName": "x", "jobSpec": {}, "state": "JOB_STATE_RUNNING"},                        # output only
        {"displayName": "x", "jobSpec": {"scheduling": {"strategy": "CHEAPEST"}}},                # not in the enum
    ]
    for body in bad:
        with pytest.raises(CloudError) as e:
            c.call(c.aiplatform.customJobs().create(parent=parent, body=body), "test", retry=False)
        assert getattr(e.value, "http_status") == 400
    assert len(fake_vertex.rejected) == len(bad)
    assert 'Unknown name "colour"' in fake_vertex.rejected[0] and "displayName" in fake_vertex.rejected[2]
    fake_vertex.rejected.clear()



def test_cli_check_without_credentials_says_what_to_do(workspace: Any, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from click.testing import CliRunner

    from core import config as config_mod
    from tui.cli import cli
    without_credentials(monkeypatch, tmp_path)
    config_mod.save(config_mod.Config(profiles={"cloud": {"backend": "vertex", "project": "p", "bucket": "b12"}}))
    r = CliRunner().invoke(cli, ["--backend", "cloud", "vertex", "check"])
    assert r.exit_code == 1
    assert "ok   profile" in r.output and "FAIL credentials" in r.output
    assert "gcloud auth application-default login" in r.output and "GOOGLE_APPLICATION_CREDENTIALS" in r.output


def test_bucket_metadata_forbidden_but_objects_usable(vertex_backend: Any, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Storage Object Admin without storage.buckets.get: say the location is unchecked, and go on."""
    from google.api_core import exceptions as gexc

    def forbidden(name: str) -> Any:
        raise gexc.Forbidden("caller does not have storage.buckets.get access")
    monkeypatch.setattr(vertex_backend.clients.storage, "get_bucket", forbidden)
    add_dataset(vertex_backend, tmp_path)
    vertex_backend.submit_job("faces", TrainOptions(preset="tiny"))
    assert any("storage.buckets.get" in n and "us-central1" in n for n in vertex_backend.notices)
