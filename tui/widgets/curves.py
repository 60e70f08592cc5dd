"""Loss curves and quality figures from a job's metrics.jsonl, drawn with Sparklines.

textual-plotext is not a dependency; a sparkline per loss says what a person needs
while training runs (going down, flat, or diverging) in one row each.
"""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

LOSSES = ("loss_g", "loss_d", "loss_e", "loss_recon", "loss_kl")
MAX_POINTS = 200


def _downsample(values: list[float], n: int = MAX_POINTS) -> list[float]:
    if len(values) <= n:
        return values
    step = len(values) / n
    return [values[int(i * step)] for i in range(n)]


def quality_text(last_eval: dict[str, Any]) -> str:
    if not last_eval:
        return "quality: no evaluation yet"
    parts = [f"step {last_eval.get('step', '?')}"]
    for key, label, fmt in (("swd", "SWD", "{:.3f}"), ("psnr", "PSNR", "{:.1f} dB"), ("ssim", "SSIM", "{:.3f}")):
        v = last_eval.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {fmt.format(v)}")
    return "quality: " + "  ".join(parts)


class Curves(Vertical):
    """One sparkline per loss plus the latest evaluation's SWD / PSNR / SSIM."""

    DEFAULT_CSS = """
    Curves { height: auto; }
    Curves > Horizontal { height: 1; }
    Curves Label.name { width: 18; }
    Curves Sparkline { width: 1fr; height: 1; }
    Curves > .quality { height: auto; color: $text-accent; }
    """

    def compose(self) -> ComposeResult:
        yield Static("quality: no evaluation yet", classes="quality")
        for key in LOSSES:
            with Horizontal(id=f"row-{key}"):
                yield Label(key, classes="name")
                yield Sparkline([], id=f"spark-{key}")

    _seen: tuple[int, int, int] | None = None

    def update_metrics(self, metrics: Any) -> None:
        """`metrics` is a core.jobdir.Metrics; redraws only when rows were added."""
        key = (id(metrics), len(metrics.train), len(metrics.eval))
        if key == self._seen:
            return
        self._seen = key
        self.query_one(".quality", Static).update(quality_text(metrics.last_eval))
        for key in LOSSES:
            _, values = metrics.series(key)
            row = self.query_one(f"#row-{key}")
            row.display = bool(values)
            if values:
                row.query_one(Label).update(f"{key} {values[-1]:.3f}")
                row.query_one(Sparkline).data = _downsample(values)
