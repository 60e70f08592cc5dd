"""train.log starts with genml's lines, not TensorFlow's start-up chatter (issue 14, item 2).

TensorFlow writes absl's "log messages before InitializeLog" preamble and "oneDNN custom
operations are on" to fd 2 while it imports, whatever TF_CPP_MIN_LOG_LEVEL says; the
trainer's fd 2 is train.log. Each test runs a fresh process (TensorFlow not imported yet).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHATTER = ("oneDNN", "InitializeLog", "I0000")


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONPATH=os.pathsep.join([*env.pop("extra", "").split(), str(ROOT)]))
    full.pop("TF_ENABLE_ONEDNN_OPTS", None)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=180)


def test_the_trainer_imports_tensorflow_without_its_start_up_lines() -> None:
    proc = run("from trainer.task import import_tensorflow\n"
               "tf = import_tensorflow()\n"
               "import sys; print('loaded', tf.__version__, file=sys.stderr)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded" in proc.stderr
    for chatter in CHATTER:
        assert chatter not in proc.stderr, proc.stderr[-3000:]


def test_a_failing_import_still_shows_what_tensorflow_wrote(tmp_path: Path) -> None:
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'libtensorflow_framework.so.2: cannot open "
                                      "shared object file\\n')\nraise ImportError('broken install')\n")
    proc = run("from trainer.task import import_tensorflow\nimport_tensorflow()", extra=str(tmp_path))
    assert proc.returncode != 0
    assert "cannot open shared object file" in proc.stderr
    assert "broken install" in proc.stderr


def test_writing_a_sample_grid_adds_no_tensorflow_lines() -> None:
    """The sample grid is the first uint8 work a run does; laid out as uint8, oneDNN wrote
    'E0000 ... oneDNN supports DT_UINT8 only on platforms with AVX-512' into train.log."""
    proc = run("import sys\n"
               "from trainer.task import import_tensorflow\n"
               "tf = import_tensorflow()\n"
               "from trainer.jobdir import image_grid, png\n"
               "grid = image_grid(tf.random.uniform([5, 8, 8, 3], -1, 1), 4)\n"
               "assert grid.shape == (16, 32, 3) and grid.dtype == tf.uint8, grid\n"
               "assert png(grid).startswith(b'\\x89PNG')\n"
               "print('grid written', file=sys.stderr)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == "grid written", proc.stderr[-3000:]
