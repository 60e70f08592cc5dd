"""What the serving benchmarks share (benchmarks/predict.py, benchmarks/serve_load.py): an
untrained model to serve, `genml serve`'s code in a child process, percentiles, and a
group of client threads.

Imported by those scripts as `serving` (a script's own folder is first on sys.path).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]

# the real server code (core/serve.py), run in a child process; it prints its port once it listens
SERVER = """
import sys
from core.predict import load_predictor
from core.serve import make_server, serve_until_signal
p = load_predictor(sys.argv[1])
s = make_server(p, "bench", "127.0.0.1", 0, version=1)
serve_until_signal(s, lambda s: print(s.server_address[1], flush=True))
"""


def export_untrained(out: Path, preset: str) -> Path:
    """A model exported UNTRAINED at `preset`'s sizes into out/model: speed does not depend on the weights."""
    from trainer.export import export
    from trainer.model import build_decoder, build_encoder
    from trainer.presets import resolve
    cfg = resolve(preset, {})
    model_dir = out / "model"
    export(str(model_dir), build_encoder(cfg), build_decoder(cfg),
           {"image_size": cfg.image_size, "embedding_size": cfg.embedding_size, "preset": preset, "step": 0,
            "note": "untrained, for benchmarks"})
    return model_dir


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no samples."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


@contextmanager
def served(model_dir: Path) -> Iterator[int]:
    """`model_dir` served as "bench" on 127.0.0.1 by a child process; yields its port."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(model_dir)], stdout=subprocess.PIPE, text=True,
                           env=env, cwd=ROOT)
    try:
        assert srv.stdout is not None                  # stdout=PIPE
        yield int(srv.stdout.readline())
    finally:
        srv.terminate()
        srv.wait(timeout=30)


def run_threads(target: Callable[[], None], n: int, timeout: float | None = None) -> None:
    """`target` in n threads at once; returns when all have ended (or `timeout` s each has passed)."""
    threads = [threading.Thread(target=target) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout)
