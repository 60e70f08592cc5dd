"""The whole local flow with real processes: demo dataset -> `genml train` (detached) -> SUCCEEDED
-> deploy -> predict -> generate -> encode -> batch-predict -> `genml serve` over HTTP -> SIGTERM."""
from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from core.local.backend import LocalBackend
from core.local.jobs import code_root
from core.types import JobState
from core.workspace import Workspace
from tests.local_support import free_port, wait_for
from tui.cli import cli

GENML = [sys.executable, "-c", "from tui.cli import main; main()"]


@pytest.mark.slow
def test_local_flow_end_to_end(workspace: Workspace, tmp_path: Path) -> None:
    LocalBackend(workspace).make_demo_dataset("demo", count=48)

    train = subprocess.run([*GENML, "train", "demo", "--preset", "tiny"], cwd=code_root(),
                           capture_output=True, text=True, timeout=60)
    assert train.returncode == 0, train.stderr
    job_id = train.stdout.strip()
    assert job_id.startswith("demo-")

    def finished() -> bool:
        return LocalBackend(workspace).get_job(job_id).state.terminal

    wait_for(finished, 240, interval=0.5, what="the tiny training job")
    job = LocalBackend(workspace).get_job(job_id)
    assert job.state is JobState.SUCCEEDED, job.error

    r = CliRunner()
    logs = r.invoke(cli, ["jobs", "logs", job_id, "-f"])       # ends by itself: the job is done
    assert logs.exit_code == 0 and "job SUCCEEDED" in logs.stdout.splitlines()[-1]
    assert r.invoke(cli, ["models", "deploy", job_id]).stdout.strip() == "demo@v1"

    inst = tmp_path / "instances.jsonl"
    inst.write_text("\n".join([json.dumps({"embeddings": [0.5] * 8, "key": "0"}),
                               json.dumps({"embeddings": [0.5] * 9, "key": "1"}),
                               json.dumps({"embeddings": [-0.5] * 8, "key": "2"})]) + "\n")
    pred = r.invoke(cli, ["predict", "demo", "--json-instances", str(inst)])
    lines = [json.loads(x) for x in pred.stdout.splitlines()]
    assert [x["key"] for x in lines] == ["0", "1", "2"]
    assert "image_bytes" in lines[0] and "error" in lines[1] and pred.exit_code == 1

    out = tmp_path / "gen" / "img.png"
    gen = r.invoke(cli, ["generate", "demo", "-n", "2", "--seed", "3", "-o", str(out)])
    assert gen.exit_code == 0, gen.output
    files = [Path(p) for p in gen.stdout.split()]
    assert len(files) == 2 and Image.open(files[0]).size == (16, 16)

    enc = r.invoke(cli, ["encode", "demo", str(files[0])])
    assert len(json.loads(enc.stdout)["embeddings"]) == 8

    bp = r.invoke(cli, ["batch-predict", "demo", "--input", str(inst), "--output", str(tmp_path / "batch"), "--json"])
    res = json.loads(bp.stdout)
    assert (res["predictions"], res["errors"]) == (2, 1)
    assert (tmp_path / "batch" / "predictions-00000-of-00001.jsonl").exists()

    # batch prediction killed with SIGKILL mid-run, then resumed: every line once
    big = tmp_path / "big.jsonl"
    with open(big, "w") as f:
        for i in range(10_000):
            f.write(json.dumps({"embeddings": [(i % 97) / 50.0] * 8, "key": str(i)}) + "\n")
    out_dir = tmp_path / "big-out"
    killed = subprocess.Popen([*GENML, "batch-predict", "demo", "--input", str(big), "--output", str(out_dir)],
                              cwd=code_root(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(out_dir.glob("predictions-*")) or killed.poll() is not None, 120, interval=0.02,
             what="the first shard")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    shards_at_kill = len(list(out_dir.glob("predictions-*")))
    resumed = r.invoke(cli, ["batch-predict", "demo", "--input", str(big), "--output", str(out_dir), "--json"])
    assert json.loads(resumed.stdout)["predictions"] == 10_000
    keys = [json.loads(line)["key"] for p in sorted(out_dir.glob("predictions-*")) for line in p.open()]
    assert sorted(keys, key=int) == [str(i) for i in range(10_000)]          # none lost, none twice
    assert 1 <= shards_at_kill <= 10

    port = free_port()
    server = subprocess.Popen([*GENML, "serve", "demo", "--port", str(port), "--quiet"], cwd=code_root(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = server.stdout.readline()                          # printed once the socket listens
        assert "serving demo@v1" in ready, server.stderr.read() if server.poll() is not None else ready
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/models/demo:predict",
                     json.dumps({"instances": [{"embeddings": [0.5] * 8, "key": "0"}]}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 200
        assert body["predictions"][0]["image_bytes"] == lines[0]["image_bytes"]   # same model, same answer
        conn.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0                      # graceful: exits cleanly
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
