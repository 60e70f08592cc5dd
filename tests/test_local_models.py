"""Deploying jobs as model versions: refusals, metrics, CLI, and two processes at once."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.errors import InvalidInput, InvalidState, NotFound
from core.local.backend import LocalBackend
from core.local.jobs import code_root
from core.types import JobState
from core.workspace import Workspace
from tests.local_support import add_finished_job
from tui.cli import cli

pytestmark = pytest.mark.slow   # the tiny_job_dir fixture trains a model


@pytest.fixture
def job(workspace: Workspace, tiny_job_dir: Path):
    return add_finished_job(workspace, tiny_job_dir)


@pytest.mark.parametrize("state, message", [
    (JobState.RUNNING, "still RUNNING"), (JobState.QUEUED, "still QUEUED"),
    (JobState.FAILED, "FAILED"), (JobState.CANCELLED, "CANCELLED"),
])
def test_deploy_refuses_unfinished_jobs(workspace: Workspace, tiny_job_dir: Path, state: JobState,
                                        message: str) -> None:
    add_finished_job(workspace, tiny_job_dir, job_id="j-1", state=state)
    b = LocalBackend(workspace)
    if state in (JobState.RUNNING, JobState.QUEUED):      # keep reconcile from settling it: mark it just spawned
        import time
        b.registry.update_job("j-1", remote={"spawned_at": time.time()}, pid=None)
    with pytest.raises(InvalidState, match=message):
        b.deploy("j-1")
    assert b.list_models() == []


def test_deploy_refuses_a_job_without_model(workspace: Workspace, tiny_job_dir: Path) -> None:
    job = add_finished_job(workspace, tiny_job_dir)
    import shutil
    shutil.rmtree(Path(job.job_dir) / "model")
    with pytest.raises(NotFound, match="no exported model"):
        LocalBackend(workspace).deploy(job.id)


def test_deploy_versions_metrics_undeploy_rm(workspace: Workspace, job) -> None:
    b = LocalBackend(workspace)
    v1 = b.deploy(job.id)
    v2 = b.deploy(job.id, "faces")
    v3 = b.deploy(job.id, "faces")
    assert (v1.ref, v2.ref, v3.ref) == ("tiny@v1", "faces@v1", "faces@v2")
    assert {"swd", "psnr", "ssim"} <= set(v1.metrics) and v1.info["embedding_size"] == 8
    assert b.get_model("faces").version == 2
    b.undeploy("faces@v2")
    assert b.get_model("faces").version == 1                 # newest *deployed* wins
    with pytest.raises(InvalidState, match="undeployed"):
        b.predictor("faces@v2")
    b.remove_model("faces")
    assert [m.ref for m in b.list_models()] == ["tiny@v1"]
    with pytest.raises(InvalidInput):
        b.deploy(job.id, "bad name!")


def test_models_cli_with_json(workspace: Workspace, job) -> None:
    r = CliRunner()
    out = r.invoke(cli, ["models", "deploy", job.id, "--name", "shapes"])
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == "shapes@v1"
    listed = json.loads(r.invoke(cli, ["models", "list", "--json"]).stdout)
    assert [m["name"] for m in listed] == ["shapes"] and listed[0]["metrics"]["swd"] > 0
    shown = json.loads(r.invoke(cli, ["models", "show", "shapes@v1", "--json"]).stdout)
    assert shown["job_id"] == job.id
    table = r.invoke(cli, ["models", "list"]).stdout
    assert "shapes@v1" in table and "SWD" in table
    out = r.invoke(cli, ["models", "show", "nope"])
    assert out.exit_code == 2 and "No model named 'nope'" in out.output and "Traceback" not in out.output
    jobs = json.loads(r.invoke(cli, ["jobs", "list", "--json"]).stdout)
    assert jobs[0]["id"] == job.id and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"
    shown = r.invoke(cli, ["jobs", "show", job.id]).stdout
    assert "SUCCEEDED" in shown
    # the stop rule's verdict, from the trainer's best-so-far fields
    assert re.search(r"quality: +SWD [\d.]+, floor [\d.]+; best [\d.]+ at step \d+; improving", shown), shown


def test_two_processes_deploying_and_listing_keep_the_registry_consistent(workspace: Workspace, job) -> None:
    script = textwrap.dedent(f"""
        from core.local.backend import LocalBackend
        from core.workspace import Workspace
        b = LocalBackend(Workspace.open({str(workspace.root)!r}))
        for i in range(15):
            b.deploy({job.id!r}, "shared")
            versions = [m.version for m in b.list_models() if m.name == "shared"]
            assert versions == sorted(set(versions)), versions
            assert versions == list(range(1, len(versions) + 1)), versions
        print("ok")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=code_root(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err
    versions = [m.version for m in LocalBackend(workspace).list_models()]
    assert versions == list(range(1, 31))


def test_train_refuses_replicas_on_the_local_backend(workspace) -> None:
    from click.testing import CliRunner

    from tui.cli import cli
    result = CliRunner().invoke(cli, ["train", "nothing", "--preset", "tiny", "--replicas", "2"])
    assert result.exit_code == 1
    assert "--replicas needs the Vertex AI backend" in result.output
