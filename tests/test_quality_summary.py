"""core.quality: the jobs pane's SWD, trend, best step and improving/stalled (issue 14, item 6)."""
from __future__ import annotations

from core.quality import summarize


def evals(swds: list[float], **extra: object) -> list[dict[str, object]]:
    return [{"kind": "eval", "step": 100 * (i + 1), "swd": s, "psnr": 12.0, "ssim": 0.3, **extra}
            for i, s in enumerate(swds)]


def test_no_evaluation_yet() -> None:
    q = summarize([], {})
    assert not q.has_eval and q.verdict == "" and q.trend == ""


def test_old_job_dirs_work_it_out_from_the_swd_series() -> None:
    q = summarize(evals([0.9, 0.7, 0.6]))
    assert (q.swd, q.previous_swd, q.trend) == (0.6, 0.7, "down")
    assert (q.best_step, q.best_swd, q.evals_since_best) == (300, 0.6, 0)
    assert q.verdict == "improving"
    q = summarize(evals([0.9, 0.5, 0.6, 0.7, 0.8, 0.55]))
    assert q.trend == "down" and q.best_step == 200 and q.evals_since_best == 4
    assert q.stalled and q.verdict == "stalled"            # default patience 4
    q = summarize(evals([0.9, 0.5, 0.6, 0.7, 0.8]))
    assert q.trend == "up" and q.evals_since_best == 3 and q.verdict == "improving"
    assert summarize(evals([0.5, 0.5])).trend == "flat"


def test_the_trainers_fields_win_over_the_series() -> None:
    rows = evals([0.9, 0.7])
    rows[-1].update(best_step=100, best_swd=0.9, evals_since_best=2, patience=2)
    q = summarize(rows)
    assert (q.best_step, q.best_swd, q.patience) == (100, 0.9, 2) and q.stalled
    # status.json's own word decides when present
    assert not summarize(rows, {"stalled": False, "best_step": 100}).stalled
    assert summarize(evals([0.9, 0.7]), {"stalled": True}).verdict == "stalled"


def test_rows_without_swd_are_ignored() -> None:
    rows = [{"kind": "eval", "step": 10, "psnr": 11.0}, *evals([0.8])]
    q = summarize(rows)
    assert q.step == 100 and q.swd == 0.8 and q.trend == ""


def test_several_draws_give_their_count_and_spread() -> None:
    """With --eval-draws the row's swd is the mean; the summary keeps how many and how far
    apart they were, so a reader can tell a change from a draw's noise."""
    rows = evals([0.9, 0.7])
    rows[-1]["swd_draws"] = [0.6, 0.8, 0.7]
    q = summarize(rows)
    assert q.swd == 0.7 and q.draws == 3 and q.swd_sd is not None
    assert abs(q.swd_sd - 0.1) < 1e-9
    one = summarize(evals([0.9, 0.7]))
    assert one.draws == 1 and one.swd_sd is None
    for odd in (0.7, "0.6,0.8", None, [0.7, "x"]):       # a hand-edited row: read as one draw
        rows[-1]["swd_draws"] = odd
        assert summarize(rows).swd_sd is None and summarize(rows).draws == 1


def test_the_jobs_pane_says_the_score_is_a_mean_of_draws() -> None:
    from tui.widgets.curves import quality_text
    rows = evals([0.9, 0.7])
    assert "draws" not in quality_text(summarize(rows))
    rows[-1]["swd_draws"] = [0.6, 0.8, 0.7]
    assert "SWD the mean of 3 draws, sd 0.1" in quality_text(summarize(rows))
