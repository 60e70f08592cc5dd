"""Small modal dialogs: confirm, add a folder, new job, deploy, open an image, ask a number.

Each returns its answer through `dismiss`, so callers use `push_screen(dialog, callback)`
and the UI thread never waits.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Select

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 70; max-width: 95%; height: auto; border: round $accent;
    background: $panel; padding: 0 1; }}
{name} Label.error {{ color: $error; }}
{name} Horizontal.buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} Button {{ margin-left: 1; }}
"""


class PathSuggester(Suggester):
    """Completes the last component of a path from the disk (accept with → or End)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        head, tail = os.path.split(expanded)
        try:
            names = sorted(n for n in os.listdir(head or ".") if n.startswith(tail) and not
                           (n.startswith(".") and not tail.startswith(".")))
        except OSError:
            return None
        if not names or (names[0] == tail and not os.path.isdir(os.path.join(head, tail))):
            return None
        full = os.path.join(head, names[0])
        if os.path.isdir(full):
            full += os.sep
        return value + full[len(expanded):] if full.startswith(expanded) else None


class Dialog(ModalScreen[Any]):
    AUTO_FOCUS = "*"           # the app's is None (its panes choose); a dialog focuses its first field
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def buttons(self, ok: str = "OK") -> ComposeResult:
        with Horizontal(classes="buttons"):
            yield Button("Cancel", id="cancel")
            yield Button(ok, id="ok", variant="primary")


class ConfirmDialog(Dialog):
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")
    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n", "cancel", "No")]

    def __init__(self, question: str, ok: str = "Delete") -> None:
        super().__init__()
        self._question, self._ok = question, ok

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._question)
            yield Label("[dim]y: yes   n / escape: no[/dim]")
            yield from self.buttons(self._ok)

    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#ok")
    def _ok_pressed(self) -> None:
        self.dismiss(True)


class AddDatasetDialog(Dialog):
    """Folder (with completion), name, crop: returns a dict or None."""

    DEFAULT_CSS = DIALOG_CSS.format(name="AddDatasetDialog")

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = "Add a folder of images"
            yield Label("Folder (→ accepts the completion)")
            yield Input(placeholder="~/Pictures/cats", id="path", suggester=PathSuggester())
            yield Label("Dataset name (default: the folder's name)")
            yield Input(placeholder="cats", id="name")
            yield Label("Crop while training")
            yield Select([("random: a random square each step (more variety)", "random"),
                          ("center: always the centre square", "center")],
                         value="random", allow_blank=False, id="crop")
            yield Label("", classes="error", id="error")
            yield from self.buttons("Add")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self, event: Any) -> None:
        event.stop()
        raw = self.query_one("#path", Input).value.strip()
        path = Path(os.path.expanduser(raw)) if raw else None
        if path is None or not path.is_dir():
            self.query_one("#error", Label).update(f"Not a folder: {raw!r}" if raw else "Type a folder path.")
            self.query_one("#path", Input).focus()
            return
        name = self.query_one("#name", Input).value.strip() or path.resolve().name
        self.dismiss({"path": path, "name": name, "crop": self.query_one("#crop", Select).value})


PRESETS = [("tiny: seconds, for trying things", "tiny"), ("quick: minutes", "quick"),
           ("seed: the full 2017 recipe", "seed")]


class NewJobDialog(Dialog):
    """Dataset and preset: returns {"dataset", "preset"} or None."""

    DEFAULT_CSS = DIALOG_CSS.format(name="NewJobDialog")

    def __init__(self, datasets: list[str], preset: str = "tiny", dataset: str | None = None) -> None:
        super().__init__()
        self._datasets, self._preset, self._dataset = datasets, preset, dataset

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = "New training job"
            yield Label("Dataset")
            first = self._dataset if self._dataset in self._datasets else (self._datasets or [None])[0]
            yield Select([(d, d) for d in self._datasets], value=first if first else Select.BLANK, id="dataset")
            yield Label("Preset")
            yield Select(PRESETS, value=self._preset, allow_blank=False, id="preset")
            yield Label("", classes="error", id="error")
            yield from self.buttons("Start")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        ds = self.query_one("#dataset", Select).value
        if ds is Select.BLANK or not ds:
            self.query_one("#error", Label).update("Make or add a dataset first (pane 1).")
            return
        self.dismiss({"dataset": ds, "preset": self.query_one("#preset", Select).value})


class ChoiceDialog(Dialog):
    """Pick one of a list (finished job to deploy, model to open)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ChoiceDialog")

    def __init__(self, title: str, options: list[tuple[str, str]], ok: str = "OK",
                 with_name: str | None = None) -> None:
        super().__init__()
        self._title, self._options, self._ok, self._with_name = title, options, ok, with_name

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = self._title
            yield Select(self._options, value=self._options[0][1] if self._options else Select.BLANK, id="choice")
            if self._with_name is not None:
                yield Label("Model name (default: the dataset's name)")
                yield Input(placeholder=self._with_name, id="name")
            yield from self.buttons(self._ok)

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok_pressed(self, event: Any) -> None:
        event.stop()
        value = self.query_one("#choice", Select).value
        if value is Select.BLANK:
            self.dismiss(None)
            return
        if self._with_name is not None:
            self.dismiss({"choice": value, "name": self.query_one("#name", Input).value.strip() or None})
        else:
            self.dismiss(value)


class PromptDialog(Dialog):
    """One line of text (a file path or a number)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="PromptDialog")

    def __init__(self, title: str, placeholder: str = "", value: str = "", paths: bool = False) -> None:
        super().__init__()
        self._title, self._placeholder, self._value, self._paths = title, placeholder, value, paths

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = self._title
            yield Input(value=self._value, placeholder=self._placeholder,
                        suggester=PathSuggester() if self._paths else None)
            yield from self.buttons()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self, event: Any) -> None:
        event.stop()
        self.dismiss(self.query_one(Input).value.strip() or None)
