"""One list for local and cloud work (core/multi.py): local and Vertex AI rows together,
a backend column, calls routed to the owner, and a cloud profile that cannot be reached
shown as such without holding up the local rows."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core import config as config_mod
from core.backend import TrainOptions
from core.multi import AllBackends, backend_cell, open_all
from core.registry import Registry
from core.types import Job, JobState
from tests.fakes.fixtures import *  # noqa: F403  (fixtures)
from tests.fakes.fixtures import vertex_profile, without_credentials
from tests.fakes.vertex import FakeVertex
from tests.test_vertex import add_dataset


def _local_job(ws: Any, job_id: str = "local-1") -> Job:
    job = Job(id=job_id, dataset="faces", state=JobState.SUCCEEDED, backend="local", created=time.time() - 100,
              job_dir=str(ws.root / "jobs" / job_id))
    Registry(ws.registry_path).add_job(job)
    return job


def _config(fake: FakeVertex, emulator: str, **profiles: dict[str, Any]) -> config_mod.Config:
    cfg = config_mod.Config(profiles={"cloud": vertex_profile(fake, emulator), **profiles})
    config_mod.save(cfg)
    return config_mod.load()


def test_jobs_and_models_of_every_backend_in_one_list(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                                      storage_client: Any, tmp_path: Path) -> None:
    cfg = _config(fake_vertex, gcs_emulator)
    _local_job(workspace)
    both = AllBackends(None, workspace, cfg)
    assert both.name == "local"                                   # new work goes to the default backend
    cloud = both.backend("cloud")
    add_dataset(cloud, tmp_path)
    vx = cloud.submit_job("faces", TrainOptions(preset="tiny"))
    rows = both.list_jobs()
    assert [(j.id, both.owner(j)) for j in rows] == [("local-1", "local"), (vx.id, "cloud")]
    assert rows[1].state is JobState.PENDING                      # refreshed from Vertex AI, not the cached row
    assert all(st.reachable for st in both.status())
    # calls about one job go to its owner, whatever the default backend is
    assert len(fake_vertex.calls("logging.entries.list")) == 0
    both.read_log(vx.id)                                          # Cloud Logging, not train.log on this disk
    assert len(fake_vertex.calls("logging.entries.list")) == 1
    assert both.get_job("local-1").backend == "local"
    assert both.cancel_job(vx.id).state is JobState.CANCELLING
    reg = Registry(workspace.registry_path)
    reg.add_model_version("faces", "local-1", str(tmp_path / "m"), backend="local")
    reg.add_model_version("faces", vx.id, vx.job_dir + "/model", backend="vertex",
                          remote={"profile": "cloud", "stage": "deployed"})
    assert [(m.ref, both.owner(m)) for m in both.list_models()] == [("faces@v1", "local"), ("faces@v2", "cloud")]
    assert both.for_model("faces@v2") is cloud and both.for_model("faces@v1") is both.backend("local")


def test_an_unreachable_profile_is_shown_as_such_and_does_not_hold_up_local_rows(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, tmp_path: Path) -> None:
    cfg = _config(fake_vertex, gcs_emulator)
    _local_job(workspace)
    cloud_only = AllBackends("cloud", workspace, cfg)
    add_dataset(cloud_only.backend("cloud"), tmp_path)
    vx = cloud_only.backend("cloud").submit_job("faces", TrainOptions(preset="tiny"))
    notices: list[str] = []
    both = AllBackends(None, workspace, cfg, deadline_s=0.3)
    both.on_notice = notices.append
    fake_vertex.gate.clear()                                      # Vertex AI stops answering
    try:
        t0 = time.monotonic()
        rows = both.list_jobs()
        assert time.monotonic() - t0 < 3
        assert [j.id for j in rows] == ["local-1", vx.id]         # the cloud row as last seen
        # and the lists' backend column says so, row by row (the TUI's jobs and models panes)
        assert [backend_cell(both, j) for j in rows] == ["local", "vertex (unreachable: as last seen)"]
        from tui.widgets.jobs import job_row
        cell = job_row(rows[1], backend=backend_cell(both, rows[1]))[-1]
        assert cell == "[yellow]vertex (unreachable: as last seen)[/]"
        [st] = [s for s in both.status() if s.name == "cloud"]
        assert not st.reachable and "no answer" in st.message
        assert len(notices) == 1 and "'cloud' cannot be reached" in notices[0]
        assert [j.id for j in both.list_jobs()] == ["local-1", vx.id]   # no second request piles up
        assert len(notices) == 1
    finally:
        fake_vertex.gate.set()
    for _ in range(50):                                           # the answer is shown once it comes
        rows = both.list_jobs()
        if all(s.reachable for s in both.status()):
            break
        time.sleep(0.05)
    assert all(s.reachable for s in both.status()) and rows[1].state is JobState.PENDING
    assert backend_cell(both, rows[1]) == "vertex"


def test_a_profile_without_credentials_is_reported_not_raised(workspace: Any, fake_vertex: FakeVertex,
                                                              gcs_emulator: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    without_credentials(monkeypatch, tmp_path)
    _config(fake_vertex, gcs_emulator, real={"backend": "vertex", "project": "p", "bucket": "b12"})
    _local_job(workspace)
    Registry(workspace.registry_path).add_job(Job(
        id="vx-old", dataset="faces", state=JobState.RUNNING, backend="vertex", created=time.time() - 50,
        job_dir="gs://b12/genml/jobs/vx-old", remote={"profile": "real", "name": "projects/p/locations/us-central1/"
                                                       "customJobs/1", "job_id": "1"}))
    r = CliRunner().invoke(__import__("tui.cli", fromlist=["cli"]).cli, ["jobs", "list"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "BACKEND"]
    assert any(x.split()[:2] == ["local-1", "local"] for x in lines)
    assert any(x.split()[:2] == ["vx-old", "real"] and "RUNNING" in x for x in lines)
    assert "real: cannot be reached" in r.stderr and "credentials" in r.stderr.lower()
    as_json = json.loads(CliRunner().invoke(__import__("tui.cli", fromlist=["cli"]).cli,
                                            ["jobs", "list", "--json"]).stdout)
    assert {(j["id"], j["profile"]) for j in as_json} == {("local-1", "local"), ("vx-old", "real")}
    # a profile with nothing to refresh is still found out: its credentials are looked for
    Registry(workspace.registry_path).update_job("vx-old", state=JobState.SUCCEEDED)
    r = CliRunner().invoke(__import__("tui.cli", fromlist=["cli"]).cli, ["jobs", "list"], catch_exceptions=False)
    assert "real: cannot be reached" in r.stderr


def test_the_cli_routes_a_jobs_commands_to_its_backend(workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str,
                                                       storage_client: Any, tmp_path: Path) -> None:
    from tui.cli import cli
    cfg = _config(fake_vertex, gcs_emulator)
    _local_job(workspace)
    cloud = AllBackends("cloud", workspace, cfg).backend("cloud")
    add_dataset(cloud, tmp_path)
    vx = cloud.submit_job("faces", TrainOptions(preset="tiny"))
    runner = CliRunner()
    out = runner.invoke(cli, ["jobs", "logs", vx.id], catch_exceptions=False)       # no --backend
    assert out.exit_code == 0 and "provision" in out.output
    show = json.loads(runner.invoke(cli, ["jobs", "show", vx.id, "--json"], catch_exceptions=False).output)
    assert show["backend"] == "vertex" and show["state"] != "JOB_STATE_QUEUED"     # read from Vertex AI
    listed = runner.invoke(cli, ["jobs", "list"], catch_exceptions=False).output
    assert "local-1" in listed and vx.id in listed and "cloud" in listed
    only_local = runner.invoke(cli, ["--backend", "local", "jobs", "list"], catch_exceptions=False).output
    assert "local-1" in only_local and vx.id not in only_local          # a named backend: its own rows
    only_cloud = runner.invoke(cli, ["--backend", "cloud", "jobs", "list"], catch_exceptions=False).output
    assert "local-1" not in only_cloud and vx.id in only_cloud
    assert isinstance(open_all(None, workspace, cfg), AllBackends)


def test_without_a_cloud_profile_nothing_changes(workspace: Any) -> None:
    from core.local.backend import LocalBackend
    assert isinstance(open_all(None, workspace, config_mod.Config()), LocalBackend)


# ---- the opt-in live check ------------------------------------------------------------------------
def test_the_smoke_check_prints_the_cost_first_and_skips_without_credentials(
        workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.cli import cli
    without_credentials(monkeypatch, tmp_path)
    config_mod.save(config_mod.Config(profiles={"real": {"backend": "vertex", "project": "p", "bucket": "b12"}}))
    r = CliRunner().invoke(cli, ["--backend", "real", "vertex", "smoke"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("training: n1-standard-4") and "expected total: about $" in r.output
    assert lines[-1].startswith("skipped:") and "credentials" in lines[-1].lower()


@pytest.mark.slow
def test_the_smoke_check_round_trip_leaves_nothing_behind(workspace: Any, fake_vertex: FakeVertex,
                                                          gcs_emulator: str, storage_client: Any) -> None:
    from core.vertex import smoke
    from tests.fakes.fixtures import make_backend
    fake_vertex.executor = "trainer"
    backend = make_backend(workspace, vertex_profile(fake_vertex, gcs_emulator))
    said: list[str] = []
    report = smoke.run(backend, say=said.append, poll_s=0.5)
    assert report.ok, "\n".join(said)
    assert [label for label, ok, _ in report.steps] == ["checks", "dataset", "training", "deploy", "predict"]
    create = fake_vertex.calls("aiplatform.projects.locations.customJobs.create")[0]
    assert create["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["machineType"] == "n1-standard-4"
    assert fake_vertex.custom_jobs == {} and fake_vertex.models == {} and fake_vertex.endpoints == {}
    left = [b.name for b in storage_client.list_blobs("genml-test-bucket")
            if not b.name.startswith("genml/packages/")]            # the trainer package is shared, kept
    assert left == [], left
    assert backend.list_datasets() == [] and backend.list_models() == []


def test_all_backends_implements_the_whole_protocol() -> None:
    from core.backend import Backend
    from tests.test_backend_protocol import _required
    missing = [n for n in _required(Backend) if getattr(AllBackends, n) is getattr(Backend, n)]
    assert not missing, missing


def test_the_tui_jobs_pane_mixes_local_and_cloud_rows_and_follows_each_rows_log(
        workspace: Any, fake_vertex: FakeVertex, gcs_emulator: str, storage_client: Any, tmp_path: Path) -> None:
    import asyncio

    from tests.test_tui import ready, table_keys, until
    from tui.app import GenmlApp
    from tui.widgets.table import FilterTable
    cfg = _config(fake_vertex, gcs_emulator)
    _local_job(workspace)
    both = AllBackends(None, workspace, cfg, deadline_s=1.0)
    cloud = both.backend("cloud")
    add_dataset(cloud, tmp_path)
    vx = cloud.submit_job("faces", TrainOptions(preset="tiny"))

    async def run() -> None:
        app = GenmlApp(both)
        async with app.run_test(size=(120, 30)) as pilot:
            await ready(pilot, app)
            await pilot.press("2")
            await until(pilot, lambda: table_keys(app, "jobs") == ["local-1", vx.id])
            table = app.panes["jobs"].query_one(FilterTable)
            reads = len(fake_vertex.calls("logging.entries.list"))
            table.select(vx.id)
            await until(pilot, lambda: len(fake_vertex.calls("logging.entries.list")) > reads)   # Cloud Logging
    asyncio.run(run())
