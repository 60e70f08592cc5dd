"""Pane 4: the generator. Draws images from random embeddings (with their seeds), history,
pins, a grid, spherical interpolation, encode-an-image, and save as PNG + seed JSON.

The model loads in a thread worker (the Predictor imports TensorFlow lazily), so the app
paints and stays responsive while TensorFlow starts.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Select, Static

from trainer.contract import CROP_FRACTION
from tui.actions import Action, bindings
from tui.images import ImageView, to_pil
from tui.widgets.pane import Pane

if TYPE_CHECKING:   # numpy is imported where it is used: it costs ~0.2 s of the first paint
    import numpy as np

WELCOME = "No deployed model yet: press 3 and deploy a finished job (D), then come back."
GRID = 16


def embedding(seed: int, size: int) -> np.ndarray:
    """The random embedding a seed names: numpy's default_rng(seed).standard_normal(E)."""
    import numpy as np
    return np.random.default_rng(seed).standard_normal(size).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """Spherical interpolation from a to b in `steps` points (both ends included)."""
    import numpy as np
    ts = np.linspace(0.0, 1.0, max(2, steps))
    na, nb = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = math.acos(float(np.clip(np.dot(na, nb), -1.0, 1.0)))
    if omega < 1e-6:
        return np.stack([(1 - t) * a + t * b for t in ts]).astype(np.float32)
    so = math.sin(omega)
    return np.stack([(math.sin((1 - t) * omega) / so) * a + (math.sin(t * omega) / so) * b
                     for t in ts]).astype(np.float32)


def tile(images: list[PILImage.Image], cols: int, gap: int = 2) -> PILImage.Image:
    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    sheet = PILImage.new("RGB", (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), (0, 0, 0))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * (w + gap), (i // cols) * (h + gap)))
    return sheet


@dataclass(eq=False)
class Sample:
    kind: str                         # random | grid | interp | file
    z: np.ndarray                     # (N, E)
    image: PILImage.Image             # what is shown (one image or a composite)
    seeds: list[int] = field(default_factory=list)
    label: str = ""

    @property
    def describe(self) -> str:
        if self.kind == "random":
            return f"seed {self.seeds[0]}"
        if self.kind == "grid":
            return f"grid, seeds {self.seeds[0]}..{self.seeds[-1]}"
        return self.label


class GeneratorPane(Pane):
    TITLE = "Generator"
    POLL_VISIBLE = 3.0
    POLL_HIDDEN = 10.0
    ACTIONS = (
        Action("resample", "r,space", "Resample", "Draw a new random embedding"),
        Action("back", "h,left,left_square_bracket", "History back", "Previous sample", key_display="h/←"),
        Action("forward", "l,right,right_square_bracket", "History fwd", "Next sample", key_display="l/→"),
        Action("pin", "p", "Pin", "Pin the current sample"),
        Action("grid", "g", "Grid", "Show a grid of random samples"),
        Action("interpolate", "i", "Interpolate", "Interpolate between the last two pins"),
        Action("open_image", "o", "Encode image", "Open an image file: its embedding and reconstruction"),
        Action("save", "s", "Save", "Save the PNG and its embedding as JSON"),
        Action("pick_model", "M", "Model", "Pick the model"),
        Action("focus_canvas", "escape", "Back", footer=False, help=False),
    )
    BINDINGS = bindings(ACTIONS)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.model_ref: str | None = None
        self.predictor: Any = None
        self.history: list[Sample] = []
        self.index = -1
        self.pins: list[Sample] = []
        self.steps = 8
        self._models: list[str] = []
        self._loading = False
        self.save_dir = Path(os.environ.get("GENML_SAVE_DIR", "."))
        self.seed_source = random.Random()   # tests may seed this for a fixed first sample

    def compose(self) -> ComposeResult:
        with Horizontal(classes="gen-body"):
            with Vertical(id="gen-main"):
                yield Select([], prompt="pick a model (M)", id="model")
                yield ImageView(WELCOME, id="canvas")
            yield Static("", id="gen-info", classes="gen-info")

    # ---- models ------------------------------------------------------------------------
    def fetch(self) -> list[str]:
        return [m.ref for m in self.backend.list_models() if m.deployed]

    def apply(self, refs: list[str]) -> None:
        if refs != self._models:
            self._models = refs
            sel = self.query_one("#model", Select)
            with self.prevent(Select.Changed):
                sel.set_options([(r, r) for r in refs])
                if self.model_ref in refs:
                    sel.value = self.model_ref
        if self.model_ref is None and self._models and self.visible_pane:
            self.load_model(self._models[0])
        self._info()

    @on(Select.Changed, "#model")
    def _model_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.BLANK and event.value != self.model_ref:
            self.load_model(str(event.value))
            self.focus()

    def action_pick_model(self) -> None:
        self.query_one("#model", Select).focus()
        self.query_one("#model", Select).expanded = True

    def action_focus_canvas(self) -> None:
        self.focus()

    def load_model(self, ref: str) -> None:
        self.model_ref = ref
        self.predictor = None
        self._loading = True
        sel = self.query_one("#model", Select)
        if ref in self._models and sel.value != ref:
            with self.prevent(Select.Changed):
                sel.value = ref
        self.query_one("#canvas", ImageView).set_image(None, f"loading {ref}… (TensorFlow starts once)")
        self._info()
        self._load_worker(ref)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_worker(self, ref: str) -> None:
        try:
            predictor = self.backend.predictor(ref)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self._load_failed, ref, exc)
            return
        self.app.call_from_thread(self._loaded, ref, predictor)

    def _load_failed(self, ref: str, exc: Exception) -> None:
        self._loading = False
        self.query_one("#canvas", ImageView).set_image(None, f"{ref} could not be loaded")
        self.genml.show_error(exc)

    def _loaded(self, ref: str, predictor: Any) -> None:
        if ref != self.model_ref:
            return
        self._loading = False
        self.predictor = predictor
        self.history, self.index = [], -1
        self.action_resample()

    # ---- drawing -----------------------------------------------------------------------
    def _ready(self) -> bool:
        if self.predictor is None:
            self.app.notify("Loading the model…" if self._loading else "Pick a model first (M).",
                            severity="warning", timeout=3)
            return False
        return True

    def action_resample(self) -> None:
        if self._ready():
            seed = self.seed_source.randrange(2**32)
            self._generate("random", [seed], embedding(seed, self.predictor.embedding_size)[None])

    def action_grid(self) -> None:
        import numpy as np
        if self._ready():
            base = self.seed_source.randrange(2**32 - GRID)
            seeds = list(range(base, base + GRID))
            self._generate("grid", seeds, np.stack([embedding(s, self.predictor.embedding_size) for s in seeds]))

    def action_interpolate(self) -> None:
        if not self._ready():
            return
        singles = [p for p in self.pins if len(p.z) == 1]
        if len(singles) < 2:
            self.app.notify("Pin two samples first (p on each).", severity="warning")
            return
        from tui.screens.dialogs import PromptDialog

        def go(answer: str | None) -> None:
            if not answer:
                return
            try:
                self.steps = max(2, min(64, int(answer)))
            except ValueError:
                self.app.notify(f"{answer!r} is not a number of steps.", severity="error")
                return
            a, b = singles[-2], singles[-1]
            self._generate("interp", [], slerp(a.z[0], b.z[0], self.steps),
                           label=f"slerp {a.describe} -> {b.describe}, {self.steps} steps")
        self.app.push_screen(PromptDialog("Interpolate in how many steps?", value=str(self.steps)), go)

    def _generate(self, kind: str, seeds: list[int], z: np.ndarray, label: str = "") -> None:
        self._gen_worker(kind, seeds, z, label, self.predictor)

    @work(thread=True, exclusive=True, group="gen", exit_on_error=False)
    def _gen_worker(self, kind: str, seeds: list[int], z: np.ndarray, label: str, predictor: Any) -> None:
        import numpy as np
        images = predictor.generate(z)      # an error ends the worker: the app shows it
        pil = [PILImage.fromarray(np.asarray(im, dtype=np.uint8)) for im in images]
        shown = pil[0] if len(pil) == 1 else tile(pil, 4 if kind == "grid" else min(8, len(pil)))
        self.app.call_from_thread(self._push, Sample(kind, z, shown, seeds, label))

    def _push(self, sample: Sample) -> None:
        self.history = self.history[: self.index + 1] + [sample]
        self.history = self.history[-200:]
        self.index = len(self.history) - 1
        self._show()

    def _show(self) -> None:
        if 0 <= self.index < len(self.history):
            self.query_one("#canvas", ImageView).set_image(self.history[self.index].image)
        self._info()

    @property
    def current(self) -> Sample | None:
        return self.history[self.index] if 0 <= self.index < len(self.history) else None

    def _info(self) -> None:
        s = self.current
        lines = [f"[b]model[/b] {self.model_ref or '-'}" + (" (loading…)" if self._loading else "")]
        if self.predictor is not None:
            lines.append(f"{self.predictor.image_size}px, embedding {self.predictor.embedding_size}")
        if s is not None:
            lines += ["", f"[b]{s.describe}[/b]", f"history {self.index + 1}/{len(self.history)}"]
            if s.kind == "file":
                lines.append("embedding " + " ".join(f"{v:+.2f}" for v in s.z[-1][:6]) + " …")
        if self.pins:
            lines += ["", "[b]pins[/b]"] + [f" {i + 1}. {p.describe}" for i, p in enumerate(self.pins[-6:])]
        lines += ["", "[dim]r resample  h/l history\np pin  g grid  i interpolate\no encode image  s save\n"
                      "m image mode  ? help[/dim]"]
        self.query_one("#gen-info", Static).update("\n".join(lines))

    # ---- history, pins, files ------------------------------------------------------------
    def action_back(self) -> None:
        if self.index > 0:
            self.index -= 1
            self._show()

    def action_forward(self) -> None:
        if self.index < len(self.history) - 1:
            self.index += 1
            self._show()

    def action_pin(self) -> None:
        s = self.current
        if s is None:
            return
        if s not in self.pins:
            self.pins.append(s)
            self.app.notify(f"Pinned {s.describe}.", timeout=2)
        self._info()

    def action_open_image(self) -> None:
        if not self._ready():
            return
        from tui.screens.dialogs import PromptDialog
        self.app.push_screen(PromptDialog("Open an image (JPEG or PNG)", "~/Pictures/cat.jpg", paths=True),
                             self._encode)

    def _encode(self, path: str | None) -> None:
        if path:
            self._encode_worker(Path(os.path.expanduser(path)), self.predictor)

    @work(thread=True, exclusive=True, group="gen", exit_on_error=False)
    def _encode_worker(self, path: Path, predictor: Any) -> None:
        import numpy as np
        from core.errors import InvalidInput
        try:
            data = path.read_bytes()
            original = to_pil(data)
            z = predictor.encode([data])
            recon = PILImage.fromarray(np.asarray(predictor.generate(z)[0], dtype=np.uint8))
        except OSError as exc:
            raise InvalidInput(f"Cannot read {path}: {exc.strerror or exc}.",
                               "Give the path of a JPEG or PNG file.") from exc
        side = min(original.size)
        box = int(side * CROP_FRACTION)
        left, top = (original.width - box) // 2, (original.height - box) // 2
        crop = original.crop((left, top, left + box, top + box)).resize(recon.size, PILImage.Resampling.BILINEAR)
        shown = tile([crop, recon], 2, gap=4)
        self.app.call_from_thread(self._push, Sample("file", np.asarray(z, dtype=np.float32), shown, [],
                                                     f"{path.name}: original | reconstruction"))

    def action_save(self) -> None:
        s = self.current
        if s is None:
            return
        stem = f"{(self.model_ref or 'model').replace('@', '-')}-" + (
            f"seed{s.seeds[0]}" if s.kind == "random" else f"{s.kind}-{time.strftime('%Y%m%d-%H%M%S')}")
        png = self.save_dir / f"{stem}.png"
        out = self.save_dir / f"{stem}.json"
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            s.image.save(png)
            z = s.z[-1:] if s.kind == "file" else s.z
            text = "\n".join(json.dumps({"embeddings": [float(v) for v in row], "key": str(i)})
                             for i, row in enumerate(z)) + "\n"
            out.write_text(text)
        except OSError as exc:
            self.app.notify(f"Could not save: {exc}", severity="error")
            return
        self.app.notify(f"Saved {png} and {out.name}", title="Saved")
