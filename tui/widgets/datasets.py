"""Pane 1: datasets. List, contact sheet, skipped files; add a folder, make the demo, delete."""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, ProgressBar, Static

from core.backend import Progress
from core.types import Dataset
from tui.actions import Action
from tui.screens.dialogs import AddDatasetRequest
from tui.images import ImageView, split_grid, to_pil
from tui.widgets.pane import ListPane
from tui.widgets.table import FilterTable

WELCOME = """[b]Welcome to genml.[/b]

There are no datasets yet. A dataset is a folder of your own images, checked, cropped and packed for training.

  [b]d[/b]  make the demo dataset (generated pictures to try genml on)
  [b]a[/b]  add a folder of your images

Then press [b]2[/b] for jobs and [b]n[/b] to train a model on it.
"""


def demo_count() -> int:
    """How many pictures `d` makes: GENML_DEMO_COUNT, else the backend's default of 2,000."""
    try:
        return max(10, int(os.environ.get("GENML_DEMO_COUNT", "2000")))
    except ValueError:
        return 2000


def sheet_cells(png: bytes) -> list[Any]:
    """The thumbnails of a contact sheet (core/datasets/contact_sheet.py's layout)."""
    from core.datasets import contact_sheet as cs
    image = to_pil(png)
    columns = max(1, (image.width - cs.GAP) // (cs.THUMB + cs.GAP))
    if columns * (cs.THUMB + cs.GAP) + cs.GAP != image.width:    # not that layout: one image
        return [image]
    return split_grid(image, columns, gap=cs.GAP, margin=cs.GAP)


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


class DatasetsPane(ListPane[Dataset]):
    TITLE = "Datasets"
    ACTIONS = (
        Action("add", "a", "Add folder", "Add a folder of images as a dataset"),
        Action("demo", "d", "Make demo", "Make the demo dataset"),
        Action("delete", "x,delete", "Delete", "Delete the selected dataset"),
        Action("zoom", "z", "Zoom", "Zoom into the contact sheet, one image at a time"),
    )

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._detail_for: str | None = None
        self._cancel: threading.Event | None = None

    def compose(self) -> ComposeResult:
        yield Static(WELCOME, id="welcome", classes="welcome")
        with Horizontal(id="body", classes="body"):
            yield FilterTable(["name", "images", "skipped", "crop", "created"], id="datasets")
            with Vertical(id="detail", classes="detail"):
                yield ImageView("select a dataset to see its contact sheet", id="sheet")
                with VerticalScroll(id="skipped-box"):
                    yield Static("", id="skipped")
        with Horizontal(id="progress-row", classes="progress-row"):
            yield Label("", id="progress-label")
            yield ProgressBar(id="progress", show_eta=True)

    # ---- polling ----------------------------------------------------------------------
    def fetch(self) -> Any:
        return self.backend.list_datasets()

    def apply(self, datasets: list[Any]) -> None:
        self.records = {d.name: d for d in datasets}
        empty = not datasets
        self.query_one("#welcome").display = empty
        self.query_one("#body").display = not empty
        table = self.query_one(FilterTable)
        table.set_rows([(d.name, (d.name, d.train_count + d.validation_count, d.skipped_count, d.crop,
                                  fmt_time(d.created))) for d in datasets])
        key = table.current_key
        if key != self._detail_for:
            self._load_detail(key)

    @on(FilterTable.Selected)
    def _selected(self, event: FilterTable.Selected) -> None:
        if event.key != self._detail_for:
            self._load_detail(event.key)

    def _load_detail(self, name: str | None) -> None:
        self._detail_for = name
        if name is None:
            self.query_one("#sheet", ImageView).set_image(None, "no dataset selected")
            self.query_one("#skipped", Static).update("")
            return
        backend = self.backend

        def read() -> tuple[str, bytes | None, dict[str, Any]]:
            try:
                manifest = backend.dataset_manifest(name)
            except Exception:  # noqa: BLE001  - an incomplete dataset still shows its row
                manifest = {}
            return name, backend.contact_sheet(name), manifest

        self.call_backend(read, self._show_detail)

    def _show_detail(self, result: tuple[str, bytes | None, dict[str, Any]]) -> None:
        name, sheet, manifest = result
        if name != self._detail_for:
            return
        view = self.query_one("#sheet", ImageView)
        if sheet:
            view.set_cells(sheet_cells(sheet), title=f"{name}: contact sheet", placeholder="")
        else:
            view.set_image(None, "no contact sheet")
        skipped = manifest.get("skipped", [])
        dups = manifest.get("duplicates", [])
        counts = manifest.get("counts", {})
        lines = [f"[b]{name}[/b]  train {counts.get('train', '?')}  validation {counts.get('validation', '?')}"
                 f"  skipped {len(skipped)}  duplicates {len(dups)}"]
        if manifest.get("source"):
            lines.append(f"[dim]from {manifest['source']}[/dim]")
        if skipped:
            lines.append("[b]skipped files[/b]")
            lines += [f"  {s.get('path')}: [dim]{s.get('reason')}[/dim]" for s in skipped[:500]]
        if dups:
            lines.append("[b]duplicates[/b]")
            lines += [f"  {d.get('path')} = {d.get('duplicate_of')}" for d in dups[:200]]
        self.query_one("#skipped", Static).update("\n".join(lines))

    # ---- actions ------------------------------------------------------------------------
    def action_zoom(self) -> None:
        self.genml.zoom(self.query_one("#sheet", ImageView))

    def action_add(self) -> None:
        from tui.screens.dialogs import AddDatasetDialog
        self.app.push_screen(AddDatasetDialog(), self._add_chosen)

    def _add_chosen(self, answer: AddDatasetRequest | None) -> None:
        if answer is None:
            return
        self._run_with_progress(f"adding {answer.name}", lambda progress, cancel: self.backend.add_dataset(
            answer.path, answer.name, crop=answer.crop, progress=progress, cancel=cancel))

    def action_demo(self) -> None:
        name = "demo"
        n = 2
        while name in self.records:
            name, n = f"demo{n}", n + 1
        count = demo_count()
        self._run_with_progress(f"making {name}", lambda progress, cancel: self.backend.make_demo_dataset(
            name, count, progress=progress, cancel=cancel))

    def _run_with_progress(self, label: str, job: Any) -> None:
        if self._cancel is not None:
            self.app.notify("A dataset is already being made; wait for it to finish.", severity="warning")
            return
        self._cancel = threading.Event()
        row = self.query_one("#progress-row")
        row.display = True
        self.query_one("#progress-label", Label).update(label)
        bar = self.query_one(ProgressBar)
        bar.update(total=None, progress=0)
        cancel = self._cancel

        def progress(p: Progress) -> None:
            self.app.call_from_thread(self._progress, p)

        def run() -> Any:
            try:
                return job(progress, cancel)
            finally:
                self.app.call_from_thread(self._progress_done)

        self.call_backend(run, self._made)

    def _progress(self, p: Progress) -> None:
        self.query_one("#progress-label", Label).update(f"{p.stage} {p.message}".strip())
        self.query_one(ProgressBar).update(total=p.total or None, progress=p.done)

    def _progress_done(self) -> None:
        self._cancel = None
        self.query_one("#progress-row").display = False

    def _made(self, ds: Any) -> None:
        self.app.notify(f"Dataset {ds.name} is ready: {ds.train_count + ds.validation_count} images. "
                        "Press 2, then n, to train on it.", title="Dataset ready")
        self._detail_for = None
        self.poll_now()
        self.call_after_refresh(lambda: self.query_one(FilterTable).select(ds.name))

    def action_delete(self) -> None:
        name = self.query_one(FilterTable).current_key
        if not name:
            return
        from tui.screens.dialogs import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_backend(lambda: self.backend.remove_dataset(name),
                                  lambda _: self.app.notify(f"Deleted dataset {name}."))
        self.app.push_screen(ConfirmDialog(f"Delete dataset [b]{name}[/b] and its files?"), answered)
