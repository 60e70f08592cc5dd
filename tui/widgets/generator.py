"""Pane 4: the generator. Draws images from random embeddings (with their seeds), history,
pins, a grid, spherical interpolation (saved as a GIF/APNG too), encode-an-image, the
nearest training images of a sample, the zoom, and save as PNG + seed JSON.

The model loads in a thread worker (the Predictor imports TensorFlow lazily), so the app
paints and stays responsive while TensorFlow starts.
"""
from __future__ import annotations

import json
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

from core.interpolate import embedding, slerp
from trainer.contract import CROP_FRACTION
from tui.actions import Action
from tui.images import ImageView, tile, to_pil
from tui.widgets.pane import Pane

if TYPE_CHECKING:   # numpy is imported where it is used: it costs ~0.2 s of the first paint
    import numpy as np

WELCOME = "No deployed model yet: press 3 and deploy a finished job (D), then come back."
GRID = 16


@dataclass(eq=False)
class Sample:
    kind: str                         # random | grid | interp | file
    z: np.ndarray                     # (N, E)
    image: PILImage.Image             # all of it in one picture (what `s` saves as PNG)
    seeds: list[int] = field(default_factory=list)
    label: str = ""
    cells: list[PILImage.Image] = field(default_factory=list)   # one per image: the canvas's grid, the zoom
    cell_labels: list[str] = field(default_factory=list)

    @property
    def generated(self) -> list[PILImage.Image]:
        """The images the model made (a file's reconstruction, not the original beside it)."""
        return self.cells[1:] if self.kind == "file" else self.cells

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
        Action("save_animation", "a", "Save walk as GIF", "Save the interpolation as an animation (GIF or APNG)"),
        Action("zoom", "z", "Zoom", "Zoom into the image, one cell at a time"),
        Action("nearest", "n", "Nearest in data", "Show the closest training images (is it copying?)"),
        Action("nearest_space", "N", "Nearest: pixels/embedding", "Nearest in the data: switch pixels / embedding"),
        Action("pick_model", "M", "Model", "Pick the model"),
    )

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
        # nearest in the data: on for every new sample once `n` is pressed, until pressed again
        self.nearest_on = False
        self.nearest_space = "pixels"
        self.cache_dir: Path | None = None    # where indexes are kept (default: the workspace's cache/)
        self._indexes: dict[tuple[str, str, str], Any] = {}    # (model, dataset dir, space) -> NeighbourIndex
        self._nearest_for: Sample | None = None
        self._nearest: list[Any] = []         # per generated image, its neighbours
        self._nearest_note = ""

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
        if event.value is not Select.NULL and event.value != self.model_ref:
            self.load_model(str(event.value))
            self.focus()

    def action_pick_model(self) -> None:
        self.query_one("#model", Select).focus()
        self.query_one("#model", Select).expanded = True

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
        except Exception as exc:  # noqa: BLE001 - any load failure is shown in the pane
            self.app.call_from_thread(self._load_failed, ref, exc)
            return
        self.app.call_from_thread(self._loaded, ref, predictor)

    def _load_failed(self, ref: str, exc: Exception) -> None:
        self._loading = False
        self.query_one("#canvas", ImageView).set_image(None, f"{ref} could not be loaded")
        self._info()
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
        shown = pil[0] if len(pil) == 1 else tile(pil, 4 if kind == "grid" else min(8, len(pil)), gap=2)
        labels = [f"seed {s}" for s in seeds] if kind in ("grid", "random") else \
            [f"frame {i + 1} of {len(pil)}" for i in range(len(pil))] if kind == "interp" else []
        self.app.call_from_thread(self._push, Sample(kind, z, shown, seeds, label, pil, labels))

    def _push(self, sample: Sample) -> None:
        self.history = self.history[: self.index + 1] + [sample]
        self.history = self.history[-200:]
        self.index = len(self.history) - 1
        self._show()
        if self.nearest_on:
            self._find_nearest(sample)

    def _show(self) -> None:
        s = self.current
        if s is not None:
            title = f"{self.model_ref}: {s.describe}"
            if self._nearest_for is s and self._nearest:
                cells, labels = self._nearest_cells(s)
                self.query_one("#canvas", ImageView).set_cells(cells, labels, title=f"{title}, nearest in the data")
            else:
                self.query_one("#canvas", ImageView).set_cells(s.cells or [s.image], s.cell_labels, title=title)
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
        if self.nearest_on:
            lines += ["", f"[b]nearest in the data[/b] ({self.nearest_space})"]
            if self._nearest_for is s and self._nearest:
                lines += self._nearest_lines()
            elif self._nearest_note:
                lines.append(f"[dim]{self._nearest_note}[/dim]")
        if self.pins:
            lines += ["", "[b]pins[/b]"] + [f" {i + 1}. {p.describe}" for i, p in enumerate(self.pins[-6:])]
        lines += ["", "[dim]r resample  h/l history\np pin  g grid  i interpolate\nz zoom  n nearest in data\n"
                      "a save walk (GIF)  s save\no encode image  m image mode\n? all keys[/dim]"]
        self.query_one("#gen-info", Static).update("\n".join(lines))

    # ---- history, pins, files ------------------------------------------------------------
    def action_back(self) -> None:
        if self.index > 0:
            self.index -= 1
            self._moved()

    def action_forward(self) -> None:
        if self.index < len(self.history) - 1:
            self.index += 1
            self._moved()

    def _moved(self) -> None:
        self._show()
        if self.nearest_on and self.current is not None and self._nearest_for is not self.current:
            self._find_nearest(self.current)

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
            # A second or more on a CPU: the export refines the embedding (docs/trainer.md).
            self.app.notify(f"Encoding {Path(path).name}…", timeout=3)
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
                                                     f"{path.name}: original | reconstruction", [crop, recon],
                                                     [f"{path.name} (the crop the model sees)", "reconstruction"]))

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

    # ---- zoom ------------------------------------------------------------------------------
    def action_zoom(self) -> None:
        self.genml.zoom(self.query_one("#canvas", ImageView))

    # ---- nearest in the data -----------------------------------------------------------------
    def action_nearest(self) -> None:
        self.nearest_on = not self.nearest_on
        if not self.nearest_on:
            self._nearest_for, self._nearest, self._nearest_note = None, [], ""
            self._show()
            return
        if self._ready() and self.current is not None:
            self._find_nearest(self.current)
        self._info()

    def action_nearest_space(self) -> None:
        self.nearest_space = "embedding" if self.nearest_space == "pixels" else "pixels"
        self.app.notify(f"Nearest in the data: {self.nearest_space} space", timeout=3)
        if self.nearest_on and self.current is not None and self.predictor is not None:
            self._find_nearest(self.current)
        self._info()

    def _find_nearest(self, sample: Sample) -> None:
        self._nearest_for, self._nearest = None, []
        key = (self.model_ref or "", self.nearest_space)
        self._nearest_note = "reading the training images… (once per model)" if not any(
            k[0] == key[0] and k[2] == key[1] for k in self._indexes) else "searching…"
        self._nearest_worker(sample, self.model_ref or "", self.nearest_space, self.predictor)

    def _cache_dir(self) -> Path:
        if self.cache_dir is None:
            from core.workspace import Workspace
            self.cache_dir = Workspace.open().root / "cache" / "nearest"
        return self.cache_dir

    @work(thread=True, exclusive=True, group="nearest", exit_on_error=False)
    def _nearest_worker(self, sample: Sample, ref: str, space: str, predictor: Any) -> None:
        import numpy as np

        from core import nearest
        try:
            model = self.backend.get_model(ref)
            dataset = self.backend.get_dataset(self.backend.get_job(model.job_id).dataset)
            key = (ref, dataset.path, space)
            index = self._indexes.get(key)
            if index is None:
                index = nearest.load_or_build(self._cache_dir(), Path(dataset.path), space, model_ref=ref,
                                              encode=predictor.encode)
                self._indexes[key] = index
            images = [np.asarray(im) for im in sample.generated]
            k = 6 if len(images) == 1 else 1
            found = nearest.query_images(index, images, k, encode=predictor.encode)
        except Exception:
            self.app.call_from_thread(self._nearest_failed, sample)
            raise                     # the app's one handler shows it
        self.app.call_from_thread(self._nearest_found, sample, found, len(index))

    def _nearest_failed(self, sample: Sample) -> None:
        self._nearest_note = "not available for this model"
        self._info()

    def _nearest_found(self, sample: Sample, found: list[Any], size: int) -> None:
        if sample is not self.current or not self.nearest_on:
            return
        self._nearest_for, self._nearest = sample, found
        self._nearest_note = f"{size} training images" if size else "the dataset has no training images here"
        copies = [n for row in found for n in row[:1] if n.near_copy]
        if copies:
            self.app.notify(f"Near-copy of a training image: {copies[0].name} (distance {copies[0].distance:.3f}).",
                            title="Nearest in the data", severity="warning", timeout=8)
        self._show()

    def _nearest_cells(self, s: Sample) -> tuple[list[PILImage.Image], list[str]]:
        """Single image: it, then its neighbours. Several: each one beside its nearest."""
        def thumb(n: Any, size: tuple[int, int]) -> PILImage.Image:
            return PILImage.fromarray(n.thumbnail).resize(size, PILImage.Resampling.NEAREST)

        def label(n: Any) -> str:
            return f"{n.name}  distance {n.distance:.3f}" + ("  NEAR-COPY" if n.near_copy else "")
        gen = s.generated
        if len(gen) == 1:
            row = self._nearest[0]
            return [gen[0], *[thumb(n, gen[0].size) for n in row]], ["the sample", *[label(n) for n in row]]
        cells, labels = [], []
        for i, (im, row) in enumerate(zip(gen, self._nearest)):
            cells += [im, *[thumb(n, im.size) for n in row[:1]]]
            labels += [s.cell_labels[i] if i < len(s.cell_labels) else f"image {i + 1}",
                       *[f"nearest: {label(n)}" for n in row[:1]]]
        return cells, labels

    def _nearest_lines(self) -> list[str]:
        rows = self._nearest
        if len(rows) == 1:
            out = [f" {i + 1}. {n.distance:.3f} {n.name[-18:]}" + (" [b red]copy?[/]" if n.near_copy else "")
                   for i, n in enumerate(rows[0])]
        else:
            best = [r[0] for r in rows if r]
            flagged = sum(n.near_copy for n in best)
            out = [f" closest {min(n.distance for n in best):.3f}" if best else " -",
                   f" {flagged} of {len(best)} look like copies" if flagged else " none looks like a copy"]
        out.append(f"[dim] {self._nearest_note}; image, then its nearest (z)[/dim]")
        return out

    # ---- the walk as an animation ------------------------------------------------------------
    def _walk_ends(self) -> tuple[Sample, Sample] | None:
        singles = [p for p in self.pins if len(p.z) == 1]
        return (singles[-2], singles[-1]) if len(singles) >= 2 else None

    def action_save_animation(self) -> None:
        if not self._ready():
            return
        s = self.current
        ends = self._walk_ends()
        if (s is None or s.kind != "interp") and ends is None:
            self.app.notify("Pin two samples first (p on each), or interpolate (i).", severity="warning")
            return
        from tui.screens.dialogs import AnimationDialog
        frames = len(s.z) if s is not None and s.kind == "interp" else max(self.steps, 24)
        stem = f"{(self.model_ref or 'model').replace('@', '-')}-walk-{time.strftime('%Y%m%d-%H%M%S')}"
        self.app.push_screen(AnimationDialog(str(self.save_dir / f"{stem}.gif"), frames), self._animation_chosen)

    def _animation_chosen(self, request: Any) -> None:
        if request is None:
            return
        s = self.current
        if s is not None and s.kind == "interp" and len(s.z) == request.frames:
            z = s.z                                # the walk on screen, as it is
        else:
            a, b = (s.z[0], s.z[-1]) if s is not None and s.kind == "interp" else \
                (self._walk_ends()[0].z[0], self._walk_ends()[1].z[0])  # type: ignore[index]  # ends exist here
            z = slerp(a, b, request.frames)
        self._animation_worker(z, request, self.predictor)

    @work(thread=True, exclusive=True, group="animation", exit_on_error=False)
    def _animation_worker(self, z: np.ndarray, request: Any, predictor: Any) -> None:
        from core.interpolate import save_animation
        frames = predictor.generate(z)
        path = save_animation(frames, request.path, duration_ms=request.duration_ms, bounce=request.bounce,
                              scale=request.scale)
        self.app.call_from_thread(self.app.notify, f"Saved {path} ({len(frames)} frames, "
                                  f"{request.duration_ms} ms each)", title="Animation saved")
