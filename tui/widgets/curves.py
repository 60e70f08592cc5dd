"""Loss curves and quality figures from a job's metrics.jsonl, drawn with Sparklines.

textual-plotext is not a dependency; a sparkline per loss says what a person needs
while training runs (going down, flat, or diverging) in one row each.
"""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from core.quality import QualitySummary, summarize

LOSSES = ("loss_g", "loss_d", "loss_e", "loss_recon", "loss_kl")
MAX_POINTS = 200


def _downsample(values: list[float], n: int = MAX_POINTS) -> list[float]:
    if len(values) <= n:
        return values
    step = len(values) / n
    return [values[int(i * step)] for i in range(n)]


ARROWS = {"down": "[green]↓[/]", "up": "[red]↑[/]", "flat": "→", "": ""}


def fmt_swd(v: float) -> str:
    """SWD with about three significant figures: the trainer's is in the hundreds on real data
    (245.5), the test workspace's below one (0.700)."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def swd_cell(q: QualitySummary) -> str:
    """The jobs list's column: latest SWD and its arrow, yellow once the run has stalled."""
    if not q.has_eval or q.swd is None:
        return "-"
    text = f"{fmt_swd(q.swd)}{ARROWS[q.trend]}"
    return f"[yellow]{text}[/]" if q.stalled else text


def quality_text(q: QualitySummary) -> str:
    """Two lines: SWD, trend, best step, improving/stalled; then the eval's step, PSNR and SSIM."""
    if not q.has_eval or q.swd is None:
        return "quality: no evaluation yet"
    verdict = "[yellow]stalled[/]" if q.stalled else "[green]improving[/]"
    first = f"[b]SWD {fmt_swd(q.swd)}[/b]{ARROWS[q.trend]}  best step {q.best_step}"
    if q.best_swd is not None and q.best_step != q.step:
        first += f" ({fmt_swd(q.best_swd)})"
    first += f"  {verdict}"
    if q.stalled:
        first += f" [dim]({q.evals_since_best} evals)[/dim]"
    second = [f"eval at {q.step}"]
    if q.spread:
        second.append(f"SWD the {q.spread}")
    if q.psnr is not None:
        second.append(f"PSNR {q.psnr:.1f} dB")
    if q.ssim is not None:
        second.append(f"SSIM {q.ssim:.2f}")
    return first + "\n[dim]" + "  ".join(second) + "[/dim]"


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

    _seen: tuple[int, int, int, str] | None = None

    def update_metrics(self, metrics: Any, status: dict[str, Any] | None = None) -> None:
        """`metrics` is a core.jobdir.Metrics, `status` the job's status.json; redraws only on a change."""
        key = (id(metrics), len(metrics.train), len(metrics.eval), repr(sorted((status or {}).items())))
        if key == self._seen:
            return
        self._seen = key
        self.query_one(".quality", Static).update(quality_text(summarize(metrics.eval, status)))
        for name in LOSSES:
            _, values = metrics.series(name)
            row = self.query_one(f"#row-{name}")
            row.display = bool(values)
            if values:
                row.query_one(Label).update(f"{name} {values[-1]:.3f}")
                row.query_one(Sparkline).data = _downsample(values)
