"""genml-tui speed: first paint, resample latency, idle CPU.

    .venv/bin/python benchmarks/tui.py [--runs 5] [--idle-seconds 10]

Figures (targets from issue 5, the zoom's from issue 14, on the 2-core dev machine):
  launch -> first paint       <= 1.0 s   the real `genml-tui` in tmux (80x24) until its tab bar shows;
                                         baseline: a bare Textual app with one Static in the same harness
  resample key -> painted     <= 100 ms  headless (App.run_test), model loaded, 64x64 untrained seed-preset
                                         model; from pressing `r` until the new image is on the canvas and a
                                         refresh has run; baseline: the bare Predictor.generate call
  zoom key -> painted         <= 100 ms  headless (App.run_test, 80x24), Jobs pane: `z` on the latest 4x4 sample
                                         grid until the full-screen zoom has drawn its first cell, and `l` until
                                         the next cell is drawn; baseline: `?` opening the help page (a text modal)
  nearest-in-the-data query   <= 100 ms  core/nearest.py on a 2,000-picture demo dataset at 64 px: one query of 6
                                         neighbours in pixel space; also printed: building the index (once per
                                         dataset) and loading it from its cache
  idle CPU, running job shown <  2 %     of one core, the real `genml-tui` in tmux on the Jobs pane with a
                                         running job whose log grows by a line every 0.5 s; baseline: the bare
                                         Textual app idle in the same harness
"""
from __future__ import annotations

import argparse
import faulthandler
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TUI = Path(sys.executable).parent / "genml-tui"

BARE_APP = """
from textual.app import App
from textual.widgets import Static
class Bare(App):
    def compose(self):
        yield Static(" 1 Datasets  2 Jobs  3 Models  4 Generator")
Bare().run()
"""


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout


def launch(session: str, command: str, env: dict[str, str]) -> None:
    tmux("kill-session", "-t", session)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", "env",
                    *[f"{k}={v}" for k, v in env.items()], "sh", "-c", command], check=True, cwd=ROOT)


def time_to_text(session: str, command: str, env: dict[str, str], text: str, timeout: float = 30) -> float:
    """Seconds from starting the command in tmux until `text` is on the screen."""
    t0 = time.perf_counter()
    launch(session, command, env)
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if text in tmux("capture-pane", "-p", "-t", session):
            dt = time.perf_counter() - t0
            tmux("kill-session", "-t", session)
            return dt
        time.sleep(0.005)
    tmux("kill-session", "-t", session)
    raise RuntimeError(f"{text!r} never appeared")


def pane_pid(session: str) -> int:
    """The pid of the app: the shell's child in the tmux pane (or the pane process itself)."""
    shell = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").strip())
    kids = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
    return int(kids[0]) if kids else shell


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(session: str, command: str, env: dict[str, str], ready_text: str, seconds: float,
             keys: list[str] = (), during=None) -> float:
    """Percent of one core used over `seconds` once `ready_text` shows (after pressing `keys`)."""
    launch(session, command, env)
    deadline = time.time() + 30
    while ready_text not in tmux("capture-pane", "-p", "-t", session):
        if time.time() > deadline:
            raise RuntimeError(f"{ready_text!r} never appeared")
        time.sleep(0.05)
    for k in keys:
        tmux("send-keys", "-t", session, k)
    time.sleep(2)                        # let the pane settle: this measures the steady state
    pid = pane_pid(session)
    c0, t0 = cpu_seconds(pid), time.time()
    end = t0 + seconds
    while time.time() < end:
        if during:
            during()
        time.sleep(0.5)
    pct = 100 * (cpu_seconds(pid) - c0) / (time.time() - t0)
    tmux("kill-session", "-t", session)
    return pct


def workspace_env(root: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    return {"GENML_HOME": str(root / "home"), "GENML_CONFIG": str(root / "config.toml"),
            "TERM": "xterm-256color", "COLORTERM": "truecolor", "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT)}


def bench_first_paint(root: Path, runs: int) -> tuple[float, float]:
    env = workspace_env(root)
    bare = root / "bare.py"
    bare.write_text(BARE_APP)
    app = [time_to_text("genml-bench", str(TUI), env, "4 Generator") for _ in range(runs)]
    base = [time_to_text("genml-bench", f"{sys.executable} {bare}", env, "4 Generator") for _ in range(runs)]
    return statistics.median(app), statistics.median(base)


def bench_idle(root: Path, seconds: float) -> tuple[float, float]:
    from core.workspace import Workspace
    from tests import tui_workspace
    ws = tui_workspace.build(Workspace.open(root / "home"))
    running = "cats-20251128-181320"
    log = ws.job_dir(running) / "train.log"
    counter = iter(range(10**9))

    def grow() -> None:
        with open(log, "a") as f:
            f.write(f"step {next(counter)}: still training\n")

    env = workspace_env(root)
    app = idle_cpu("genml-bench", str(TUI), env, "4 Generator", seconds, keys=["2", "j"], during=grow)
    bare = root / "bare.py"
    bare.write_text(BARE_APP)
    base = idle_cpu("genml-bench", f"{sys.executable} {bare}", env, "4 Generator", seconds)
    return app, base


def bench_resample(root: Path, presses: int) -> tuple[float, float, float]:
    import serving     # benchmarks/serving.py: this script's folder is first on sys.path
    model_dir = serving.export_untrained(root / "export", "seed")

    from core.local.backend import LocalBackend
    from core.registry import Registry
    from core.workspace import Workspace
    from tui.app import GenmlApp
    from tui.images import HalfBlocks
    from tui.widgets.generator import GeneratorPane, embedding

    ws = Workspace.open(root / "home2")
    Registry(ws.registry_path).add_model_version("bench", "none", str(model_dir))
    backend = LocalBackend(ws)
    predictor = backend.predictor("bench@v1")
    import numpy as np
    z = embedding(1, predictor.embedding_size)[None]
    for _ in range(5):
        predictor.generate(z)
    raw = []
    for i in range(presses):
        t = time.perf_counter()
        predictor.generate(embedding(i, predictor.embedding_size)[None])
        raw.append(time.perf_counter() - t)

    latencies: list[float] = []

    async def run() -> None:
        from textual import events
        app = GenmlApp(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            gen = app.panes["generator"]
            assert isinstance(gen, GeneratorPane)
            while app.focused is None or not gen.is_mounted:
                await pilot.pause(0.01)
            await pilot.press("4")
            deadline = time.monotonic() + 120
            while not gen.history:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no first sample; model {gen.model_ref}, loading {gen._loading}")
                await pilot.pause(0.01)
            # "painted": the first screen update after the new image reached the canvas
            painted = asyncio.Event()
            state = {"want": None}
            original = app._display

            def display(screen, renderable):
                original(screen, renderable)
                want = state["want"]
                if want is not None and gen.current is not None and gen.current is not want:
                    canvas = gen.query(HalfBlocks)
                    if canvas and canvas.first()._image is gen.current.image:
                        painted.set()

            app._display = display  # type: ignore[method-assign]  # timing hook on the paint call
            for i in range(5 + presses):
                await pilot.pause(0.05)
                painted.clear()
                state["want"] = gen.current
                t = time.perf_counter()
                app.post_message(events.Key("r", "r"))     # what the terminal driver posts for a key
                try:
                    await asyncio.wait_for(painted.wait(), 30)
                except TimeoutError:
                    raise RuntimeError(f"not painted: history {len(gen.history)}, focus {app.focused}, "
                                       f"workers {[(w.name, w.state) for w in app.workers]}, "
                                       f"notes {[n.message for n in app._notifications]}") from None
                if i >= 5:                                 # the first few warm up the worker path
                    latencies.append(time.perf_counter() - t)
                state["want"] = None
        _ = np

    asyncio.run(run())
    return statistics.median(latencies), max(sorted(latencies)[: int(len(latencies) * 0.95)] or latencies), \
        statistics.median(raw)


def bench_zoom(root: Path, presses: int, size: tuple[int, int] = (80, 24)) -> dict[str, float]:
    """Key -> painted for the zoom: `z` on the jobs pane's sample grid (a 4x4 grid of 16 px images
    cut into cells, a full-screen modal mounted, the first cell drawn), `l` inside it (the next
    cell), against `?` opening the help page (a modal of text) in the same harness."""
    from core.workspace import Workspace
    from tests import tui_workspace
    from textual import events
    from tui.app import GenmlApp
    from tui.images import HalfBlocks
    from tui.screens.help import HelpScreen
    from tui.screens.zoom import ZoomScreen

    ws = tui_workspace.build(Workspace.open(root / "home"))
    out: dict[str, list[float]] = {"open": [], "step": [], "help": []}

    async def run() -> None:
        app = GenmlApp(tui_workspace.FixedBackend(ws))
        async with app.run_test(size=size) as pilot:
            while app.focused is None or not all(p.is_mounted for p in app.panes.values()):
                await pilot.pause(0.01)
            await pilot.press("2")
            jobs = app.panes["jobs"]
            while len(jobs.query_one("#sample").cells) != 16:
                await pilot.pause(0.01)
            jobs.POLL_VISIBLE = 3600                     # no poll in the middle of a measurement
            painted = asyncio.Event()
            want: dict[str, object] = {}
            original = app._display

            def display(screen, renderable):
                original(screen, renderable)
                if "image" in want and isinstance(app.screen, ZoomScreen):
                    blocks = app.screen.query(HalfBlocks)
                    if blocks and blocks.first()._image is want["image"] and blocks.first()._cache:
                        painted.set()
                if want.get("help") and isinstance(app.screen, HelpScreen):
                    painted.set()

            app._display = display  # type: ignore[method-assign]  # timing hook on the paint call

            async def timed(key: str, **target: object) -> float:
                await pilot.pause(0.05)
                painted.clear()
                want.clear()
                want.update(target)
                t = time.perf_counter()
                app.post_message(events.Key(key, key if len(key) == 1 else None))
                await asyncio.wait_for(painted.wait(), 30)
                return time.perf_counter() - t

            cells = jobs.query_one("#sample").cells
            for i in range(3 + presses):
                opened = await timed("z", image=cells[0])
                stepped = await timed("l", image=cells[1])
                await pilot.press("escape")
                while isinstance(app.screen, ZoomScreen):
                    await pilot.pause(0.01)
                helped = await timed("question_mark", help=True)
                await pilot.press("escape")
                while isinstance(app.screen, HelpScreen):
                    await pilot.pause(0.01)
                if i >= 3:                                  # the first few warm up
                    out["open"].append(opened)
                    out["step"].append(stepped)
                    out["help"].append(helped)

    asyncio.run(run())
    return {k: statistics.median(v) for k, v in out.items()}


def bench_nearest(root: Path, count: int = 2000, queries: int = 50) -> dict[str, float]:
    """Nearest in the data on a demo dataset of `count` pictures at 64 px: building the pixel index
    (once per dataset, then cached), loading it from the cache, and one query of 6 neighbours."""
    import numpy as np

    from core import nearest
    from core.datasets.catalog import build_folder
    ds = build_folder(root / "demo", count=count, image_size=64, name="demo", workers=2)
    t = time.perf_counter()
    index = nearest.load_or_build(root / "cache", ds)
    built = time.perf_counter() - t
    t = time.perf_counter()
    nearest.load_or_build(root / "cache", ds)
    loaded = time.perf_counter() - t
    sample = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    times = []
    for _ in range(queries):
        t = time.perf_counter()
        nearest.query_images(index, [sample], k=6)
        times.append(time.perf_counter() - t)
    return {"images": len(index), "build": built, "load": loaded, "query": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["paint", "resample", "idle", "zoom", "nearest"])
    args = parser.parse_args()
    if os.environ.get("GENML_BENCH_HANG_DUMP"):
        faulthandler.dump_traceback_later(float(os.environ["GENML_BENCH_HANG_DUMP"]), exit=True)
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is needed for the first-paint and idle figures")
    root = Path(tempfile.mkdtemp(prefix="genml-bench-tui-"))
    results = {}
    try:
        if "paint" not in args.skip:
            app, base = bench_first_paint(root / "paint", args.runs)
            results["first_paint_s"] = app
            print(f"launch -> first paint (median of {args.runs}): {app:.3f} s   target <= 1.0 s   "
                  f"baseline bare Textual app {base:.3f} s   ratio {app / base:.2f}x")
        if "resample" not in args.skip:
            p50, p95, raw = bench_resample(root / "resample", args.presses)
            results["resample_p50_ms"] = p50 * 1000
            print(f"resample key -> painted, 64x64 (p50 / p95 of {args.presses}): {p50 * 1000:.1f} / "
                  f"{p95 * 1000:.1f} ms   target <= 100 ms   baseline Predictor.generate {raw * 1000:.1f} ms   "
                  f"ratio {p50 / raw:.2f}x")
        if "zoom" not in args.skip:
            z = bench_zoom(root / "zoom", min(args.presses, 20))
            results["zoom_open_ms"], results["zoom_step_ms"] = z["open"] * 1000, z["step"] * 1000
            n = min(args.presses, 20)
            print(f"zoom key -> painted, 80x24 (median of {n}): open (z) {z['open'] * 1000:.1f} ms, "
                  f"next cell (l) {z['step'] * 1000:.1f} ms   target <= 100 ms (as resample)   baseline `?` help "
                  f"page {z['help'] * 1000:.1f} ms   ratio {z['open'] / z['help']:.2f}x")
        if "nearest" not in args.skip:
            nn = bench_nearest(root / "nearest")
            results["nearest_query_ms"] = nn["query"] * 1000
            print(f"nearest in the data, {nn['images']:.0f} training images: query p50 {nn['query'] * 1000:.2f} ms   "
                  f"target <= 100 ms (interactive)   index built once {nn['build']:.2f} s, "
                  f"then loaded from the cache in {nn['load'] * 1000:.0f} ms")
        if "idle" not in args.skip:
            app, base = bench_idle(root / "idle", args.idle_seconds)
            results["idle_cpu_pct"] = app
            print(f"idle CPU, Jobs pane with a running job ({args.idle_seconds:.0f} s): {app:.2f} % of a core   "
                  f"target < 2 %   baseline bare Textual app {base:.2f} %   ratio {app / max(base, 0.01):.2f}x")
        print(json.dumps(results))
    finally:
        tmux("kill-session", "-t", "genml-bench")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
