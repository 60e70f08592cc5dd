"""Serving on TensorFlow Serving from the user's Artifact Registry: the way out of the
prebuilt serving image's end of availability (issue 13).

With `serving_image` naming TF Serving in Artifact Registry, models:upload sends a custom
containerSpec (core/vertex/serving.py) and the model's files are copied into a version
folder; the fake Vertex AI server checks the request against the discovery document,
copies the artifacts to AIP_STORAGE_URI and runs the spec as TF Serving would
(tests/fakes/tf_serving.py), so a wrong port, route, flag or layout fails here as it would
on Vertex AI. genml's prediction code is the same for both images.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import CloudError, InvalidInput
from core.vertex import images, operations, serving
from tests.fakes.fixtures import *  # noqa: F403  (fixtures)
from tests.fakes.fixtures import BUCKET, PROJECT, REGION, generate_and_encode, make_backend, vertex_profile
from tests.fakes.vertex import STAGING_BUCKET, FakeVertex, TFPredictor
from tests.test_vertex import _png, _succeeded_job, stub_predict

AR = f"{REGION}-docker.pkg.dev/{PROJECT}/dockerhub/tensorflow/serving:2.17.1"
SPEC = {"imageUri": AR,
        "command": ["tensorflow_model_server"],
        "args": ["--rest_api_port=8080", "--model_name=genml", "--model_base_path=$(AIP_STORAGE_URI)"],
        "ports": [{"containerPort": 8080}],
        "predictRoute": "/v1/models/genml:predict",
        "healthRoute": "/v1/models/genml"}
WAY_OUT = [f"gcloud artifacts repositories create dockerhub --project={PROJECT} --repository-format=docker "
           f"--location={REGION} --mode=remote-repository --remote-docker-repo=DOCKER-HUB",
           f"gcloud services enable artifactregistry.googleapis.com --project={PROJECT}",
           f"genml vertex configure --profile cloud --serving-image {AR}"]


def _backend(workspace: Any, fake: FakeVertex, emulator: str, image: str = AR) -> Any:
    return make_backend(workspace, vertex_profile(fake, emulator, serving_image=image))


def test_upload_with_a_tf_serving_image_sends_a_custom_container_and_predicts_through_it(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, storage_client: Any, tmp_path: Path) -> None:
    backend = _backend(workspace, fake_vertex, gcs_emulator)
    job = _succeeded_job(backend, fake_vertex, storage_client, tmp_path)
    seen: list[tuple[str, str]] = []

    def recording(uri: str, signature: str, instances: list[Any]) -> list[Any]:
        seen.append((uri, signature))
        return stub_predict(uri, signature, instances)
    fake_vertex.predict_fn = recording

    mv = backend.deploy(job.id, "faces")
    assert mv.deployed
    up = fake_vertex.calls("aiplatform.projects.locations.models.upload")[0]["model"]
    assert up["containerSpec"] == SPEC == serving.container_spec(AR)
    assert up["artifactUri"] == job.job_dir + "/serving/"          # TF Serving wants JOB/serving/1/saved_model.pb
    prefix = job.job_dir.removeprefix(f"gs://{BUCKET}/")
    copied = sorted(b.name[len(prefix) + 1:] for b in storage_client.list_blobs(BUCKET, prefix=prefix + "/serving/"))
    assert copied == ["serving/1/genml.json", "serving/1/saved_model.pb"]

    # genml's prediction code, unchanged, through the container's predict route
    pred = backend.predictor("faces")
    out = pred.predict([{"embeddings": [0.1] * 8, "key": "a"}, {"embeddings": [0.1] * 7, "key": "b"},
                        {"image_bytes": {"b64": base64.b64encode(_png()).decode()}, "key": "c"}])
    assert out[0]["key"] == "a" and "b64" in out[0]["image_bytes"]
    assert out[1]["key"] == "b" and "7 values" in out[1]["error"]
    assert out[2] == {"embeddings": [0.5] * 8, "key": "c"}
    mid = mv.remote["model"].rsplit("/", 1)[-1]
    version = f"gs://{STAGING_BUCKET}/model-{mid}/artifacts/1"       # AIP_STORAGE_URI + the version folder
    assert seen == [(version, "serving_default"), (version, "encode")]
    assert pred.generate(np.zeros((2, 8), np.float32)).shape == (2, 8, 8, 3)
    assert pred.encode([_png()]).shape == (1, 8)

    src = tmp_path / "in.jsonl"                # batch prediction runs the same container
    src.write_text("\n".join(json.dumps({"embeddings": [float(i)] * 8, "key": str(i)}) for i in range(2)))
    res = backend.batch_predict("faces", src, tmp_path / "out")
    assert (res.predictions, res.errors) == (2, 0) and seen[-1] == (version, "serving_default")

    backend.undeploy("faces")
    backend.remove_model("faces")
    assert fake_vertex.models == {} and fake_vertex.containers == {}


def test_a_real_savedmodel_serves_end_to_end_through_the_tf_serving_container(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, storage_client: Any, tmp_path: Path) -> None:
    """The trainer's own export (untrained tiny model), loaded by the fake's TensorFlow from
    the version folder the container serves, answering both signatures."""
    from core.vertex import storage as gcs
    from trainer.export import export
    from trainer.model import build_decoder, build_encoder
    from trainer.presets import resolve
    backend = _backend(workspace, fake_vertex, gcs_emulator)
    job = _succeeded_job(backend, fake_vertex, storage_client, tmp_path)
    fake_vertex.predict_fn = TFPredictor(storage_client, tmp_path / "loaded").predict
    cfg = resolve("tiny", {})
    info = {"image_size": cfg.image_size, "embedding_size": cfg.embedding_size, "preset": "tiny", "step": 0}
    export(str(tmp_path / "model"), build_encoder(cfg), build_decoder(cfg), info)
    for blob in storage_client.list_blobs(BUCKET, prefix=job.job_dir.removeprefix(f"gs://{BUCKET}/") + "/model/"):
        blob.delete()                          # put_model's stand-in files, replaced by the real export
    gcs.upload_dir(storage_client, tmp_path / "model", job.job_dir + "/model")

    backend.deploy(job.id, "faces")
    pred = backend.predictor("faces")
    e = cfg.embedding_size
    png = generate_and_encode(pred, e, cfg.image_size)
    out = pred.predict([{"embeddings": [0.0] * e, "key": "7"},
                        {"image_bytes": {"b64": base64.b64encode(png).decode()}, "key": "8"}])
    assert out[0]["key"] == "7" and "b64" in out[0]["image_bytes"] and len(out[1]["embeddings"]) == e


# ---- the fake runs a custom container as TF Serving would --------------------------------------
def test_the_fake_refuses_what_vertex_and_tf_serving_would_not_run(vertex_backend: Any, fake_vertex: FakeVertex,
                                                                   storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    ctx, c = vertex_backend.ctx, vertex_backend.clients
    ai, parent = c.aiplatform, vertex_backend.settings.parent
    model_dir = job.job_dir + "/model/"                # saved_model.pb right here: no version folder
    serving_dir = serving.artifact_uri(c.storage, job.job_dir + "/model", AR)

    def upload(spec: dict[str, Any], uri: str = serving_dir) -> str:
        body = {"model": {"displayName": "m", "artifactUri": uri, "containerSpec": spec}}
        op = c.call(ai.models().upload(parent=parent, body=body), "test", retry=False)
        return str(operations.wait(ctx, op["name"], "upload")["model"])

    ep_op = c.call(ai.endpoints().create(parent=parent, body={"displayName": "e"}), "test")
    endpoint = operations.wait(ctx, ep_op["name"], "endpoint")["name"]

    def deploy(model: str) -> Any:
        body = {"deployedModel": {"model": model, "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-2"}, "minReplicaCount": 1, "maxReplicaCount": 1}},
            "trafficSplit": {"0": 100}}
        op = c.call(ai.endpoints().deployModel(endpoint=endpoint, body=body), "test", retry=False)
        return operations.wait(ctx, op["name"], "deploy")

    # Docker Hub is not a place Vertex AI pulls a Model's container from
    with pytest.raises(CloudError):
        upload(dict(SPEC, imageUri="tensorflow/serving:2.17.1"))
    assert "Artifact Registry or Container Registry" in fake_vertex.rejected[-1]
    fake_vertex.rejected.clear()
    # each of these would leave TF Serving unready, so the deploy fails
    broken = {"the SavedModel is not in a version folder": (SPEC, model_dir),
              "another port": (dict(SPEC, ports=[{"containerPort": 8501}]), serving_dir),
              "another model name": (dict(SPEC, healthRoute="/v1/models/default"), serving_dir),
              "the image's own entrypoint": ({k: v for k, v in SPEC.items() if k not in ("command", "args")},
                                             serving_dir),
              "an unknown flag": (dict(SPEC, args=[*SPEC["args"], "--rest_port=8080"]), serving_dir),
              "the variable not expanded": (dict(SPEC, args=[SPEC["args"][0], SPEC["args"][1],
                                                             "--model_base_path=${AIP_STORAGE_URI}"]), serving_dir)}
    for why, (spec, uri) in broken.items():
        with pytest.raises(CloudError, match="never became ready") as e:
            deploy(upload(spec, uri))
        assert getattr(e.value, "operation_failed", False), why
    # healthy, but predictions sent to a route TF Serving does not serve
    deploy(upload(dict(SPEC, predictRoute="/predict")))
    with pytest.raises(CloudError) as e:
        c.call(ai.endpoints().predict(endpoint=endpoint, body={"instances": [{"embeddings": [0.0] * 8, "key": "k"}]}),
               "test", retry=False)
    assert getattr(e.value, "http_status") == 404 and "Malformed request" in e.value.message
    assert fake_vertex.rejected == []


# ---- `genml vertex check` and the refusals name the way out -----------------------------------------
def test_check_reports_the_custom_image_and_names_the_way_out_near_and_past_the_date(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, storage_client: Any, tmp_path: Path) -> None:
    prebuilt = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
    prebuilt.ctx.today = lambda: dt.date(2026, 12, 2)
    detail = {label: (ok, text) for label, ok, text in prebuilt.check()}["serving image"]
    assert detail[0] and detail[1].startswith("warning:") and "43 days left" in detail[1]
    assert all(cmd in detail[1] for cmd in WAY_OUT), detail[1]

    job = _succeeded_job(prebuilt, fake_vertex, storage_client, tmp_path)
    prebuilt.ctx.today = lambda: dt.date(2027, 1, 15)
    ok, text = {label: (ok, text) for label, ok, text in prebuilt.check()}["serving image"]
    assert not ok and "reached Vertex AI's end of availability on 2027-01-14" in text and WAY_OUT[0] in text
    with pytest.raises(InvalidInput) as e:
        prebuilt.deploy(job.id, "faces")
    assert "tf2-cpu.2-15" in e.value.message and all(cmd in e.value.hint for cmd in WAY_OUT)
    assert fake_vertex.calls("aiplatform.projects.locations.models.upload") == []

    hub = _backend(workspace, fake_vertex, gcs_emulator, "tensorflow/serving:2.17.1")   # hand-written profile
    ok, text = {label: (ok, text) for label, ok, text in hub.check()}["serving image"]
    assert not ok and "is on docker.io" in text and all(cmd in text for cmd in WAY_OUT)
    with pytest.raises(InvalidInput, match="Artifact Registry or Container Registry") as e:
        hub.deploy(job.id, "faces")
    assert WAY_OUT[0] in e.value.hint
    assert fake_vertex.calls("aiplatform.projects.locations.models.upload") == []

    custom = _backend(workspace, fake_vertex, gcs_emulator)
    custom.ctx.today = lambda: dt.date(2027, 1, 15)                 # no Vertex AI date applies to it
    ok, text = {label: (ok, text) for label, ok, text in custom.check()}["serving image"]
    assert ok and not text.startswith("warning:") and "TensorFlow Serving 2.17.1" in text
    assert "no Vertex AI end-of-availability date" in text and "trainer exports with TensorFlow 2.17.1" in text
    assert custom.deploy(job.id, "faces").deployed

    unpinned = _backend(workspace, fake_vertex, gcs_emulator, AR.replace(":2.17.1", ":latest"))
    ok, text = {label: (ok, text) for label, ok, text in unpinned.check()}["serving image"]
    assert ok and text.startswith("warning:") and "names no version" in text


def test_the_image_table_knows_tf_serving_images_by_their_tag() -> None:
    img = images.find(AR, "serving")
    assert img is not None and (img.kind, img.tensorflow, img.end_of_availability) == ("tf-serving", "2.17.1", None)
    assert images.find(AR) is None                      # as a training image it is just the user's own
    assert images.find(images.SERVING_CPU, "serving").kind == "prebuilt"            # type: ignore[union-attr]  # known image
    assert images.tag_version("eu.gcr.io/p/tf-serving:2.17.1-gpu") == "2.17.1"
    assert images.tag_version("localhost:5000/serving") == "" and images.tag_version("x/y@sha256:ab") == ""
    assert images.status(AR.replace("2.17.1", "2.15.0"), role="serving")[0] == "warn"
    state, text = images.status("tensorflow/serving:2.17.1", role="serving", project=PROJECT, region=REGION,
                                profile="cloud")
    assert state == "invalid" and "docker.io" in text and all(cmd in text for cmd in WAY_OUT)


def test_configure_takes_a_serving_image_and_refuses_one_on_docker_hub(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, storage_client: Any) -> None:
    from click.testing import CliRunner

    from core import config as config_mod
    from tui.cli import cli
    runner = CliRunner()
    base = ["vertex", "configure", "--profile", "cloud", "--project", PROJECT, "--region", REGION,
            "--bucket", BUCKET]
    r = runner.invoke(cli, [*base, "--serving-image", "tensorflow/serving:2.17.1"])
    assert r.exit_code != 0 and "Artifact Registry or Container Registry" in r.output
    assert "--remote-docker-repo=DOCKER-HUB" in r.output
    r = runner.invoke(cli, [*base, "--serving-image", AR])
    assert r.exit_code == 0, r.output
    assert config_mod.load().profiles["cloud"]["serving_image"] == AR
    cfg = config_mod.load()
    cfg.profiles["cloud"].update(api_endpoint=fake_vertex.url, storage_endpoint=gcs_emulator)
    config_mod.save(cfg)
    r = runner.invoke(cli, ["--backend", "cloud", "vertex", "check"])
    assert r.exit_code == 0, r.output
    assert f"serving image: {AR} (TensorFlow Serving 2.17.1" in r.output
