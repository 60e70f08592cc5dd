"""Hostile inputs and unlucky disks (issue 12): names, FIFOs, huge files, forged output,
private workspaces, datasets in use, token files, endless instance files."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from core.datasets import catalog, images
from core.errors import InvalidInput, InvalidState
from core.local import models
from core.registry import Registry
from core.types import Job, JobState
from core.workspace import Workspace
from tests.fixtures.datasets import image_folder
from tui.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def reg(workspace: Workspace) -> Registry:
    return Registry(workspace.registry_path)


# ---- item 10: names ending in a newline ---------------------------------------------------

@pytest.mark.parametrize("name", ["faces\n", "faces\n\n", "a\nb", "\nfaces", "faces "])
def test_names_with_a_newline_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        catalog.check_name(name)
    with pytest.raises(InvalidInput):
        models.check_name(name)


def test_dataset_named_with_a_trailing_newline_cannot_be_made(workspace: Workspace, reg: Registry) -> None:
    with pytest.raises(InvalidInput):
        catalog.demo(workspace, reg, "shapes\n", 4, workers=1)
    assert reg.list_datasets() == []


# ---- item 9: FIFOs and size caps -----------------------------------------------------------

def test_a_fifo_swapped_in_after_the_scan_is_skipped_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    code = ("from core.datasets.images import Options, process_file; import sys; "
            "print(process_file(sys.argv[1], 'pipe.png', Options()).reason)")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a named pipe blocked the worker")
    assert "not a regular file" in out.stdout, out.stderr


def test_a_huge_sparse_file_is_refused_without_being_read(tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    with open(big, "wb") as f:
        f.truncate(4 * 1024 ** 3)                     # 4 GB of holes: no disk, no time to make
    started = time.monotonic()
    got = images.process_file(str(tmp_path), "huge.png", images.Options())
    assert time.monotonic() - started < 5
    assert got.reason.startswith("too large: 4295 MB"), got.reason
    from core.datasets.scan import scan
    found = scan(tmp_path)
    assert found.files == [] and found.skipped[0]["reason"].startswith("too large")


def test_a_fifo_present_at_scan_time_is_reported(tmp_path: Path) -> None:
    from core.datasets.scan import scan
    os.mkfifo(tmp_path / "pipe.jpg")
    Image.new("RGB", (40, 40)).save(tmp_path / "ok.png")
    found = scan(tmp_path)
    assert found.files == ["ok.png"]
    assert found.skipped == [{"path": "pipe.jpg", "reason": "not a regular file (a named pipe, device or socket); "
                                                           "only image files are read"}]


# ---- item 11: file names printed raw ------------------------------------------------------

def test_dataset_show_escapes_control_characters_and_undecodable_names(tmp_path: Path, workspace: Workspace) -> None:
    src = image_folder(tmp_path / "src", (48, 48))
    (src / "evil\nforged: line.png").write_bytes(b"not an image")
    os.makedirs(os.fsencode(src) + b"/\xff\xfe", exist_ok=True)
    (Path(os.fsdecode(os.fsencode(src) + b"/\xff\xfe")) / "x.png").write_bytes(b"junk")
    assert run("dataset", "add", str(src), "--name", "d", "--image-size", "32")[0] == 0
    # a real process on a UTF-8 "terminal": the way a person would see it
    env = dict(os.environ, PYTHONIOENCODING="utf-8", GENML_HOME=str(workspace.root))
    out = subprocess.run([sys.executable, "-c", "from tui.cli import main; main()", "dataset", "show", "d"],
                         cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    text = out.stdout.decode("utf-8")
    assert "evil\\nforged: line.png: not an image" in text
    assert "\\xff\\xfe/x.png" in text
    assert not any(line.startswith("forged") for line in text.splitlines())


# ---- item 14: private workspace -------------------------------------------------------------

def test_a_new_workspace_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ws = Workspace.open(tmp_path / "home")
    finally:
        os.umask(old)
    for d in (ws.root, ws.datasets_dir, ws.jobs_dir, ws.tmp_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert not ws.open_to_others()


# ---- item 8: datasets in use ----------------------------------------------------------------

def test_rm_and_replace_refuse_a_dataset_an_unfinished_job_reads(workspace: Workspace, reg: Registry) -> None:
    catalog.demo(workspace, reg, "shapes", 8, workers=1)
    reg.add_job(Job(id="j1", dataset="shapes", state=JobState.RUNNING, created=time.time()))
    code, out, err = run("dataset", "rm", "shapes", "-y")
    assert code != 0 and "in use by 1 unfinished job(s): j1" in err and "--force" in err
    with pytest.raises(InvalidState):
        catalog.demo(workspace, reg, "shapes", 8, workers=1, replace=True)
    assert reg.get_dataset("shapes")
    reg.update_job("j1", state=JobState.SUCCEEDED)
    catalog.demo(workspace, reg, "shapes", 8, workers=1, replace=True)      # finished jobs do not count
    reg.add_job(Job(id="j2", dataset="shapes", state=JobState.QUEUED, created=time.time()))
    code, out, err = run("dataset", "rm", "shapes", "-y", "--force")
    assert code == 0, err
    assert reg.list_datasets() == []


# ---- item 5: the token kept out of `ps` ---------------------------------------------------

def test_serve_takes_the_token_from_a_file_or_the_environment(tmp_path: Path, workspace: Workspace,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tok = tmp_path / "token"
    tok.write_text("s3cret\n")
    # past the public-bind check (a token was found), then no such model: exit 2, no warning
    code, out, err = run("serve", "nomodel", "--host", "0.0.0.0", "--token-file", str(tok))
    assert code == 2 and "No model" in err and "without a token" not in err and "visible" not in err
    monkeypatch.setenv("GENML_SERVE_TOKEN_FILE", str(tok))
    code, out, err = run("serve", "nomodel", "--host", "0.0.0.0")
    assert code == 2 and "No model" in err
    monkeypatch.delenv("GENML_SERVE_TOKEN_FILE")
    monkeypatch.setenv("GENML_SERVE_TOKEN", "s3cret")
    code, out, err = run("serve", "nomodel", "--host", "0.0.0.0")
    assert code == 2 and "visible" not in err
    monkeypatch.delenv("GENML_SERVE_TOKEN")
    code, out, err = run("serve", "nomodel", "--host", "0.0.0.0", "--token", "s3cret")
    assert code == 2 and "visible to every user" in err
    (tmp_path / "empty").write_text("\n")
    code, out, err = run("serve", "nomodel", "--host", "0.0.0.0", "--token-file", str(tmp_path / "empty"))
    assert code != 0 and "is empty" in err


# ---- item 13: an endless instance file ------------------------------------------------------

def test_predict_reads_dev_zero_in_bounded_memory_and_stops() -> None:
    """The reader `genml predict --json-instances` uses, in its own process with 1 GB of
    address space: /dev/zero is one endless line, refused with a reason."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from core.errors import GenmlError\n"
            "from tui.cli.predict import _read_jsonl\n"
            "try:\n    list(_read_jsonl('/dev/zero'))\n"
            "except GenmlError as exc:\n    print('refused:', exc.message)\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading /dev/zero did not stop")
    assert out.returncode == 0 and "refused: Line 1 of the input runs on" in out.stdout, out.stderr[-2000:]


def test_predict_jsonl_reader_keeps_line_numbers_and_marks_bad_lines(tmp_path: Path) -> None:
    from core.predict import BadInstance
    from tui.cli.predict import _read_jsonl
    f = tmp_path / "in.jsonl"
    f.write_text('{"key": "a"}\n\n{oops\n{"key": "b"}\n')
    got = list(_read_jsonl(f))
    assert got[0] == {"key": "a"} and got[2] == {"key": "b"}
    assert isinstance(got[1], BadInstance) and got[1].error.startswith("instance 1 (line 3): not valid JSON")


# ---- item 7: trainer options checked before the job is queued -----------------------------

@pytest.mark.parametrize("extra, why", [
    (["--job-dir", "/tmp/elsewhere"], "--job-dir is set by genml"),
    (["--data-dir=/tmp/other"], "--data-dir is set by genml"),
    (["--job", "/tmp/elsewhere"], "--job-dir is set by genml"),          # argparse abbreviations too
    (["--checkpoint-every", "0"], "--checkpoint-every 0 must be at least 1"),
    (["--log-every", "-3"], "--log-every -3 must be at least 1"),
    (["--eval-every", "0"], "--eval-every 0 must be at least 1"),
    (["--lr-g", "-1"], "--lr-g -1.0 must be 0 or more"),          # 0 is allowed: it freezes that network
    (["--ema-decay", "1.5"], "--ema-decay 1.5 is out of range"),
    (["--eval-evry", "3"], "unrecognized arguments: --eval-evry"),
])
def test_genml_train_checks_trainer_options_before_queueing(workspace: Workspace, reg: Registry,
                                                            extra: list[str], why: str) -> None:
    catalog.demo(workspace, reg, "shapes", 8, workers=1)
    code, out, err = run("train", "shapes", "--preset", "tiny", *extra)
    assert code != 0 and why in err, err
    assert reg.list_jobs() == []                                # nothing queued, no process started


# ---- item 15: genml doctor -------------------------------------------------------------------

def test_doctor_rebuilds_a_damaged_registry_from_the_folders(workspace: Workspace, reg: Registry) -> None:
    from core.errors import StorageError
    catalog.demo(workspace, reg, "shapes", 8, workers=1)
    job_dir = workspace.job_dir("shapes-20260101-000000")
    job_dir.mkdir()
    (job_dir / "config.json").write_text(json.dumps({"trainer": {"preset": "tiny", "max_steps": 12},
                                                     "dataset": {"name": "shapes"}}))
    (job_dir / "status.json").write_text(json.dumps({"state": "JOB_STATE_RUNNING", "step": 6, "max_steps": 12}))
    (workspace.tmp_dir / "trash-old-1234").mkdir()
    reg.close()
    for suffix in ("-wal", "-shm"):
        Path(str(workspace.registry_path) + suffix).unlink(missing_ok=True)
    workspace.registry_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError) as err:
        Registry(workspace.registry_path)
    assert "genml doctor --fix" in err.value.hint

    code, out, err_text = run("doctor")
    assert code == 1 and "cannot be opened" in out and "genml doctor --fix" in err_text
    code, out, _ = run("doctor", "--fix", "--json")
    assert code == 0, out
    found = {(f["kind"], f["what"]): f for f in json.loads(out)["findings"]}
    assert found[("dataset", "shapes")]["fixed"] and found[("job", "shapes-20260101-000000")]["fixed"]
    assert found[("tmp", "trash-old-1234")]["fixed"]
    fresh = Registry(workspace.registry_path)
    assert [d.name for d in fresh.list_datasets()] == ["shapes"]
    job = fresh.get_job("shapes-20260101-000000")
    assert job.state is JobState.FAILED and "resume" in job.error and job.dataset == "shapes" and job.step == 6
    assert any(p.name.startswith("registry.sqlite.damaged-") for p in workspace.root.iterdir())
    assert run("doctor") == (0, f"workspace {workspace.root}\n  all good: the registry and the folders agree\n", "")


def test_doctor_reports_orphans_and_an_open_workspace(workspace: Workspace, reg: Registry) -> None:
    catalog.demo(workspace, reg, "shapes", 8, workers=1)
    import shutil
    shutil.rmtree(workspace.dataset_dir("shapes"))
    os.chmod(workspace.root, 0o755)
    code, out, _ = run("doctor")
    assert code == 1
    assert "dataset shapes: registered, but" in out and "permissions" in out
    code, out, _ = run("doctor", "--fix")
    assert code == 0 and reg.list_datasets() == [] and not workspace.open_to_others()
