"""Wrong input fails fast: exit code 2, and the reason in status.json."""
from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.models import ROOT, run_trainer, trainer_env


def failed(job: Path, proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "JOB_STATE_FAILED"
    assert status["error"] and status["error"] in proc.stderr
    assert "Traceback" not in proc.stderr
    return status["error"]


def test_missing_dataset(tmp_path: Path) -> None:
    t = time.monotonic()
    err = failed(tmp_path / "job", run_trainer(tmp_path / "nowhere", tmp_path / "job"))
    assert "does not exist" in err and str(tmp_path / "nowhere") in err
    assert time.monotonic() - t < 30      # before TensorFlow loads; generous for a busy CI


def test_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    err = failed(tmp_path / "job", run_trainer(tmp_path / "data", tmp_path / "job"))
    assert "manifest.json" in err


def test_empty_dataset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({
        "format": "genml.dataset/1", "name": "empty",
        "options": {"crop": "random", "image_size": 16, "stored_size": 22, "crop_fraction": 0.75},
        "counts": {"scanned": 3, "train": 0, "validation": 0, "skipped": 3, "duplicates": 0},
        "shards": {"train": [], "validation": []}}))
    err = failed(tmp_path / "job", run_trainer(data, tmp_path / "job"))
    assert "no training images" in err


def test_image_size_larger_than_stored(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    err = failed(tmp_path / "job", run_trainer(tiny_dataset_dir, tmp_path / "job", "--image-size", "64"))
    assert "image size 64" in err and "(32)" in err


@pytest.mark.slow
def test_embedding_size_mismatch_on_resume(tmp_path: Path, tiny_job_dir: Path,
                                           tiny_dataset_dir: Path) -> None:
    job = tmp_path / "job"
    shutil.copytree(tiny_job_dir, job)
    err = failed(job, run_trainer(tiny_dataset_dir, job, "--embedding-size", "5"))
    assert "embedding size 5" in err and "(8)" in err


@pytest.mark.slow
def test_full_disk_while_checkpointing(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    """A real write limit (RLIMIT_FSIZE, 64 kB) makes the first checkpoint fail to write."""
    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # get EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    job = tmp_path / "job"
    cmd = [sys.executable, "-m", "trainer.task", "--data-dir", str(tiny_dataset_dir),
           "--job-dir", str(job), "--preset", "tiny", "--checkpoint-every", "1",
           "--sample-every", "100"]
    proc = subprocess.run(cmd, cwd=ROOT, env=trainer_env(), capture_output=True, text=True,
                          timeout=180, preexec_fn=limit_file_size)
    err = failed(job, proc)
    assert "disk full" in err and "checkpoint" in err


@pytest.mark.slow
def test_resume_keeps_the_recorded_settings_unless_flags_say_otherwise(
        tmp_path: Path, tiny_job_dir: Path, tiny_dataset_dir: Path) -> None:
    """A job started under other defaults (here: a recorded feature weight and KL weight
    the tiny preset does not have) resumes with them; a flag given again wins."""
    job = tmp_path / "job"
    shutil.copytree(tiny_job_dir, job)
    config = json.loads((job / "config.json").read_text())
    done = config["trainer"]["max_steps"]
    config["trainer"].update(feature_weight=0.5, kl_weight=0.25)
    (job / "config.json").write_text(json.dumps(config))

    proc = run_trainer(tiny_dataset_dir, job, "--max-steps", str(done + 2), "--kl-weight", "0.75")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from step {done}" in proc.stdout + proc.stderr    # stdout since issue 13 moved the log lines
    resumed = json.loads((job / "config.json").read_text())["trainer"]
    assert resumed["feature_weight"] == 0.5          # recorded, not the preset's 0.0
    assert resumed["kl_weight"] == 0.75              # given again: the flag wins
    assert resumed["max_steps"] == done + 2
    assert json.loads((job / "status.json").read_text())["step"] == done + 2


def test_a_setting_added_after_the_job_started_resumes_off_not_at_the_new_preset_value() -> None:
    """`quick` turned on --augment-target after jobs had been started under it; their
    config.json has no such key and their checkpoints no `augment_p`. Resuming one must keep
    the setting off (restore asserts every variable is matched), while recorded ones stay."""
    pytest.importorskip("tensorflow")
    from trainer.presets import resolve
    from trainer.task import recorded_settings

    assert resolve("quick", {}).augment_target > 0            # what a new quick job gets
    assert resolve("quick", {}).encoder_every == 4
    assert resolve("quick", {}).d_scales == 2                 # its D's checkpoint has a 16x16 head
    old_job = {"preset": "quick", "image_size": 32, "augment": "color,translation", "kl_weight": 0.5}
    cfg = resolve("quick", recorded_settings(old_job))
    assert cfg.augment_target == 0.0 and cfg.r1 == 0.0 and cfg.encoder_every == 1
    assert cfg.d_scales == 1
    assert cfg.augment == "color,translation" and cfg.kl_weight == 0.5 and cfg.image_size == 32
