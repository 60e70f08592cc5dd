"""The Backend protocol is complete (issue 11 item 4) and jobs are checked against their
dataset when they are submitted (item 2). Real registry, real processes, the fake Vertex AI
server and the Cloud Storage emulator; nothing here trains."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from core.backend import Backend, Capabilities, TrainOptions
from core.errors import InvalidInput
from core.jobdir import JobDir
from core.local.backend import LocalBackend
from core.registry import Registry
from core.types import Dataset, JobState
from core.vertex.backend import VertexBackend
from core.workspace import Workspace
from tests.fakes.fixtures import *  # noqa: F403  (fixtures: vertex_backend, fake_vertex, the emulator)
from tests.fakes.vertex import FakeVertex
from tests.local_support import register_tiny_dataset

ROOT = Path(__file__).resolve().parent.parent


def _required(proto: type) -> list[str]:
    """The protocol's methods without a default (their body is only `...` or a docstring)."""
    names = []
    for name, fn in vars(proto).items():
        if not inspect.isfunction(fn) or name.startswith("_"):
            continue
        body = ast.parse(inspect.getsource(fn).strip()).body[0].body  # type: ignore[attr-defined]  # a def
        if all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body):
            names.append(name)
    return names


@pytest.mark.parametrize("cls", [LocalBackend, VertexBackend])
def test_each_backend_implements_every_method_without_a_default(cls: type) -> None:
    required = _required(Backend)
    assert {"submit_job", "read_log", "predictor"} <= set(required)
    assert Backend in cls.__mro__
    missing = [n for n in required if getattr(cls, n) is getattr(Backend, n)]
    assert not missing, f"{cls.__name__} leaves {missing} to the protocol's empty stubs"


def test_callers_ask_the_backend_instead_of_probing_it() -> None:
    """No hasattr/isinstance/getattr on a backend, nor a branch on its name, in tui/ or core/serve.py."""
    found = []
    for path in [*sorted((ROOT / "tui").rglob("*.py")), ROOT / "core" / "serve.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("hasattr", "isinstance", "getattr") and len(node.args) >= 2 \
                    and (node.func.id == "isinstance" or isinstance(node.args[1], ast.Constant)):
                # (getattr with a computed name is delegation, as in tui/app.py's SerialBackend)
                if "backend" in ast.unparse(node.args[0]).lower() or "predictor" in ast.unparse(node.args[0]):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.Compare) and "backend.name" in ast.unparse(node.left):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not found


def test_local_defaults(workspace: Workspace) -> None:
    backend = LocalBackend(workspace)
    assert backend.capabilities() == Capabilities()          # no cloud console, no machine choice
    backend.set_notice_handler(lambda text: None)             # nothing to say: accepted, ignored
    assert backend.reconcile() == []
    job_dir = workspace.job_dir("x")
    job_dir.mkdir(parents=True)
    (job_dir / "status.json").write_text('{"state": "JOB_STATE_RUNNING", "step": 7, "max_steps": "12"}')
    from core.types import Job
    jd = backend.job_dir(Job(id="x", dataset="d", state=JobState.RUNNING, job_dir=str(job_dir)))
    assert isinstance(jd, JobDir) and jd.progress() == {"step": 7, "max_steps": 12}


def test_vertex_capabilities_and_notices(vertex_backend: Any) -> None:
    caps = vertex_backend.capabilities()
    assert caps.machines and caps.cloud is vertex_backend
    heard: list[str] = []
    vertex_backend.set_notice_handler(heard.append)
    vertex_backend.billing_notice()
    assert len(heard) == 1 and "billable" in heard[0]


def test_the_dataset_decides_the_image_size() -> None:
    ds = Dataset(name="pics", path="/nowhere", created=0.0, image_size=128)
    assert TrainOptions().for_dataset(ds).image_size == 128                       # seed: the dataset's
    assert TrainOptions(preset="quick").for_dataset(ds).image_size == 32         # its own, smaller one
    assert TrainOptions(image_size=64).for_dataset(ds).image_size == 64          # a flag overrides
    assert "--image-size" in TrainOptions().for_dataset(ds).trainer_args()
    small = Dataset(name="small", path="/nowhere", created=0.0, image_size=32)
    with pytest.raises(InvalidInput) as err:
        TrainOptions(image_size=64).for_dataset(small)
    assert "64" in err.value.message and "'small'" in err.value.message and "--image-size 32" in err.value.hint
    with pytest.raises(InvalidInput):
        TrainOptions(image_size=48).for_dataset(ds)
    with pytest.raises(InvalidInput):
        TrainOptions(loss="hinge").for_dataset(ds)


def test_local_submit_refuses_a_size_the_dataset_lacks_before_any_process(workspace: Workspace) -> None:
    register_tiny_dataset(workspace, "tiny", count=12)                # stored for 32x32
    backend = LocalBackend(workspace)
    with pytest.raises(InvalidInput, match="larger than dataset 'tiny' holds"):
        backend.submit_job("tiny", TrainOptions(preset="tiny", image_size=64))
    assert Registry(workspace.registry_path).list_jobs() == []
    assert not any(workspace.jobs_dir.iterdir()) if workspace.jobs_dir.exists() else True


def test_vertex_submit_refuses_a_size_the_dataset_lacks_before_any_cloud_call(
        vertex_backend: Any, fake_vertex: FakeVertex, workspace: Workspace) -> None:
    Registry(workspace.registry_path).add_dataset(
        Dataset(name="faces", path=str(workspace.root / "datasets" / "faces"), created=0.0, image_size=32))
    with pytest.raises(InvalidInput, match="larger than dataset 'faces' holds"):
        vertex_backend.submit_job("faces", TrainOptions(image_size=128))
    assert fake_vertex.calls("aiplatform.projects.locations.customJobs.create") == []
    assert vertex_backend.notices == []                     # not even the billing note
    assert Registry(workspace.registry_path).list_jobs() == []


def test_train_refuses_machine_type_on_the_local_backend(workspace: Workspace) -> None:
    """Asked through Backend.capabilities(), like --replicas: the local backend has no machines to pick."""
    from click.testing import CliRunner

    from tui.cli import cli
    result = CliRunner().invoke(cli, ["train", "nothing", "--preset", "tiny", "--machine-type", "n1-standard-8"])
    assert result.exit_code == 1
    assert "--machine-type needs the Vertex AI backend" in result.output
    assert Registry(workspace.registry_path).list_jobs() == []
