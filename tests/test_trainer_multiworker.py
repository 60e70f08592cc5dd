"""Two worker processes on 127.0.0.1 train one model through TF_CONFIG; only the chief writes,
and it writes where Vertex AI's AIP_* variables say."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.models import ROOT, trainer_env

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_train_one_model(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    jobs = [tmp_path / "job", tmp_path / "job"]      # one job dir, as on Vertex AI
    procs = []
    vertex = tmp_path / "vertex"            # Vertex AI's AIP_* dirs replace the job dir's own
    for index in range(2):
        env = trainer_env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env.update(AIP_MODEL_DIR=str(vertex / "model"), AIP_CHECKPOINT_DIR=str(vertex / "ckpt"),
                   AIP_TENSORBOARD_LOG_DIR=str(vertex / "tb"))
        cmd = [sys.executable, "-m", "trainer.task", "--data-dir", str(tiny_dataset_dir),
               "--job-dir", str(jobs[index]), "--preset", "tiny", "--max-steps", "6",
               "--sample-every", "100", "--eval-every", "100"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]

    job = tmp_path / "job"
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "JOB_STATE_SUCCEEDED" and status["step"] == 6
    assert status["pid"] == procs[0].pid                 # worker 0 is the chief; it alone writes
    config = json.loads((job / "config.json").read_text())
    assert config["workers"] == 2
    assert (vertex / "model" / "saved_model.pb").exists() and (vertex / "model" / "genml.json").exists()
    assert [p.name for p in (vertex / "ckpt").glob("ckpt-*.index")]
    assert list((vertex / "tb").glob("events.out.tfevents.*"))
    assert not (job / "model").exists() and not (job / "checkpoints").exists()
    # Both workers computed the same (all-reduced) losses: they trained one model.
    lines = [[ln for ln in out.splitlines() if ln.startswith("step 6/6")] for out in outs]
    assert lines[0] and lines[1]
    assert lines[0][0].split("img/s")[1] == lines[1][0].split("img/s")[1]
