"""Snapshots of each pane at 80x24 and 120x40 (pytest-textual-snapshot).

The workspace lives at a fixed path (paths are shown on screen) with fixed timestamps,
images and metrics; the generator uses the numpy stand-in predictor and a seeded seed
source. Update after an intended change with `pytest tests/test_tui_snapshots.py
--snapshot-update` and look at the SVGs under tests/__snapshots__/.
"""
from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from core.workspace import Workspace
from tests import tui_workspace
from tui.app import GenmlApp
from tui.widgets.logview import LogView
from tui.widgets.table import FilterTable

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def snap_ws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = Path("/tmp/genml-tui-snapshots") / request.node.name.replace("[", "-").replace("]", "")
    shutil.rmtree(root, ignore_errors=True)
    monkeypatch.setenv("GENML_HOME", str(root / "home"))
    monkeypatch.setenv("GENML_CONFIG", str(root / "config.toml"))
    ws = tui_workspace.build(Workspace.open(root / "home"))
    yield ws
    shutil.rmtree(root, ignore_errors=True)


async def settle(pilot: Any, cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("the app did not settle")
        await pilot.pause(0.02)
    while any(w.is_running for w in pilot.app.workers):
        if time.monotonic() > deadline:
            raise AssertionError("workers still running")
        await pilot.pause(0.02)
    # A toast (e.g. "Pinned seed ...") times out after a few seconds of wall time, so under
    # load it is in some snapshots and not others: the picture is of the panes, not of it.
    pilot.app.clear_notifications()
    await pilot.pause()


async def started(pilot: Any, *keys: str) -> None:
    """Keys pressed before the tabs have mounted are lost: wait for the first pane's data,
    then press `keys`."""
    app = pilot.app
    await settle(pilot, lambda: app.focused is not None and all(p.is_mounted for p in app.panes.values()))
    if keys:
        await pilot.press(*keys)


def rows(app: GenmlApp, pane: str) -> int:
    return app.panes[pane].query_one(FilterTable).table.row_count


sized = pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")


def snapshot(snap_compare: Any, snap_ws: Any, size: tuple[int, int],
             prepare: Callable[[Any, GenmlApp], Awaitable[None]]) -> bool:
    """The app on the fixed workspace at `size`, after `prepare(pilot, app)`, against its SVG."""
    app = GenmlApp(tui_workspace.FixedBackend(snap_ws))

    async def run_before(pilot: Any) -> None:
        await prepare(pilot, app)

    return bool(snap_compare(app, terminal_size=size, run_before=run_before))


@sized
def test_datasets_pane(snap_compare: Any, snap_ws: Any, size: tuple[int, int]) -> None:
    async def ready(pilot: Any, app: GenmlApp) -> None:
        pane = app.panes["datasets"]
        await settle(pilot, lambda: rows(app, "datasets") == 2 and pane.query_one("#sheet").image is not None)

    assert snapshot(snap_compare, snap_ws, size, ready)


@sized
def test_jobs_pane(snap_compare: Any, snap_ws: Any, size: tuple[int, int]) -> None:
    async def ready(pilot: Any, app: GenmlApp) -> None:
        await started(pilot, "2")
        pane = app.panes["jobs"]
        await settle(pilot, lambda: rows(app, "jobs") == 3)
        pane.query_one(FilterTable).select("cats-20251128-181320")
        await settle(pilot, lambda: pane.query_one("#log").border_title.startswith("cats-20251128-181320")
                     and len(pane.query_one(LogView).lines) == 60 and pane.query_one("#sample").image is not None)
        pane.POLL_VISIBLE = 3600     # freeze: no poll between settling and the screenshot

    assert snapshot(snap_compare, snap_ws, size, ready)


@sized
def test_models_pane(snap_compare: Any, snap_ws: Any, size: tuple[int, int]) -> None:
    async def ready(pilot: Any, app: GenmlApp) -> None:
        await started(pilot, "3")
        await settle(pilot, lambda: rows(app, "models") == 1)

    assert snapshot(snap_compare, snap_ws, size, ready)


@sized
def test_generator_pane(snap_compare: Any, snap_ws: Any, size: tuple[int, int]) -> None:
    async def ready(pilot: Any, app: GenmlApp) -> None:
        gen = app.panes["generator"]
        gen.seed_source = random.Random(0)
        await started(pilot, "4")
        await settle(pilot, lambda: len(gen.history) == 1)
        await pilot.press("r", "p")
        await settle(pilot, lambda: len(gen.history) == 2)

    assert snapshot(snap_compare, snap_ws, size, ready)


def test_empty_workspace(snap_compare: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENML_CONFIG", str(tmp_path / "config.toml"))
    app = GenmlApp()

    async def ready(pilot: Any) -> None:
        await settle(pilot, lambda: app.panes["datasets"].query_one("#welcome").display
                     and not app.panes["datasets"].query_one("#body").display)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
