"""Small modal dialogs: confirm, add a folder, new job, deploy, open an image, ask a number,
save an animation.

Each is a `ModalScreen[T]` whose answer is a typed value (a dataclass, a bool, a str) or
None when cancelled; callers use `push_screen(dialog, callback)` and the UI thread never
waits. Fields are checked before the dialog closes: a bad value shows its error under
the field and the dialog stays open.
"""
from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

from core.backend import TrainOptions

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Select

from trainer import contract

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 70; max-width: 95%; height: auto; border: round $accent;
    background: $panel; padding: 0 1; }}
{name} Label.error {{ color: $error; }}
{name} Horizontal.buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} Button {{ margin-left: 1; }}
"""

# a dialog of fields (FormDialog): a name column, the field, a hint line under it
FORM_CSS = DIALOG_CSS + """
{name} Horizontal.field {{ height: 1; }}
{name} Horizontal.field > Label.name {{ width: 14; }}
{name} Horizontal.field > Input, {name} Horizontal.field > Select {{ width: 1fr; }}
{name} Label.hint {{ color: $text-muted; padding-left: 14; height: 1; }}
{name} Label.hint.-error {{ color: $error; }}
{name} Horizontal.buttons {{ margin-top: 0; height: 1; }}
"""

T = TypeVar("T")


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



class Dialog(ModalScreen[T | None], Generic[T]):
    AUTO_FOCUS = "*"           # the app's is None (its panes choose); a dialog focuses its first field
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def buttons(self, ok: str = "OK", compact: bool = False) -> ComposeResult:
        with Horizontal(classes="buttons"):
            yield Button("Cancel", id="cancel", compact=compact)
            yield Button(ok, id="ok", variant="primary", compact=compact)


class FormDialog(Dialog[T]):
    """A dialog of fields, each with a hint line under it that turns into the field's error.

    Enter in any field (or OK) checks them all: a good request closes the dialog, else
    the first bad field gets the focus and the dialog stays open.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ()       # the checked fields' ids, in the order shown
    HINTS: ClassVar[dict[str, str]] = {}

    def collect(self) -> tuple[T | None, dict[str, str]]:
        """The request, or the errors by field id (both from the dialog's current values)."""
        raise NotImplementedError

    def hints(self) -> dict[str, str]:
        """Each field's hint by id, shown while the field has no error."""
        return self.HINTS

    def field(self, label: str, widget: Any, key: str, hint: str = "") -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(label, classes="name")
            yield widget
        yield Label(hint, classes="hint", id=f"hint-{key}")

    def show_hints(self, errors: dict[str, str] | None = None) -> None:
        errors = errors or {}
        for key, hint in self.hints().items():
            label = self.query_one(f"#hint-{key}", Label)
            label.update(errors.get(key, hint))
            label.set_class(key in errors, "-error")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self, event: Any) -> None:
        event.stop()
        request, errors = self.collect()
        self.show_hints(errors)
        if request is None:
            first = next(k for k in self.FIELDS if k in errors)
            self.query_one(f"#{first}").focus()
            return
        self.dismiss(request)


class ConfirmDialog(Dialog[bool]):
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


@dataclass(frozen=True)
class AddDatasetRequest:
    path: Path
    name: str
    crop: str


class AddDatasetDialog(Dialog[AddDatasetRequest]):
    """Folder (with completion), name, crop."""

    DEFAULT_CSS = DIALOG_CSS.format(name="AddDatasetDialog")

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = "Add a folder of images"
            yield Label("Folder (→ accepts the completion)")
            yield Input(placeholder="~/Pictures/cats", id="path", suggester=PathSuggester())
            yield Label("Dataset name (default: the folder's name)")
            yield Input(placeholder="cats", id="name")
            yield Label("Crop while training")
            yield Select([(f"{c}: {summary}", c) for c, summary in contract.CROP_SUMMARIES.items()],
                         value=contract.DEFAULT_CROP, allow_blank=False, id="crop")
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
        self.dismiss(AddDatasetRequest(path, name, str(self.query_one("#crop", Select).value)))


PRESETS = [(f"{p}: {contract.PRESET_SUMMARIES[p]}", p) for p in contract.PRESETS]
IMAGE_SIZES = contract.IMAGE_SIZES
AUGMENT_CHOICES = [("the preset's", ""), ("off", "off"), ("translation", "translation"),
                   ("color,translation", "color,translation"), ("translation,cutout", "translation,cutout"),
                   ("color,translation,cutout", "color,translation,cutout")]
# flags the dialog has its own field for: "more options" may not give them again
OWN_FLAGS = {"--preset", "--max-steps", "--seed", "--batch-size", "--image-size", "--augment",
             "--data-dir", "--job-dir"}


def preset_defaults(preset: str) -> dict[str, Any]:
    """The trainer's resolved values for a preset (steps, seed, batch size, image size)."""
    from trainer.presets import resolve
    return resolve(preset, {}).to_json()


def _trainer_parser() -> argparse.ArgumentParser:
    from trainer.task import build_parser

    class Raising(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # argparse's own would exit
            raise ValueError(message)

    parser = build_parser()
    parser.__class__ = Raising
    return parser


def check_more_options(text: str) -> list[str]:
    """"--eval-every 200 --lr-g 1e-4" -> its words, checked against the trainer's own parser.

    Raises ValueError naming the bad word: a typo here would otherwise fail only after the
    job was queued, in its log.
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split the options: {exc}") from None
    for w in words:
        flag = w.split("=", 1)[0]
        if flag in OWN_FLAGS:
            raise ValueError(f"{flag} has its own field above")
    if words and not words[0].startswith("--"):
        raise ValueError(f"{words[0]!r} is not an option (options start with --)")
    try:
        _trainer_parser().parse_args(["--data-dir", "-", "--job-dir", "-", *words])
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return words


@dataclass(frozen=True)
class NewJobRequest:
    dataset: str
    options: TrainOptions

    def command_line(self) -> str:
        """The `genml train` command that starts the same job."""
        o = self.options
        words = ["genml", "train", self.dataset, "--preset", o.preset]
        for flag, value in (("--max-steps", o.max_steps), ("--seed", o.seed), ("--batch-size", o.batch_size),
                            ("--image-size", o.image_size)):
            if value is not None:
                words += [flag, str(value)]
        return shlex.join(words + list(o.extra_args))


class NewJobDialog(FormDialog[NewJobRequest]):
    """Dataset, preset, and the options people change, each with a hint and its own error line."""

    DEFAULT_CSS = FORM_CSS.format(name="NewJobDialog") + """
    NewJobDialog > Vertical { width: 78; max-height: 100%; }
    NewJobDialog #hint-dataset { display: none; }
    NewJobDialog #hint-dataset.-error { display: block; }
    NewJobDialog Label.command { color: $text-muted; height: auto; }
    """
    FIELDS = ("dataset", "steps", "seed", "batch", "size", "augment", "more")

    def __init__(self, datasets: list[str] | dict[str, int], preset: str = contract.PRESETS[0],
                 dataset: str | None = None) -> None:
        """`datasets`: names, or names with the image size each holds (then a larger size
        is refused here, as submit would refuse it)."""
        super().__init__()
        self._sizes: dict[str, int] = datasets if isinstance(datasets, dict) else {}
        self._datasets, self._preset, self._dataset = list(datasets), preset, dataset

    def compose(self) -> ComposeResult:
        first = self._dataset if self._dataset in self._datasets else (self._datasets[0] if self._datasets else None)
        with Vertical() as v:
            v.border_title = "New training job"
            v.border_subtitle = "tab: next field   enter: start   escape: cancel"
            yield from self.field("Dataset", Select([(d, d) for d in self._datasets], id="dataset", compact=True,
                                                     value=first if first else Select.NULL), "dataset")
            yield from self.field("Preset", Select(PRESETS, value=self._preset, allow_blank=False, id="preset",
                                                    compact=True), "preset")
            for key, label in (("steps", "Steps"), ("seed", "Seed"), ("batch", "Batch size"), ("size", "Image size")):
                yield from self.field(label, Input(id=key, type="integer", compact=True, placeholder="preset's"),
                                       key)
            yield from self.field("Augment", Select(AUGMENT_CHOICES, value="", allow_blank=False, id="augment",
                                                     compact=True), "augment")
            yield from self.field("More options", Input(id="more", placeholder="--eval-every 200 --lr-g 1e-4",
                                                         compact=True), "more")
            yield Label("", classes="command", id="command")
            yield from self.buttons("Start", compact=True)

    def on_mount(self) -> None:
        self.show_hints()
        self.query_one("#steps", Input).focus()     # enter in any field starts the job

    # ---- hints and checks ------------------------------------------------------------------
    def hints(self) -> dict[str, str]:
        preset = str(self.query_one("#preset", Select).value)
        d = preset_defaults(preset)
        augment = d.get("augment") or "off"
        ds = self.query_one("#dataset", Select).value
        holds = self._sizes.get(str(ds))
        doubled = ([f"for the last {d['batch_double']:.0%}"] if d.get("batch_double") else []) + (
            [f"from {d['batch_double_images']:,} images"] if d.get("batch_double_images") else [])
        when = " or ".join(doubled) + (", whichever comes first" if len(doubled) > 1 else "")
        return {
            "dataset": "" if self._datasets else "no dataset yet: make one in pane 1 (d)",
            "preset": "every field left empty takes the preset's value",
            "steps": (f"training steps; {preset}: {d['max_steps']}" if not d.get("max_minutes") else
                      f"{preset}: up to {d['max_minutes']:g} minutes; --max-minutes N in more options"),
            "seed": f"repeatable runs; {preset}: {d['seed']}",
            "batch": f"images per step; {preset}: {d['batch_size']}"
                     + (f"; {2 * d['batch_size']} {when}" if when else ""),
            "size": f"{', '.join(map(str, IMAGE_SIZES))} px; {preset}: "
                    + (str(contract.train_image_size(preset, None, holds)) if holds
                       else str(contract.PRESET_IMAGE_SIZES[preset]) if preset in contract.PRESET_IMAGE_SIZES
                       else "the dataset's size")
                    + (f"; {ds} holds {holds}" if holds else ""),
            "augment": f"DiffAugment, for small datasets; {preset}: {augment}",
            "more": "any other trainer option, as `genml train` passes them",
        }

    def _int(self, key: str, errors: dict[str, str], low: int = 1,
             allowed: tuple[int, ...] | None = None) -> int | None:
        raw = self.query_one(f"#{key}", Input).value.strip()
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            errors[key] = f"{raw!r} is not a whole number"
            return None
        if allowed is not None and value not in allowed:
            errors[key] = f"{value} is not a size the trainer makes; use {', '.join(map(str, allowed))}"
        elif value < low:
            errors[key] = f"must be {low} or more"
        return value

    def collect(self) -> tuple[NewJobRequest | None, dict[str, str]]:
        """The request, or the errors by field (both from the dialog's current values)."""
        errors: dict[str, str] = {}
        ds = self.query_one("#dataset", Select).value
        if ds is Select.NULL or not ds:
            errors["dataset"] = "make or add a dataset first (pane 1)"
        steps = self._int("steps", errors)
        seed = self._int("seed", errors, low=0)
        batch = self._int("batch", errors)
        size = self._int("size", errors, allowed=IMAGE_SIZES)
        holds = self._sizes.get(str(ds))
        if size is not None and holds and size > holds and "size" not in errors:
            errors["size"] = f"{ds} holds {holds} px; use {holds} or less, or leave it empty"
        extra: list[str] = []
        augment = str(self.query_one("#augment", Select).value)
        if augment:
            extra += ["--augment", "" if augment == "off" else augment]
        try:
            extra += check_more_options(self.query_one("#more", Input).value)
        except ValueError as exc:
            errors["more"] = str(exc)
        if errors:
            return None, errors
        options = TrainOptions(preset=str(self.query_one("#preset", Select).value), max_steps=steps, seed=seed,
                               batch_size=batch, image_size=size, extra_args=extra)
        return NewJobRequest(str(ds), options), {}

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Any) -> None:
        request, errors = self.collect()
        self.show_hints(errors)
        self.query_one("#command", Label).update(f"$ {request.command_line()}" if request else "")


@dataclass(frozen=True)
class DeployRequest:
    job_id: str
    name: str | None


class DeployDialog(Dialog[DeployRequest]):
    """A finished job and the model's name."""

    DEFAULT_CSS = DIALOG_CSS.format(name="DeployDialog")

    def __init__(self, options: list[tuple[str, str]], default_name: str) -> None:
        super().__init__()
        self._options, self._default_name = options, default_name

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = "Deploy a finished job"
            yield Select(self._options, value=self._options[0][1] if self._options else Select.NULL, id="choice")
            yield Label("Model name (default: the dataset's name)")
            yield Input(placeholder=self._default_name, id="name")
            yield from self.buttons("Deploy")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok_pressed(self, event: Any) -> None:
        event.stop()
        value = self.query_one("#choice", Select).value
        if value is Select.NULL:
            self.dismiss(None)
            return
        self.dismiss(DeployRequest(str(value), self.query_one("#name", Input).value.strip() or None))


class PromptDialog(Dialog[str]):
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


@dataclass(frozen=True)
class AnimationRequest:
    path: Path
    frames: int
    duration_ms: int
    bounce: bool
    scale: int


class AnimationDialog(FormDialog[AnimationRequest]):
    """Where and how to save a walk as an animation (GIF or APNG, by the file name)."""

    DEFAULT_CSS = FORM_CSS.format(name="AnimationDialog")
    FIELDS = ("path", "frames", "duration", "scale")
    HINTS = {"path": ".gif, or .png for an animated PNG (lossless)", "frames": "both ends included; 2 to 1024",
             "duration": "milliseconds per frame", "scale": "enlarge each frame (nearest-neighbour); 1 to 16",
             "bounce": "there and back, so the loop does not jump"}

    def __init__(self, path: str, frames: int) -> None:
        super().__init__()
        self._path, self._frames = path, frames

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = "Save the walk as an animation"
            v.border_subtitle = "enter: save   escape: cancel"
            for key, label, widget in (
                    ("path", "File", Input(self._path, id="path", compact=True, suggester=PathSuggester())),
                    ("frames", "Frames", Input(str(self._frames), id="frames", type="integer", compact=True)),
                    ("duration", "ms per frame", Input("80", id="duration", type="integer", compact=True)),
                    ("scale", "Scale", Input("4", id="scale", type="integer", compact=True)),
                    ("bounce", "Loop", Select([("A → B → A", "yes"), ("A → B", "no")], value="yes",
                                              allow_blank=False, id="bounce", compact=True))):
                yield from self.field(label, widget, key, self.HINTS[key])
            yield from self.buttons("Save", compact=True)

    def on_mount(self) -> None:
        self.query_one("#frames", Input).focus()

    def collect(self) -> tuple[AnimationRequest | None, dict[str, str]]:
        from core.errors import InvalidInput
        from core.interpolate import MAX_FRAMES, animation_format
        errors: dict[str, str] = {}
        raw = self.query_one("#path", Input).value.strip()
        path = Path(os.path.expanduser(raw)) if raw else None
        if path is None:
            errors["path"] = "type a file name"
        else:
            try:
                animation_format(path)
            except InvalidInput as exc:
                errors["path"] = exc.hint or exc.message
        values: dict[str, int] = {}
        for key, low, high in (("frames", 2, MAX_FRAMES), ("duration", 10, 60_000), ("scale", 1, 16)):
            text = self.query_one(f"#{key}", Input).value.strip()
            try:
                values[key] = int(text)
            except ValueError:
                errors[key] = "type a whole number"
                continue
            if not low <= values[key] <= high:
                errors[key] = f"use {low} to {high}"
        if errors or path is None:
            return None, errors
        return AnimationRequest(path, values["frames"], values["duration"],
                                self.query_one("#bounce", Select).value == "yes", values["scale"]), {}

    @on(Input.Changed)
    def _changed(self) -> None:
        self.show_hints(self.collect()[1])
