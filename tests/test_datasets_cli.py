"""`genml dataset ...` through click's CliRunner, and a real process killed mid-build."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from core.backend import Progress
from core.workspace import Workspace
from tests.fixtures.datasets import image_folder
from tui.cli import cli
from tui.cli.dataset import _Bar


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_demo_list_show_rm(workspace: Workspace) -> None:
    code, out, err = run("dataset", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, err = run("dataset", "demo", "--name", "shapes", "--count", "30")
    assert code == 0, err
    assert "dataset shapes:" in out

    code, out, _ = run("dataset", "list", "--json")
    listed = json.loads(out)
    assert [d["name"] for d in listed] == ["shapes"]
    assert listed[0]["train_count"] + listed[0]["validation_count"] == 30

    code, out, _ = run("dataset", "show", "shapes", "--json")
    shown = json.loads(out)
    assert shown["name"] == "shapes"
    assert shown["train_count"] + shown["validation_count"] == 30
    assert shown["skipped"] == []
    assert shown["options"]["image_size"] == 64 and shown["shards"]["train"]

    code, out, _ = run("dataset", "show", "shapes")
    assert code == 0 and "30 scanned" in out

    code, out, err = run("dataset", "demo", "--name", "shapes", "--count", "5")
    assert code == 1 and "already exists" in err and "--replace" in err and "Traceback" not in err
    code, out, err = run("dataset", "demo", "--name", "shapes", "--count", "5", "--replace")
    assert code == 0, err
    assert json.loads(run("dataset", "show", "shapes", "--json")[1])["counts"]["scanned"] == 5

    code, out, _ = run("dataset", "rm", "shapes", "--yes")
    assert code == 0
    assert json.loads(run("dataset", "list", "--json")[1]) == []
    code, out, err = run("dataset", "show", "shapes")
    assert code == 2 and "No dataset named 'shapes'" in err and "Traceback" not in err


def test_add_reports_skipped_files_in_show_json(workspace: Workspace, tmp_path: Path) -> None:
    src = image_folder(tmp_path / "pics", (120, 90), ".jpg")
    (src / "empty.png").write_bytes(b"")
    (src / "tiny.jpg").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(src / "tiny.jpg")
    code, out, err = run("dataset", "add", str(src), "--name", "pics", "--image-size", "32", "--crop", "center")
    assert code == 0, err
    shown = json.loads(run("dataset", "show", "pics", "--json")[1])
    assert shown["train_count"] + shown["validation_count"] == 6
    reasons = {s["path"]: s["reason"] for s in shown["skipped"]}
    assert reasons["empty.png"].startswith("empty file")
    assert "minimum is 16 px" in reasons["tiny.jpg"]
    assert shown["crop"] == "center" and shown["options"]["stored_size"] == 43

    code, out, err = run("dataset", "add", str(tmp_path / "missing"), "--name", "x")
    assert code == 2 and "does not exist" in err and "Traceback" not in err


def test_progress_bar_shows_count_rate_and_eta() -> None:
    bar = _Bar("processing")
    bar(Progress("scan", 10, 0, "x"))
    bar(Progress("process", 0, 100))
    bar(Progress("process", 50, 100, "a.jpg"))
    task = bar.progress.tasks[0]
    assert task.total == 100 and task.completed == 50
    columns = [type(c).__name__ for c in bar.progress.columns]
    assert "MofNCompleteColumn" in columns and "TimeRemainingColumn" in columns


@pytest.mark.slow
def test_killed_build_leaves_no_dataset_and_a_rerun_redoes_it(workspace: Workspace) -> None:
    env = dict(os.environ, GENML_HOME=str(workspace.root))
    cmd = [sys.executable, "-c", "from tui.cli import main; main()",
           "dataset", "demo", "--name", "k", "--count", "20000"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    building = workspace.tmp_dir / "dataset-k.building"
    deadline = time.monotonic() + 60
    while not list(building.glob("train-*.partial")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the build never started writing"
        time.sleep(0.05)   # polling a condition, not synchronising on time
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # a reader sees no dataset: no folder under datasets/, no finished shard names, no registry row
    assert not workspace.dataset_dir("k").exists()
    assert not list(building.glob("*-of-*.tfrecord")) and not (building / "manifest.json").exists()
    code, out, _ = run("dataset", "list", "--json")
    assert json.loads(out) == []
    code, out, err = run("dataset", "demo", "--name", "k", "--count", "12")
    assert code == 0, err
    assert not building.exists()
    shown = json.loads(run("dataset", "show", "k", "--json")[1])
    assert shown["train_count"] + shown["validation_count"] == 12


def test_replace_swaps_in_only_a_complete_dataset(workspace: Workspace, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["dataset", "demo", "--name", "d", "--count", "20"]).exit_code == 0
    refused = runner.invoke(cli, ["dataset", "demo", "--name", "d", "--count", "30"])
    assert refused.exit_code == 1 and "--replace" in refused.output

    # A rebuild that fails (no usable images) keeps the old dataset, files and all.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.jpg").write_bytes(b"not an image")
    failed = runner.invoke(cli, ["dataset", "add", str(junk), "--name", "d", "--replace"])
    assert failed.exit_code == 1 and "No usable images" in failed.output
    shown = json.loads(runner.invoke(cli, ["dataset", "show", "d", "--json"]).output)
    assert shown["train_count"] + shown["validation_count"] == 20
    assert (workspace.dataset_dir("d") / "manifest.json").exists()

    ok = runner.invoke(cli, ["dataset", "demo", "--name", "d", "--count", "30", "--replace"])
    assert ok.exit_code == 0, ok.output
    shown = json.loads(runner.invoke(cli, ["dataset", "show", "d", "--json"]).output)
    assert shown["train_count"] + shown["validation_count"] == 30
