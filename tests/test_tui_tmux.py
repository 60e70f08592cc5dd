"""The real `genml-tui` in tmux, driven like a person: the first-run path end to end.

Make the demo dataset, start a tiny job, watch it finish, deploy it, open it in the
generator, resample. Keys go in with `tmux send-keys`; the screen is read back with
`capture-pane` and polled with a deadline.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUI = Path(sys.executable).parent / "genml-tui"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    def __init__(self, session: str, env: dict[str, str]) -> None:
        self.session = session
        self.env = env

    def start(self, command: str, width: int = 80, height: int = 24) -> None:
        env_args = [f"{k}={v}" for k, v in self.env.items()]
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height),
                        "env", *env_args, "sh", "-c", command], check=True, cwd=ROOT)

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.session, key], check=True)

    def text(self, text: str) -> None:
        """Type literally (tmux would read "--eval-every" as an option or a key name)."""
        subprocess.run(["tmux", "send-keys", "-t", self.session, "-l", "--", text], check=True)

    def screen(self) -> str:
        out = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True)
        return out.stdout

    def wait(self, cond: Callable[[str], bool] | str, timeout: float, what: str = "") -> str:
        check = (lambda s: cond in s) if isinstance(cond, str) else cond
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.1)     # polling interval, not synchronisation: the condition decides
        raise AssertionError(f"timed out waiting for {what or cond!r}; the screen was:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def seed_on(screen: str) -> str | None:
    m = re.search(r"seed (\d+)", screen)
    return m.group(1) if m else None


def test_first_run_in_tmux(tmp_path: Path) -> None:
    env = {"GENML_HOME": str(tmp_path / "home"), "GENML_CONFIG": str(tmp_path / "config.toml"),
           "GENML_SAVE_DIR": str(tmp_path / "saved"), "GENML_DEMO_COUNT": "200", "TERM": "xterm-256color",
           "COLORTERM": "truecolor",
           "PATH": os.environ.get("PATH", "")}
    tm = Tmux(f"genml-tui-test-{os.getpid()}", env)
    tm.start(f"{TUI}; echo EXITED; sleep 30")
    try:
        tm.wait("Welcome to genml", 30, "the welcome screen")
        tm.keys("d")
        tm.wait(lambda s: re.search(r"demo\s+200\s", s) is not None, 180, "the demo dataset row")
        tm.keys("2")
        tm.wait(lambda s: "No training jobs yet" in s and "New job" in s, 30)
        tm.keys("n")
        tm.wait(lambda s: "New training job" in s and "training steps; tiny: 12" in s, 60, "the hints")
        tm.text("8")                                      # steps (focused first)
        tm.wait(lambda s: re.search(r"Steps\s+8\s", s) is not None, 10, "steps typed")
        time.sleep(0.5)
        for _ in range(5):                                # seed, batch, size, augment, more options
            tm.keys("Tab")
            time.sleep(0.3)                               # at a person's pace (a burst of tabs is lost);
                                                          # the screen below decides
        tm.text("--eval-evry 4")
        tm.wait("unrecognized arguments: --eval-evry", 10, "the inline error")
        tm.keys("Enter")                                  # refused: the dialog stays
        time.sleep(0.5)
        assert "New training job" in tm.screen()
        tm.keys("C-u")                                    # clear the field
        tm.wait(lambda s: "--eval-evry" not in s, 10, "the field cleared")
        tm.text("--eval-every 4")
        tm.wait("--max-steps 8 --eval-every 4", 10, "the genml train line")
        tm.keys("Enter")                                  # Start
        tm.wait("RUNNING", 120, "the job to run")
        tm.wait(lambda s: "SUCCEEDED" in s and "Job finished" in s, 300, "the job to finish")
        job_dir = next((tmp_path / "home" / "jobs").glob("demo-*"))
        assert json.loads((job_dir / "config.json").read_text())["trainer"]["eval_every"] == 4
        log = (job_dir / "train.log").read_text()
        for chatter in ("oneDNN custom operations", "InitializeLog", "cpu_feature_guard"):   # a clean log
            assert chatter not in log, log[:2000]
        assert "TensorFlow" in log.splitlines()[1] and "loaded" in log.splitlines()[1], log[:2000]
        screen = tm.wait(lambda s: "/8 " in s and re.search(r"\d\.\d{3}", s) is not None, 30, "steps and SWD")
        tm.keys("z")                                      # the latest samples, zoomed: 4x4 of 16 px
        tm.wait("zoom  1 of 16", 15, "the zoom")
        tm.keys("l")
        tm.wait("zoom  2 of 16", 15, "the next cell")
        tm.keys("Escape")
        tm.wait(lambda s: "zoom  2 of 16" not in s and "New job" in s, 15, "the zoom closed")
        tm.keys("3")
        tm.wait(lambda s: "No models yet" in s and "Deploy job" in s, 30)
        tm.keys("D")
        screen = tm.wait(lambda s: any(t in s for t in ("Deploy a finished job", "rror", "to deploy yet")), 60,
                         "the deploy dialog")
        assert "Deploy a finished job" in screen, screen
        tm.keys("Enter")
        tm.wait(lambda s: re.search(r"demo\s+v1", s) is not None, 60, "the deployed model")
        tm.keys("Enter")                                  # open it in the generator
        first = seed_on(tm.wait(lambda s: seed_on(s) is not None, 180, "the first sample"))
        tm.keys("r")
        tm.wait(lambda s: seed_on(s) not in (None, first), 30, "a new seed after r")
        tm.keys("z")
        zoomed = tm.wait(lambda s: "16x16 px" in s and "esc close" in s, 15, "the generator's image zoomed")
        assert zoomed.startswith(" zoom  seed ")
        assert max(len(line.strip()) for line in zoomed.splitlines()[1:-1]) >= 40    # 16 px, drawn large
        tm.keys("Escape")
        tm.wait(lambda s: not s.startswith(" zoom") and "Generator" in s, 15, "the zoom closed")
        tm.keys("n")                                      # nearest in the data: the real shards
        tm.wait(lambda s: "training images" in s and "distance" not in s, 120, "the nearest images")
        tm.keys("s")
        tm.wait("Saved", 30)
        assert list((tmp_path / "saved").glob("demo-v1-seed*.json"))
        tm.keys("q")
        tm.wait("EXITED", 15)
    finally:
        tm.kill()
