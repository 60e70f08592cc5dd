"""genml predict / generate / encode / batch-predict through click, on a deployed copy of the tiny job."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from core.local.backend import LocalBackend
from core.workspace import Workspace
from tests.fixtures.models import ROOT
from tests.local_support import add_finished_job
from tui.cli import cli


pytestmark = pytest.mark.slow   # the tiny_job_dir fixture trains a model
E = 8


@pytest.fixture
def model(workspace: Workspace, tiny_job_dir: Path) -> str:
    job = add_finished_job(workspace, tiny_job_dir)
    return LocalBackend(workspace).deploy(job.id, "shapes").ref


def test_generate_from_embedding_files(model: str, tmp_path: Path) -> None:
    r = CliRunner()
    z = np.random.default_rng(0).standard_normal((3, E)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    (tmp_path / "z.jsonl").write_text("\n".join(json.dumps({"embeddings": v.tolist(), "key": str(i)})
                                                for i, v in enumerate(z)))
    a = r.invoke(cli, ["generate", model, "--embedding-file", str(tmp_path / "z.npy"), "-o", str(tmp_path / "a.png"),
                       "--no-show"])
    b = r.invoke(cli, ["generate", model, "--embedding-file", str(tmp_path / "z.jsonl"), "-o", str(tmp_path / "b.png"),
                       "--show"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert "▄" in b.stdout                                        # drawn with half blocks
    for i in range(3):
        pa = np.asarray(Image.open(tmp_path / f"a-{i:03d}.png"))
        pb = np.asarray(Image.open(tmp_path / f"b-{i:03d}.png"))
        assert pa.shape == (16, 16, 3) and np.array_equal(pa, pb)
    same = r.invoke(cli, ["generate", model, "--seed", "5", "-o", str(tmp_path / "s1.png"), "--no-show"])
    again = r.invoke(cli, ["generate", model, "--seed", "5", "-o", str(tmp_path / "s2.png"), "--no-show"])
    assert same.exit_code == again.exit_code == 0
    assert (tmp_path / "s1.png").read_bytes() == (tmp_path / "s2.png").read_bytes()


def test_bad_embedding_files_are_explained(model: str, tmp_path: Path) -> None:
    (tmp_path / "short.json").write_text(json.dumps([[0.0] * (E - 1)]))
    (tmp_path / "nan.json").write_text("[[" + ", ".join(["NaN"] * E) + "]]")
    (tmp_path / "junk.json").write_text("{{{")
    r = CliRunner()
    for name, message in (("short.json", "the model takes 8"), ("nan.json", "NaN"), ("junk.json", "Cannot read")):
        out = r.invoke(cli, ["generate", model, "--embedding-file", str(tmp_path / name), "--no-show"])
        assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output


def test_encode_prints_one_embedding_per_image(model: str, tmp_path: Path) -> None:
    for i, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (40, 30), color).save(tmp_path / f"{i}.jpg")
    (tmp_path / "not-an-image.png").write_bytes(b"hello")
    r = CliRunner()
    out = r.invoke(cli, ["encode", model, str(tmp_path / "0.jpg"), str(tmp_path / "1.jpg"), "--json"])
    rows = json.loads(out.stdout)
    assert [Path(x["file"]).name for x in rows] == ["0.jpg", "1.jpg"] and all(len(x["embeddings"]) == E for x in rows)
    bad = r.invoke(cli, ["encode", model, str(tmp_path / "not-an-image.png")])
    assert bad.exit_code == 1 and "does not decode" in bad.output


def test_undeployed_and_unknown_models_are_refused(model: str, workspace: Workspace, tmp_path: Path) -> None:
    r = CliRunner()
    assert r.invoke(cli, ["models", "undeploy", model]).exit_code == 0
    out = r.invoke(cli, ["generate", model, "--no-show"])
    assert out.exit_code == 1 and "undeployed" in out.output
    out = r.invoke(cli, ["generate", "ghost", "--no-show"])
    assert out.exit_code == 2 and "No model named 'ghost'" in out.output


def test_a_fresh_process_prints_no_tensorflow_start_up_lines(model: str, tmp_path: Path) -> None:
    """TensorFlow writes its start-up lines to fd 2 whatever TF_CPP_MIN_LOG_LEVEL says;
    `genml generate` in a new process (TensorFlow not imported yet) keeps them off."""
    out = tmp_path / "g.png"
    proc = subprocess.run([sys.executable, "-c", "from tui.cli import main; main()", "generate", model,
                           "--seed", "1", "-o", str(out), "--no-show"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists()
    for chatter in ("oneDNN", "InitializeLog", "I0000"):
        assert chatter not in proc.stderr, proc.stderr[-3000:]
