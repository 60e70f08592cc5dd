"""A run's quality at a glance: the latest SWD, its trend, the best step, improving or stalled.

The trainer writes `best_step`, `best_swd`, `evals_since_best` and `patience` into each
`{"kind": "eval"}` row of metrics.jsonl (and `best_step`, `best_swd`, `stalled` into
status.json). Job dirs written before it did have only the `swd` series; for them the
same figures are worked out here from that series, so old and new runs read alike.
Lower SWD is better.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DEFAULT_PATIENCE = 4     # evaluations without a new best before a run counts as stalled


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class QualitySummary:
    step: int | None = None               # the latest evaluation's step
    swd: float | None = None              # its sliced Wasserstein distance (lower is better)
    previous_swd: float | None = None     # the evaluation before it
    best_step: int | None = None
    best_swd: float | None = None
    evals_since_best: int = 0
    patience: int = DEFAULT_PATIENCE
    stalled_flag: bool | None = None      # status.json's word, when the trainer wrote one
    psnr: float | None = None
    ssim: float | None = None
    swd_floor: float | None = None        # SWD between two halves of the real data: the best reachable
    draws: int = 1                        # with --eval-draws K: swd is the mean of K draws...
    swd_sd: float | None = None           # ...which spread this much (None for one draw)

    @property
    def has_eval(self) -> bool:
        return self.swd is not None

    @property
    def trend(self) -> str:
        """'down' (better), 'up' (worse), 'flat', or '' with fewer than two evaluations."""
        if self.swd is None or self.previous_swd is None:
            return ""
        diff = self.swd - self.previous_swd
        if abs(diff) <= 1e-3 * max(abs(self.previous_swd), 1e-9):
            return "flat"
        return "down" if diff < 0 else "up"

    @property
    def stalled(self) -> bool:
        if self.stalled_flag is not None:
            return self.stalled_flag
        return self.has_eval and self.evals_since_best >= self.patience

    @property
    def verdict(self) -> str:
        """'improving', 'stalled', or '' before the first evaluation."""
        if not self.has_eval:
            return ""
        return "stalled" if self.stalled else "improving"

    @property
    def spread(self) -> str:
        """'mean of K draws, sd X' for a score from --eval-draws K, else '': one wording for
        every place that shows the score."""
        return f"mean of {self.draws} draws, sd {self.swd_sd:.1f}" if self.swd_sd is not None else ""


def summarize(evals: Sequence[Mapping[str, Any]], status: Mapping[str, Any] | None = None) -> QualitySummary:
    """The summary of a job from its eval rows (oldest first) and its status.json (may be empty)."""
    rows = [r for r in evals if _num(r.get("swd")) is not None]
    status = status or {}
    if not rows:
        return QualitySummary()
    last = rows[-1]
    swd = _num(last["swd"])
    previous = _num(rows[-2]["swd"]) if len(rows) > 1 else None
    # worked out from the series: the first evaluation with the lowest SWD is the best
    best_i = min(range(len(rows)), key=lambda i: (float(rows[i]["swd"]), i))
    best_step = _int(last.get("best_step"))
    if best_step is None:
        best_step = _int(status.get("best_step"))
    if best_step is None:
        best_step = _int(rows[best_i].get("step"))
    best_swd = _num(last.get("best_swd"))
    if best_swd is None:
        best_swd = _num(status.get("best_swd"))
    if best_swd is None:
        best_swd = float(rows[best_i]["swd"])
    since = _int(last.get("evals_since_best"))
    if since is None:
        since = len(rows) - 1 - best_i
    patience = _int(last.get("patience")) or DEFAULT_PATIENCE
    stalled = status.get("stalled")
    listed = last.get("swd_draws")
    draws = [x for x in map(_num, listed) if x is not None] if isinstance(listed, list) else []
    return QualitySummary(step=_int(last.get("step")), swd=swd, previous_swd=previous, best_step=best_step,
                          best_swd=best_swd, evals_since_best=since, patience=patience,
                          stalled_flag=stalled if isinstance(stalled, bool) else None,
                          psnr=_num(last.get("psnr")), ssim=_num(last.get("ssim")),
                          swd_floor=_num(last.get("swd_floor")), draws=max(1, len(draws)),
                          swd_sd=statistics.stdev(draws) if len(draws) > 1 else None)
