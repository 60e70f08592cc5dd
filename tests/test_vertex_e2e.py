"""End to end on the emulators: dataset upload, a real CustomJob, deploy, predict, batch.

The fake Vertex AI server runs the CustomJob's containerSpec command (genml's launcher,
which unpacks the trainer sdist from the /gcs mount and runs `trainer.task --preset tiny`)
on a mirror of the emulated bucket that refuses directory renames, as Cloud Storage FUSE
does; prediction loads the uploaded SavedModel, as TF Serving would.
"""
from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.backend import TrainOptions
from core.jobdir import JobDir
from core.types import JobState
from core.vertex import storage as gcs
from tests.fakes.fixtures import *  # noqa: F403  (fixtures)
from tests.fakes.fixtures import generate_and_encode, make_backend, vertex_profile
from tests.fakes.vertex import FakeVertex


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def lines_text(lines: list[str]) -> list[str]:
    return [x.split("] ", 1)[1] if x.startswith("[workerpool") else x for x in lines]


@pytest.mark.slow
def test_train_deploy_predict_batch_on_the_emulators(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                                     storage_client: Any, tmp_path: Path) -> None:
    fake_vertex.executor = "trainer"
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
    backend.make_demo_dataset("demo", count=40)
    assert storage_client.bucket("genml-test-bucket").blob("genml/datasets/demo/manifest.json").exists()

    job = backend.submit_job("demo", TrainOptions(preset="tiny"))
    lines: list[str] = []
    cursor: Any = None

    def finished() -> Any:
        nonlocal cursor
        chunk = backend.read_log(job.id, cursor)
        lines.extend(chunk.lines)
        cursor = chunk.cursor
        j = backend.get_job(job.id)
        return j if j.state.terminal else None

    done = wait_for(finished, 240, "the CustomJob to finish")
    assert done.state is JobState.SUCCEEDED, done.error + "\n" + "\n".join(lines[-30:])
    assert done.step > 0 and done.ended and done.started
    assert len(lines) > 2
    # stderr is ERROR in Vertex AI's logs: progress must not land there
    jid = done.remote["job_id"]
    errors = [e.get("textPayload") or e["jsonPayload"]["message"] for e in fake_vertex.entries
              if e["resource"]["labels"]["job_id"] == jid and e["severity"] == "ERROR"]
    progress = re.compile(r"^\[\s*\d+\.\ds\]|^step \d+/|^eval step|^resumed from|^exported")
    assert not [x for x in errors if progress.match(x)], errors       # (TensorFlow's own C++ lines may be there)
    assert any(progress.match(x) for x in lines_text(lines))
    assert any("exported to" in line for line in lines)          # written on the mount, no directory renamed

    jd = JobDir(gcs.GcsStore(done.job_dir))
    assert jd.has_model() and jd.status()["state"] == "JOB_STATE_SUCCEEDED"
    assert jd.metrics().train and jd.sample_names()
    info = jd.model_info()

    mv = backend.deploy(job.id, "demo")
    assert mv.deployed and mv.info["embedding_size"] == info["embedding_size"]
    pred = backend.predictor("demo")
    e, s = pred.embedding_size, pred.image_size
    png = generate_and_encode(pred, e, s)
    from PIL import Image
    # a phone-sized photo (~4 MB, ~5.5 MB as base64) is downscaled before it is sent: no 400
    rng = np.random.default_rng(0)
    photo = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (1800, 2400, 3), dtype=np.uint8)).save(photo, format="JPEG", quality=95)
    assert photo.tell() > 3_000_000
    assert pred.encode([photo.getvalue(), png]).shape == (2, e)
    out = pred.predict([{"embeddings": [0.0] * e, "key": "7"},
                        {"image_bytes": {"b64": base64.b64encode(png).decode()}, "key": "8"},
                        {"embeddings": [0.0] * (e + 1), "key": "9"}])
    assert out[0]["key"] == "7"
    assert Image.open(io.BytesIO(base64.b64decode(out[0]["image_bytes"]["b64"]))).size == (s, s)
    assert out[1]["key"] == "8" and len(out[1]["embeddings"]) == e
    assert out[2]["key"] == "9" and "error" in out[2]

    src = tmp_path / "batch.jsonl"
    src.write_text("\n".join(json.dumps({"embeddings": [float(i)] * e, "key": str(i)}) for i in range(3)) + "\n")
    res = backend.batch_predict("demo", src, tmp_path / "batch-out")
    assert (res.predictions, res.errors) == (3, 0)
    rows = [json.loads(x) for x in Path(res.files[0]).read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == ["0", "1", "2"] and all("b64" in r["image_bytes"] for r in rows)

    backend.undeploy("demo")
    backend.remove_model("demo")
    assert fake_vertex.models == {} and fake_vertex.endpoints == {}
