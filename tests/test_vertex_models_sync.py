"""The models list tells the truth about Vertex AI (core/vertex/sync.py): an endpoint deleted,
a model undeployed or a Model deleted behind genml's back (in the fake, as a person would in
the Cloud console or with gcloud) shows as such, in a bounded number of calls, and a service
that cannot be reached keeps the rows as last seen."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core import config as config_mod
from core.errors import InvalidState
from core.multi import AllBackends, backend_cell
from core.registry import Registry
from tests.fakes.fixtures import *  # noqa: F403  (fixtures)
from tests.fakes.fixtures import make_backend, vertex_profile
from tests.fakes.vertex import FakeVertex, google_error
from tests.test_vertex import _succeeded_job

AIP = "aiplatform.projects.locations."


def _calls_during(fake: FakeVertex, fn: Any) -> tuple[Any, list[str]]:
    """fn()'s result and the API methods it called, in order (short names: models.list ...)."""
    before = len(fake.requests)
    out = fn()
    return out, [m.removeprefix(AIP) for m, _, _ in fake.requests[before:]]


def _three_deployed(backend: Any, fake: FakeVertex, client: Any, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    job = _succeeded_job(backend, fake, client, tmp_path)
    return job, {n: backend.deploy(job.id, n) for n in ("alpha", "beta", "gamma")}


def test_the_list_shows_what_was_deleted_or_undeployed_outside_genml(
        vertex_backend: Any, fake_vertex: FakeVertex, storage_client: Any, tmp_path: Path) -> None:
    job, mv = _three_deployed(vertex_backend, fake_vertex, storage_client, tmp_path)
    rows, calls = _calls_during(fake_vertex, vertex_backend.list_models)
    assert calls == ["models.list", "endpoints.list"]            # one listing for the whole profile
    assert [(m.ref, m.deployed) for m in rows] == [("alpha@v1", True), ("beta@v1", True), ("gamma@v1", True)]

    fake_vertex.delete_endpoint_outside(mv["alpha"].remote["endpoint"])
    fake_vertex.undeploy_outside(mv["beta"].remote["endpoint"])
    fake_vertex.delete_model_outside(mv["gamma"].remote["model"])
    rows, calls = _calls_during(fake_vertex, vertex_backend.list_models)
    # what the lists lack is confirmed once with a GET before the rows change
    assert calls == ["models.list", "endpoints.list", "endpoints.get", "models.get"]
    alpha, beta, gamma = rows
    assert (alpha.deployed, alpha.remote["stage"], alpha.missing) == (False, "undeployed", False)
    assert "endpoint" not in alpha.remote and "deleted outside genml" in alpha.remote["note"]
    assert (beta.deployed, beta.remote["stage"]) == (False, "undeployed")
    assert beta.remote["endpoint"] == mv["beta"].remote["endpoint"]    # left empty: rm deletes it
    assert "undeployed from" in beta.remote["note"]
    assert gamma.missing and not gamma.deployed and gamma.deployed_label == "missing in Vertex AI"
    assert Registry(vertex_backend.ws.registry_path).get_model("gamma", 1).missing      # written through

    # nothing changed since: two calls, and the registry is not written again
    saved = [m.remote for m in Registry(vertex_backend.ws.registry_path).list_models()]
    rows, calls = _calls_during(fake_vertex, vertex_backend.list_models)
    assert calls == ["models.list", "endpoints.list"]
    assert [m.remote for m in Registry(vertex_backend.ws.registry_path).list_models()] == saved

    # predict says what happened and what to do, naming the model
    with pytest.raises(InvalidState) as e:
        vertex_backend.predictor("gamma")
    assert "gamma@v1 is missing in Vertex AI" in e.value.message and "deleted outside genml" in e.value.message
    assert f"models deploy {job.id}" in e.value.hint and "genml models rm gamma@v1" in e.value.hint
    with pytest.raises(InvalidState, match="alpha@v1 is not deployed.*endpoint .* was deleted outside genml"):
        vertex_backend.predictor("alpha")
    with pytest.raises(InvalidState, match="missing in Vertex AI"):
        vertex_backend.batch_predict("gamma", tmp_path / "in.jsonl", tmp_path / "out")

    # deploying the job again brings gamma back under its own version; the endpoint it left goes
    left = mv["gamma"].remote["endpoint"].rsplit("/", 1)[-1]
    again = vertex_backend.deploy(job.id, "gamma")
    assert (again.ref, again.deployed, again.remote["stage"]) == ("gamma@v1", True, "deployed")
    assert left not in fake_vertex.endpoints and again.remote["model"] != mv["gamma"].remote["model"]
    assert vertex_backend.predictor("gamma").predict([{"embeddings": [0.1] * 8, "key": "k"}])[0]["key"] == "k"
    # and rm of the undeployed beta deletes the endpoint it left behind
    vertex_backend.remove_model("beta")
    assert mv["beta"].remote["endpoint"].rsplit("/", 1)[-1] not in fake_vertex.endpoints


def test_one_model_is_checked_with_two_gets_and_the_list_is_paged(
        workspace: Any, vertex_backend: Any, fake_vertex: FakeVertex, gcs_emulator: str, storage_client: Any,
        tmp_path: Path) -> None:
    _, mv = _three_deployed(vertex_backend, fake_vertex, storage_client, tmp_path)
    fake_vertex.delete_model_outside(mv["beta"].remote["model"])
    shown, calls = _calls_during(fake_vertex, lambda: vertex_backend.get_model("beta@v1"))
    assert calls == ["models.get", "endpoints.get"] and shown.missing
    assert shown.remote["endpoint"] == mv["beta"].remote["endpoint"]     # still there, empty: rm deletes it
    _, calls = _calls_during(fake_vertex, lambda: vertex_backend.get_model("beta@v1"))
    assert calls == []                                           # known missing: not asked again
    shown, calls = _calls_during(fake_vertex, lambda: vertex_backend.get_model("alpha"))
    assert calls == ["models.get", "endpoints.get"] and shown.deployed
    fake_vertex.max_page = 1                                       # one item a page: 3 models, 3 endpoints
    _, calls = _calls_during(fake_vertex, vertex_backend.list_models)
    assert calls.count("models.list") == 2 and calls.count("endpoints.list") == 3
    assert len(calls) == 5                                        # beta is already known missing
    # a profile's own refresh interval: a second list soon after asks nothing
    slow = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator, models_refresh_interval_s=30.0))
    _, first = _calls_during(fake_vertex, slow.list_models)
    rows, second = _calls_during(fake_vertex, slow.list_models)
    assert first and second == [] and len(rows) == 3


def test_a_deploy_genml_stopped_waiting_for_is_seen_finished(
        vertex_backend: Any, fake_vertex: FakeVertex, storage_client: Any, tmp_path: Path) -> None:
    job = _succeeded_job(vertex_backend, fake_vertex, storage_client, tmp_path)
    mv = vertex_backend.deploy(job.id, "faces")
    reg = Registry(vertex_backend.ws.registry_path)
    cut = {k: v for k, v in mv.remote.items() if k != "deployed_model_id"}     # as if genml's deadline passed
    reg.update_model("faces", 1, remote=dict(cut, stage="deploy"), deployed=False)
    [row] = vertex_backend.list_models()
    assert row.deployed and row.remote["deployed_model_id"] == mv.remote["deployed_model_id"]
    # a row read before a deploy finished is not written over it
    stale = reg.get_model("faces", 1)
    reg.update_model("faces", 1, remote=dict(stale.remote, note="changed meanwhile"))
    assert not reg.update_model_if(stale, deployed=False) and reg.get_model("faces", 1).deployed


def test_an_unreachable_service_keeps_the_rows_and_the_profile_says_so(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, storage_client: Any, tmp_path: Path) -> None:
    config_mod.save(config_mod.Config(profiles={"cloud": vertex_profile(fake_vertex, gcs_emulator)}))
    cfg = config_mod.load()
    cloud = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
    job = _succeeded_job(cloud, fake_vertex, storage_client, tmp_path)
    cloud.deploy(job.id, "faces")
    saved = Registry(workspace.registry_path).list_models()
    # a refusal: the rows as they were, and why
    fake_vertex.fail_next(AIP + "models.list", 403, google_error(403, "PERMISSION_DENIED", "aiplatform.models.list"))
    assert cloud.list_models() == saved and "aiplatform.models.list" in cloud.last_models_refresh_error
    assert cloud.list_models() == saved and cloud.last_models_refresh_error == ""
    # a service that does not answer: the all-backends list shows the rows as last seen, in time
    both = AllBackends(None, workspace, cfg, deadline_s=0.3)
    both.on_notice = lambda text: None
    fake_vertex.gate.clear()
    try:
        t0 = time.monotonic()
        rows = both.list_models()
        assert time.monotonic() - t0 < 3
        assert [(m.ref, m.deployed) for m in rows] == [("faces@v1", True)]
        assert backend_cell(both, rows[0]) == "vertex (unreachable: as last seen)"
        [st] = [s for s in both.status() if s.name == "cloud"]
        assert not st.reachable and "no answer" in st.message
    finally:
        fake_vertex.gate.set()
    assert Registry(workspace.registry_path).list_models() == saved
    for _ in range(100):                                       # the answer is shown once it comes
        rows = both.list_models()
        if all(s.reachable for s in both.status()):
            break
        time.sleep(0.05)
    assert all(s.reachable for s in both.status()) and backend_cell(both, rows[0]) == "vertex"


def test_the_cli_lists_a_missing_model_without_all(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                                   storage_client: Any, tmp_path: Path) -> None:
    from tui.cli import cli
    from tui.widgets.models import model_row
    config_mod.save(config_mod.Config(profiles={"cloud": vertex_profile(fake_vertex, gcs_emulator)}))
    cloud = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
    job = _succeeded_job(cloud, fake_vertex, storage_client, tmp_path)
    mv = cloud.deploy(job.id, "faces")
    fake_vertex.delete_model_outside(mv.remote["model"])
    r = CliRunner().invoke(cli, ["models", "list"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    [line] = [x for x in r.stdout.splitlines() if x.startswith("faces@v1")]
    assert "missing in Vertex AI" in line
    shown = CliRunner().invoke(cli, ["models", "show", "faces@v1"], catch_exceptions=False).stdout
    assert "(missing in Vertex AI)" in shown and "deleted outside genml" in shown
    gen = CliRunner().invoke(cli, ["generate", "faces", "-n", "1", "-o", str(tmp_path / "g.png"), "--no-show"])
    assert gen.exit_code != 0 and "missing in Vertex AI" in gen.output and "models rm faces@v1" in gen.output
    row = model_row(Registry(workspace.registry_path).get_model("faces", 1))
    assert row[5] == "[red]missing in Vertex AI[/]"
