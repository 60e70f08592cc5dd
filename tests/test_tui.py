"""Pilot tests of genml-tui's panes against a workspace the test writes (tests/tui_workspace.py)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from typing import AsyncIterator, Callable
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
from textual.pilot import Pilot

from core.registry import Registry
from core.types import JobState
from tests import tui_workspace
from tui.app import GenmlApp
from tui.images import ImageView
from tui.widgets.generator import GeneratorPane, embedding, slerp
from tui.widgets.logview import LogView
from tui.widgets.pane import Pane
from tui.widgets.table import FilterTable

ROOT = Path(__file__).resolve().parents[1]


def sync(fn):
    """Run an async test with asyncio.run (no async pytest plugin is a dependency)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def ws(workspace):
    return tui_workspace.build(workspace)


def make_app(ws, **kw) -> GenmlApp:
    return GenmlApp(tui_workspace.FixedBackend(ws), **kw)


async def until(pilot, cond, timeout: float = 30.0) -> None:
    """Poll a condition with a deadline (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.02)


async def ready(pilot, app: GenmlApp) -> None:
    """Keys pressed before the panes have mounted are lost: wait for them and the first focus."""
    await until(pilot, lambda: app.focused is not None and all(p.is_mounted for p in app.panes.values()))


async def typed(pilot, app, text: str, enter: bool = True, clear: bool = False) -> None:
    """Type into the input that has (or is about to get) focus: focus moves on the next tick."""
    from textual.widgets import Input
    await until(pilot, lambda: isinstance(app.focused, Input))
    if clear:
        app.focused.value = ""
    await pilot.press(*text, *(["enter"] if enter else []))


def table_keys(app: GenmlApp, pane: str) -> list[str]:
    t = app.panes[pane].query_one(FilterTable).table
    return [str(k.value) for k in t.rows]


@contextlib.asynccontextmanager
async def piloted(app: GenmlApp, size: tuple[int, int] = (80, 24)) -> AsyncIterator[Pilot]:
    """The app under a Pilot, ready for keys (see `ready`)."""
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        yield pilot


async def notified(pilot, app: GenmlApp, *words: str) -> None:
    """Wait for a notification that says all of `words`."""
    await until(pilot, lambda: any(all(w in n.message for w in words) for n in app._notifications))


async def jobs_listed(pilot, app: GenmlApp) -> Pane:
    """Go to pane 2 and wait for the workspace's three jobs."""
    await pilot.press("2")
    await until(pilot, lambda: len(table_keys(app, "jobs")) == 3)
    return app.panes["jobs"]


async def models_listed(pilot, app: GenmlApp) -> None:
    """Go to pane 3 and wait for the workspace's one model."""
    await pilot.press("3")
    await until(pilot, lambda: table_keys(app, "models") == ["cats@v1"])


async def opened_in_generator(pilot, app: GenmlApp) -> GeneratorPane:
    """Open the model from pane 3 (enter) and wait for the generator's first sample."""
    await models_listed(pilot, app)
    await pilot.press("enter")
    gen = app.panes["generator"]
    assert isinstance(gen, GeneratorPane)
    await until(pilot, lambda: len(gen.history) == 1)
    return gen


async def contact_sheet(pilot, app: GenmlApp) -> ImageView:
    """The datasets pane's contact sheet, once it is cut into its 24 thumbnails, laid out and drawn.

    The cells arrive from a worker thread and can land before the first layout of a pane that
    was hidden behind its welcome: until then the sheet's region is empty, and a click aimed
    at it lands at the screen's corner instead.
    """
    sheet = app.panes["datasets"].query_one("#sheet", ImageView)
    await until(pilot, lambda: len(sheet.cells) == 24 and sheet.region.area > 0 and not sheet.query(".placeholder")
                and any(child.region.area > 0 for child in sheet.children))
    return sheet


@sync
async def test_empty_workspace_greets_with_next_step(workspace) -> None:
    app = make_app(workspace)
    async with piloted(app) as pilot:
        welcome = app.panes["datasets"].query_one("#welcome")
        await until(pilot, lambda: welcome.display)
        assert "make the demo dataset" in str(welcome.render())
        await pilot.press("2")
        await until(pilot, lambda: app.panes["jobs"].query_one("#welcome").display)
        # `n` before any dataset: the dialog opens with nothing chosen (Textual 8 raised on
        # the old Select.BLANK here and the app died) and Start names what to do first.
        from textual.widgets import Label

        from tui.screens.dialogs import NewJobDialog
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobDialog))
        dlg = app.screen
        await pilot.press("enter")
        await until(pilot, lambda: "make or add a dataset first" in str(dlg.query_one("#hint-dataset", Label).render()))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, NewJobDialog))
        await pilot.press("3")
        await until(pilot, lambda: app.panes["models"].query_one("#welcome").display)


@sync
async def test_datasets_list_filter_detail_delete(ws) -> None:
    app = make_app(ws)
    async with piloted(app, (100, 30)) as pilot:
        await until(pilot, lambda: table_keys(app, "datasets") == ["cats", "dogs"])
        pane = app.panes["datasets"]
        await until(pilot, lambda: "bad/0.jpg" in str(pane.query_one("#skipped").render()))
        assert pane.query_one("#sheet").image is not None
        await pilot.press("slash")
        await typed(pilot, app, "dog", enter=False)
        await until(pilot, lambda: table_keys(app, "datasets") == ["dogs"])
        await pilot.press("escape")
        await until(pilot, lambda: table_keys(app, "datasets") == ["cats", "dogs"])
        await pilot.press("j")                      # vim down: dogs
        await until(pilot, lambda: "dogs" in str(pane.query_one("#skipped").render()))
        await pilot.press("x")
        await pilot.press("y")
        await until(pilot, lambda: table_keys(app, "datasets") == ["cats"])
    assert [d.name for d in Registry(ws.registry_path).list_datasets()] == ["cats"]


@sync
async def test_jobs_live_list_log_search_and_finish_notification(ws) -> None:
    app = make_app(ws)
    async with piloted(app, (100, 30)) as pilot:
        pane = await jobs_listed(pilot, app)
        view = pane.query_one(LogView)
        await until(pilot, lambda: len(view.lines) == 60)
        # follow the running job's state change: RUNNING -> SUCCEEDED rings and notifies
        running = "cats-20251128-181320"
        pane.query_one(FilterTable).select(running)
        await until(pilot, lambda: pane.query_one("#log").border_title.startswith(running))
        await until(pilot, lambda: len(view.lines) == 60)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.focused, LogView))
        await pilot.press("slash")
        await typed(pilot, app, "step 10")
        await until(pilot, lambda: view.matches == [1, 10])
        first = view.current
        await pilot.press("n")
        assert view.current == (first + 1) % len(view.matches)
        await pilot.press("N")
        assert view.current == first
        assert not view.follow                      # a search jump pauses follow
        await pilot.press("w")
        assert view.wrap
        await pilot.press("G")
        assert view.follow
        await pilot.press("escape")
        reg = Registry(ws.registry_path)
        reg.update_job(running, state=JobState.SUCCEEDED)
        await notified(pilot, app, "finished")


@sync
async def test_jobs_cancel_refuses_finished_job(ws) -> None:
    app = make_app(ws)
    async with piloted(app) as pilot:
        pane = await jobs_listed(pilot, app)
        pane.query_one(FilterTable).select("cats-20251128-171320")
        await pilot.press("c")
        await notified(pilot, app, "already succeeded")


@sync
async def test_models_list_undeploy_delete(ws) -> None:
    app = make_app(ws)
    async with piloted(app) as pilot:
        await models_listed(pilot, app)
        await pilot.press("u")
        await until(pilot, lambda: not Registry(ws.registry_path).get_model("cats", 1).deployed)
        await pilot.press("x", "y")
        await until(pilot, lambda: table_keys(app, "models") == [])


@sync
async def test_generator_resample_history_pin_interpolate_save(ws, tmp_path: Path) -> None:
    app = make_app(ws)
    async with piloted(app) as pilot:
        gen = app.panes["generator"]
        assert isinstance(gen, GeneratorPane)
        gen.save_dir = tmp_path / "out"
        await opened_in_generator(pilot, app)
        first = gen.current
        assert first is not None and first.kind == "random"
        np.testing.assert_array_equal(first.z[0], embedding(first.seeds[0], 100))
        await pilot.press("r")
        await until(pilot, lambda: len(gen.history) == 2)
        assert gen.current.seeds != first.seeds
        await pilot.press("p", "h", "p")            # pin the second, go back, pin the first
        assert gen.current is first and len(gen.pins) == 2
        await pilot.press("l")
        assert gen.index == 1
        await pilot.press("s")
        seed = gen.current.seeds[0]
        await until(pilot, lambda: (tmp_path / "out" / f"cats-v1-seed{seed}.json").exists())
        saved = json.loads((tmp_path / "out" / f"cats-v1-seed{seed}.json").read_text())
        assert saved["key"] == "0"
        np.testing.assert_allclose(saved["embeddings"], embedding(seed, 100), rtol=1e-6)
        assert (tmp_path / "out" / f"cats-v1-seed{seed}.png").exists()
        await pilot.press("g")
        await until(pilot, lambda: gen.current.kind == "grid")
        assert gen.current.z.shape == (16, 100)
        await pilot.press("i")
        await typed(pilot, app, "5", clear=True)
        await until(pilot, lambda: gen.current.kind == "interp")
        assert gen.current.z.shape == (5, 100)
        # open an image: embedding + reconstruction side by side
        img = tmp_path / "in.png"
        img.write_bytes(tui_workspace.png(np.random.default_rng(0), 80, 60))
        await pilot.press("o")
        await typed(pilot, app, str(img))
        await until(pilot, lambda: any("Encoding in.png" in n.message for n in app._notifications))
        await until(pilot, lambda: gen.current.kind == "file")
        assert gen.current.image.size == (64 * 2 + 4, 64)


def test_slerp_ends_and_norm() -> None:
    a, b = embedding(1, 100), embedding(2, 100)
    path = slerp(a, b, 7)
    np.testing.assert_allclose(path[0], a, rtol=1e-5)
    np.testing.assert_allclose(path[-1], b, rtol=1e-5, atol=1e-6)
    norms = np.linalg.norm(path, axis=1)
    assert norms.min() > 0.8 * min(np.linalg.norm(a), np.linalg.norm(b))


@sync
async def test_help_lists_pane_bindings_and_palette_has_actions(ws) -> None:
    from textual.command import CommandPalette

    from tui.screens.help import HelpScreen
    app = make_app(ws)
    async with piloted(app) as pilot:
        await pilot.press("2", "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = str(app.screen.query_one("Static").render())
        for words in ("New job", "Cancel job", "Resume", "TensorBoard", "Follow", "Wrap", "Next match", "Filter"):
            assert words in text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await typed(pilot, app, "demo", enter=False)
        await until(pilot, lambda: "Datasets: Make the demo dataset" in str(
            app.screen.query_one("CommandList").get_option_at_index(0).prompt))


def test_first_paint_does_not_import_tensorflow(tmp_path: Path) -> None:
    code = ("import asyncio, sys\n"
            "from tui.app import GenmlApp\n"
            "async def main():\n"
            "    app = GenmlApp()\n"
            "    async with app.run_test(size=(80, 24)) as pilot:\n"
            "        await pilot.pause()\n"
            "asyncio.run(main())\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    env = dict(os.environ, GENML_HOME=str(tmp_path / "home"), GENML_CONFIG=str(tmp_path / "c.toml"))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


@sync
async def test_add_folder_with_completion_and_progress(workspace, tmp_path: Path) -> None:
    from PIL import Image

    from tui.screens.dialogs import AddDatasetDialog, PathSuggester
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    assert await PathSuggester().get_suggestion(str(tmp_path / "pho")) == str(photos) + os.sep
    app = make_app(workspace)
    async with piloted(app) as pilot:
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AddDatasetDialog))
        await typed(pilot, app, str(photos))
        await until(pilot, lambda: table_keys(app, "datasets") == ["photos"], timeout=120)
        pane = app.panes["datasets"]
        await until(pilot, lambda: "broken.jpg" in str(pane.query_one("#skipped").render()))
        assert not pane.query_one("#progress-row").display


@sync
async def test_image_mode_key_with_half_blocks_only(ws) -> None:
    app = make_app(ws)
    async with piloted(app) as pilot:
        await pilot.press("m")
        await notified(pilot, app, "half-blocks only")
        assert app.image_mode == "halfblock"
        assert app.panes["datasets"].query_one("#sheet").border_subtitle.endswith("halfblock")


def test_image_mode_names() -> None:
    from tui import images
    assert images.normalise("kitty") == "tgp" and images.normalise(None) == "auto"
    assert images.detect("halfblock") == ("halfblock", ["halfblock"])
    with pytest.raises(ValueError):
        images.normalise("braille")
    assert images.fit((64, 64), 40, 10) == (20, 20)
    assert images.fit((64, 64), 200, 100) == (192, 192)


@sync
async def test_backend_notices_become_notifications(workspace) -> None:
    """The Vertex AI backend's billing note goes to stderr by default, which the TUI hides."""
    import threading

    class NoticingBackend(tui_workspace.FixedBackend):
        """Has notes for the person, as the Vertex AI backend does (Backend.set_notice_handler)."""

        def set_notice_handler(self, fn: Callable[[str], None]) -> None:
            self.on_notice = fn

    backend = NoticingBackend(workspace)
    app = GenmlApp(backend)
    async with piloted(app) as pilot:
        # from a worker thread (call_from_thread waits for the app's loop: do not join here)
        threading.Thread(target=backend.on_notice, args=("genml starts billable Google Cloud work",),
                         daemon=True).start()
        backend.on_notice("second note, from the app's own thread")
        await until(pilot, lambda: len(app._notifications) >= 2)
        texts = [n.message for n in app._notifications]
        assert any("billable" in m for m in texts) and any("second note" in m for m in texts)


# ---- issue 11, item 6: one action registry per pane, typed dialogs, one worker-error handler ----------


@sync
async def test_keys_palette_and_help_come_from_one_registry(ws) -> None:
    """Every action a pane declares is bound to its keys, listed on `?` and (with a description) in ctrl+p."""
    from tui.commands import GenmlCommands
    from tui.screens.help import HelpScreen
    app = make_app(ws)
    async with piloted(app, (120, 40)) as pilot:
        for pane_id, pane in app.panes.items():
            bound = {(b.key, b.action) for b in type(pane).BINDINGS}
            assert bound == {(a.keys, a.action) for a in pane.ACTIONS}, pane_id
        entries = [text for text, _, _ in GenmlCommands(app.screen)._all()]
        for pane in app.panes.values():
            for a in pane.ACTIONS:
                if a.description:
                    assert f"{pane.TITLE}: {a.description}" in entries
        assert "Jobs: Log: search" in entries                 # a widget inside a pane: the log view
        await pilot.press("4", "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = str(app.screen.query_one("Static").render())
        for a in app.panes["generator"].ACTIONS:
            if a.help:
                assert a.label in text and a.keys_text in text


@sync
async def test_a_worker_that_raises_is_shown_once_by_the_app(ws) -> None:
    from core.errors import InvalidInput
    app = make_app(ws)
    async with piloted(app) as pilot:
        pane = app.panes["datasets"]

        def boom() -> None:
            raise InvalidInput("The folder is empty.", "Put some JPEGs in it.")
        pane.call_backend(boom)
        await notified(pilot, app, "The folder is empty.", "Put some JPEGs")
        assert sum("The folder is empty." in n.message for n in app._notifications) == 1


def test_more_options_are_checked_against_the_trainer() -> None:
    from tui.screens.dialogs import check_more_options
    assert check_more_options("--eval-every 200 --lr-g 1e-4") == ["--eval-every", "200", "--lr-g", "1e-4"]
    assert check_more_options("") == []
    for bad, words in (("--eval-evry 5", "unrecognized arguments: --eval-evry"),
                       ("--eval-every x", "invalid int value: 'x'"),
                       ("--max-steps 5", "--max-steps has its own field"),
                       ("fast", "'fast' is not an option"), ("--gamma '1", "cannot split")):
        with pytest.raises(ValueError, match=words):
            check_more_options(bad)


@sync
async def test_new_job_dialog_hints_validates_and_submits_the_options(ws, monkeypatch) -> None:
    from textual.widgets import Label, Select

    from tui.screens.dialogs import NewJobDialog
    app = make_app(ws)
    submitted: list = []
    monkeypatch.setattr(type(app.backend._backend), "submit_job",
                        lambda self, ds, opts: (submitted.append((ds, opts)), self.get_job("cats-20251128-171320"))[1])
    async with piloted(app) as pilot:
        await pilot.press("2", "n")
        await until(pilot, lambda: isinstance(app.screen, NewJobDialog))
        dlg = app.screen

        def hint(key: str) -> str:
            return str(dlg.query_one(f"#hint-{key}", Label).render())
        assert "tiny: 12" in hint("steps") and "tiny: 16; cats holds 64" in hint("size")
        dlg.query_one("#preset", Select).value = "quick"
        await until(pilot, lambda: "quick: up to 30 minutes" in hint("steps"))
        assert ("quick: 32; 64 for the last 50% or from 750,000 images, whichever comes first"
                in hint("batch")), hint("batch")
        await typed(pilot, app, "500", enter=False)            # steps (focused first)
        await pilot.press("tab", "7", "tab", "4", "tab", "4", "8")  # seed, batch size, image size
        await pilot.press("tab")
        dlg.query_one("#augment", Select).value = "color,translation"
        await pilot.press("tab")
        await pilot.press(*"--eval-evry 5")
        await until(pilot, lambda: "unrecognized arguments" in hint("more"))
        await pilot.press("enter")                             # refused: two errors
        assert isinstance(app.screen, NewJobDialog) and not submitted
        assert "48 is not a size" in hint("size")
        assert app.focused is dlg.query_one("#size")           # the first bad field gets the focus
        await pilot.press("backspace", "backspace", "1", "2", "8")
        await until(pilot, lambda: "cats holds 64 px; use 64 or less" in hint("size"))  # submit would refuse it
        await pilot.press("backspace", "backspace", "backspace", "3", "2")
        dlg.query_one("#more").value = "--eval-every 5"
        await until(pilot, lambda: "--eval-every 5" in str(dlg.query_one("#command", Label).render()))
        assert "genml train cats --preset quick --max-steps 500 --seed 7 --batch-size 4 --image-size 32 " \
               "--augment color,translation --eval-every 5" in str(dlg.query_one("#command", Label).render())
        await pilot.press("enter")
        await until(pilot, lambda: bool(submitted))
    ds, opts = submitted[0]
    assert ds == "cats"
    assert opts.trainer_args() == ["--preset", "quick", "--max-steps", "500", "--batch-size", "4", "--seed", "7",
                                   "--image-size", "32", "--augment", "color,translation", "--eval-every", "5"]


@sync
async def test_jobs_pane_shows_quality_at_a_glance(ws) -> None:
    """SWD with a trend arrow in the list; best step and improving/stalled in the detail, live."""
    from tui.widgets.curves import Curves
    app = make_app(ws)
    async with piloted(app, (120, 40)) as pilot:
        pane = await jobs_listed(pilot, app)
        table = pane.query_one(FilterTable).table

        def cell(job_id: str) -> str:
            from rich.text import Text
            return Text.from_markup(str(table.get_cell(job_id, "SWD"))).plain
        await until(pilot, lambda: "0.700" in cell("cats-20251128-171320"))   # old job dir: worked out
        assert "↓" in cell("cats-20251128-171320") and cell("dogs-20251128-191320") == "-"
        running = "cats-20251128-181320"
        pane.query_one(FilterTable).select(running)
        quality = pane.query_one(Curves).query_one(".quality")
        await until(pilot, lambda: "SWD 0.800" in str(quality.render()))
        assert "best step 100" in str(quality.render()) and "improving" in str(quality.render())
        # the trainer says it stalled: five more evals without a new best
        path = Path(ws.job_dir(running)) / "metrics.jsonl"
        with path.open("a") as f:
            for i, swd in enumerate([0.82, 0.83, 0.81, 0.84, 0.86]):
                f.write(json.dumps({"kind": "eval", "step": 150 + 50 * i, "swd": swd, "best_step": 100,
                                    "best_swd": 0.8, "evals_since_best": i + 1, "patience": 4}) + "\n")
        await until(pilot, lambda: "stalled" in str(quality.render()))
        assert "SWD 0.860" in str(quality.render()) and "best step 100 (0.800)" in str(quality.render())
        assert "0.860↑" in cell(running)


# ---- issue 14: the zoom, adaptive grids -------------------------------------------------------------


def test_grids_adapt_to_the_space() -> None:
    from tui.images import grid_shape, split_grid, tile
    assert grid_shape(24, (64, 64), 38, 13) == (2, 1)          # 80x24 datasets pane: two large thumbnails
    across, down = grid_shape(24, (64, 64), 200, 60)
    assert across * down >= 24                                  # a wide terminal: all of them
    assert grid_shape(1, (64, 64), 10, 3) == (1, 1)            # one image always shows, however small
    cells = [Image.new("RGB", (16, 16), (i * 10 + 5, 0, 0)) for i in range(6)]
    back = split_grid(tile(cells, 3, gap=0), 3)
    assert [c.getpixel((0, 0)) for c in back] == [c.getpixel((0, 0)) for c in cells]


@sync
async def test_zoom_steps_through_each_grid_and_closes(ws) -> None:
    """z on the contact sheet, the job's samples and the generator's grid: one cell at a time, full screen."""
    from tui.screens.zoom import ZoomScreen
    app = make_app(ws)
    async with piloted(app) as pilot:
        sheet = await contact_sheet(pilot, app)
        assert 1 <= sheet.shown < 24 and f"{sheet.shown} of 24" in sheet.border_subtitle   # fewer, larger
        await pilot.press("z")
        await until(pilot, lambda: isinstance(app.screen, ZoomScreen))
        zoom = app.screen
        view = zoom.query_one("#zoom-image")
        assert view.image is sheet.cells[0]
        await pilot.press("right", "l")
        assert zoom.index == 2 and view.image is sheet.cells[2]
        assert "3 of 24" in str(zoom.query_one("#zoom-title").render())
        await pilot.press("h", "end")
        assert zoom.index == 23
        await pilot.press("g")
        assert view.image.size[0] > sheet.cells[0].size[0] * 4     # the whole grid
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ZoomScreen))
        # the latest samples of a job: a 4x4 grid of 16 px images (config.json's sample_grid)
        await pilot.press("2")
        sample = app.panes["jobs"].query_one("#sample")
        await until(pilot, lambda: len(sample.cells) == 16)
        assert sample.cells[0].size == (16, 16)
        await pilot.press("z")
        await until(pilot, lambda: isinstance(app.screen, ZoomScreen))
        assert "samples at step" in str(app.screen.query_one("#zoom-title").render())
        await pilot.press("z")
        await until(pilot, lambda: not isinstance(app.screen, ZoomScreen))
        # the generator's grid, with each cell's seed
        gen = await opened_in_generator(pilot, app)
        await pilot.press("g")
        await until(pilot, lambda: gen.current.kind == "grid")
        await pilot.press("z")
        await until(pilot, lambda: isinstance(app.screen, ZoomScreen))
        await pilot.press("right")
        assert f"seed {gen.current.seeds[1]}" in str(app.screen.query_one("#zoom-title").render())
        assert app.screen.query_one("#zoom-image").image.size == (64, 64)


@sync
async def test_a_click_on_an_image_zooms(ws) -> None:
    from tui.screens.zoom import ZoomScreen
    app = make_app(ws)
    async with piloted(app) as pilot:
        sheet = await contact_sheet(pilot, app)
        assert await pilot.click(sheet), "the click landed outside the contact sheet"   # its border
        await until(pilot, lambda: isinstance(app.screen, ZoomScreen))


# ---- issue 14: nearest in the data, the walk as an animation ----------------------------------------


@sync
async def test_generator_nearest_in_the_data_flags_a_copy(ws, demo_dataset: Path, tmp_path: Path) -> None:
    """n: the sample, then its closest training images with distances; a copied training image is flagged."""
    import shutil

    from core import nearest
    folder = Path(ws.dataset_dir("cats"))
    shutil.rmtree(folder)
    shutil.copytree(demo_dataset, folder)                     # real shards behind the "cats" dataset
    everything = list(nearest.read_training_images(folder))
    name, train = everything[3]
    copy = np.asarray(nearest.centre_crop(train).resize((64, 64)))

    class Copier(tui_workspace.NumpyPredictor):
        copying = False

        def generate(self, z):
            out = super().generate(z)
            if self.copying:
                out[:] = copy
            return out

    predictor = Copier()
    backend = tui_workspace.FixedBackend(ws)
    backend.predictor = lambda ref: predictor  # type: ignore[method-assign]  # a stand-in
    app = GenmlApp(backend)
    async with piloted(app, (120, 40)) as pilot:
        gen = app.panes["generator"]
        gen.cache_dir = tmp_path / "cache"
        await opened_in_generator(pilot, app)
        await pilot.press("n")
        canvas = gen.query_one("#canvas")
        await until(pilot, lambda: gen._nearest_for is gen.current, timeout=60)
        assert len(canvas.cells) == 7 and canvas.labels[0] == "the sample"
        assert "distance" in canvas.labels[1]
        info = str(gen.query_one("#gen-info").render())
        assert "nearest in the data" in info and f"{len(everything)} training images" in info
        assert list((tmp_path / "cache").glob("nearest-*.npz"))          # cached for the next session
        predictor.copying = True
        await pilot.press("r")                                           # nearest follows each new sample
        await until(pilot, lambda: len(gen.history) == 2 and gen._nearest_for is gen.current)
        top = gen._nearest[0][0]
        assert top.name == name and top.near_copy and top.distance < 0.02
        assert "NEAR-COPY" in canvas.labels[1] and "copy?" in str(gen.query_one("#gen-info").render())
        await notified(pilot, app, "Near-copy of a training image")
        predictor.copying = False
        await pilot.press("g")                                           # a grid: each image beside its nearest
        await until(pilot, lambda: gen.current.kind == "grid" and gen._nearest_for is gen.current)
        assert len(canvas.cells) == 32 and canvas.labels[1].startswith("nearest: ")
        await pilot.press("n")                                           # off again
        await until(pilot, lambda: len(canvas.cells) == 16)


@sync
async def test_generator_saves_the_walk_as_an_animation(ws, tmp_path: Path) -> None:
    from tui.screens.dialogs import AnimationDialog
    app = make_app(ws)
    async with piloted(app) as pilot:
        gen = app.panes["generator"]
        gen.save_dir = tmp_path
        await opened_in_generator(pilot, app)
        await pilot.press("a")                                            # nothing to walk yet
        await notified(pilot, app, "Pin two samples")
        await pilot.press("p", "r")
        await until(pilot, lambda: len(gen.history) == 2)
        await pilot.press("p", "a")
        await until(pilot, lambda: isinstance(app.screen, AnimationDialog))
        dlg = app.screen
        await typed(pilot, app, "1", enter=False, clear=True)             # frames: 1 is refused
        await until(pilot, lambda: "use 2 to 1024" in str(dlg.query_one("#hint-frames").render()))
        dlg.query_one("#path").value = str(tmp_path / "walk.mp4")
        await until(pilot, lambda: ".gif" in str(dlg.query_one("#hint-path").render()))
        await pilot.press("enter")
        assert isinstance(app.screen, AnimationDialog)
        dlg.query_one("#frames").value = "6"
        dlg.query_one("#path").value = str(tmp_path / "walk.gif")
        await pilot.press("enter")
        await until(pilot, lambda: (tmp_path / "walk.gif").exists())
        with Image.open(tmp_path / "walk.gif") as im:
            assert im.n_frames == 6 + 4 and im.size == (256, 256)       # bounce, scale 4 by default
        first = Image.open(tmp_path / "walk.gif").convert("RGB").resize((64, 64), Image.Resampling.NEAREST)
        expected = tui_workspace.NumpyPredictor().generate(gen.pins[-2].z)[0]
        assert np.abs(np.asarray(first).astype(int) - expected.astype(int)).mean() < 8   # GIF's palette
        await notified(pilot, app, "Saved", "walk.gif")


def test_tensorflow_log_lines_are_drawn_dim() -> None:
    """The few C++ lines TensorFlow still writes while training (after the start-up ones, which the
    trainer keeps out) are dimmed in the log view; genml's own lines are not."""
    from tui.widgets.logview import TF_LOG_LINE
    assert TF_LOG_LINE.match("E0000 00:00:1796227022.212863   14226 util.cc:131] oneDNN supports DT_UINT8 only")
    assert TF_LOG_LINE.match("W0000 00:00:1796227022.2 7 cpu_feature_guard.cc:227] This TensorFlow binary")
    for ours in ("[  12.4s] TensorFlow 2.21.0 loaded", "step 2/8 277.1 img/s", "E: out of memory"):
        assert not TF_LOG_LINE.match(ours)


@sync
async def test_zoom_draws_in_kitty_graphics_and_m_switches_modes(ws) -> None:
    """In TGP (kitty) mode the zoom is a textual-image widget; stepping replaces it (one on screen),
    and `m` inside the zoom cycles the mode like everywhere else."""
    from textual_image.widget import TGPImage

    from tui.images import HalfBlocks
    from tui.screens.zoom import ZoomScreen
    app = make_app(ws, image_mode="tgp", image_modes=["halfblock", "tgp"])
    async with piloted(app) as pilot:
        sheet = await contact_sheet(pilot, app)
        # The cells are set before the sheet recomposes into its pixel widget: wait for it.
        await until(pilot, lambda: bool(sheet.query(TGPImage)))
        await pilot.press("z")
        await until(pilot, lambda: isinstance(app.screen, ZoomScreen) and bool(app.screen.query(TGPImage)))
        await pilot.press("l")
        await until(pilot, lambda: app.screen.index == 1)
        await pilot.pause()
        assert len(app.screen.query(TGPImage)) == 1
        await pilot.press("m")
        await until(pilot, lambda: bool(app.screen.query(HalfBlocks)))
        assert app.image_mode == "halfblock" and not app.screen.query(TGPImage)
        assert "(halfblock)" in str(app.screen.query_one("#zoom-keys").render())
        assert app.screen.query_one(HalfBlocks)._image is sheet.cells[1]


def test_swd_is_shown_with_three_figures() -> None:
    from core.quality import summarize
    from tui.widgets.curves import swd_cell
    rows = [{"kind": "eval", "step": 4, "swd": 245.5}, {"kind": "eval", "step": 8, "swd": 242.2}]
    assert swd_cell(summarize(rows)) == "242[green]↓[/]"
    assert swd_cell(summarize([{"kind": "eval", "step": 4, "swd": 31.26}])) == "31.3"
