"""Pane 2: jobs. Live list, log tail, loss curves, quality, latest samples; new, cancel,
resume, TensorBoard; a bell and a notification when a job finishes or fails."""
from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from core.jobdir import JobDir, Metrics, tensorboard_dir
from core.multi import backend_cell
from core.quality import QualitySummary, summarize
from core.types import Job, JobState
from tui.actions import Action
from tui.screens.dialogs import NewJobRequest
from tui.images import ImageView, split_grid, to_pil
from tui.widgets.curves import Curves, swd_cell
from tui.widgets.logview import LogPanel
from tui.widgets.pane import ListPane
from tui.widgets.table import FilterTable, backend_markup

WELCOME = """[b]No training jobs yet.[/b]

  [b]n[/b]  start a job: pick a dataset and a preset

No dataset yet? Press [b]1[/b] and make the demo dataset with [b]d[/b].
"""


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def job_row(j: Job, quality: QualitySummary | None = None, backend: str | None = None) -> tuple[Any, ...]:
    """One row; `backend` is the backend cell when it says more than j.backend (core.multi.backend_cell)."""
    state = j.state.short
    style = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "CANCELLED": "yellow"}.get(state, "")
    return (j.id, j.dataset, f"[{style}]{state}[/]" if style else state, f"{j.step}/{j.max_steps or '?'}",
            swd_cell(quality or QualitySummary()),
            f"{j.images_per_sec:.0f}" if j.images_per_sec else "-", fmt_eta(j.eta_seconds),
            backend_markup(j.backend, backend))


def sample_cells(png: bytes, config: dict[str, Any]) -> list[Any]:
    """A samples/step-N.png grid cut into its images: sample_grid x sample_grid, no gaps
    (trainer/jobdir.image_grid), the grid size from the job's config.json."""
    image = to_pil(png)
    trainer = config.get("trainer", {}) if isinstance(config, dict) else {}
    columns = trainer.get("sample_grid")
    if not isinstance(columns, int) or columns < 1:
        size = trainer.get("image_size")
        columns = image.width // size if isinstance(size, int) and size > 0 else 0
    if columns <= 1 or image.width % columns:
        return [image]
    return split_grid(image, columns)


@dataclass
class Detail:
    job: Job
    metrics: Metrics | None = None
    status: dict[str, Any] = field(default_factory=dict)
    sample_name: str | None = None
    sample: list[Any] | None = None           # the latest sample grid, cut into its images
    log: list[str] = field(default_factory=list)
    reset_log: bool = False


class JobsPane(ListPane[Job]):
    TITLE = "Jobs"
    ACTIONS = (
        Action("new", "n", "New job", "Start a new training job"),
        Action("cancel", "c", "Cancel job", "Cancel the selected job"),
        Action("resume", "R", "Resume", "Resume the selected job"),
        Action("tensorboard", "t", "TensorBoard", "Open TensorBoard for the selected job"),
        Action("focus_log", "l", "Log", "Show the selected job's log"),
        Action("zoom", "z", "Zoom", "Zoom into the latest samples, one at a time"),
    )

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._seen_states: dict[str, JobState] = {}
        self._selected: str | None = None
        self._dirs: dict[str, JobDir] = {}
        self._log_cursor: Any = None
        self._log_for: str | None = None
        self._sample_name: str | None = None
        self._tensorboards: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        self._quality: dict[str, QualitySummary] = {}     # by job id; read in the poll worker
        self._final: set[str] = set()                     # ended jobs whose quality was read after the end

    def compose(self) -> ComposeResult:
        yield Static(WELCOME, id="welcome", classes="welcome")
        with Vertical(id="body", classes="body jobs-body"):
            yield FilterTable(["id", "dataset", "state", "step", "SWD", "img/s", "ETA", "backend"], id="jobs")
            with Horizontal(id="detail", classes="detail"):
                yield LogPanel(id="log")
                with Vertical(id="side"):
                    yield Curves()
                    yield ImageView("no samples yet", id="sample")

    # ---- polling (one read per tick: the list, and the selected job's detail) ----------
    def _jobdir(self, job: Job) -> JobDir:
        jd = self._dirs.get(job.id)
        if jd is None:
            jd = self._dirs[job.id] = self.backend.job_dir(job)
        return jd

    def _read_quality(self, jobs: list[Job]) -> None:
        """The list's SWD column: local job dirs while they run, and once after they end.

        metrics.jsonl is read incrementally (only what was appended); a job dir in a bucket
        is read only while its job is selected, not for every row every second.
        """
        for j in jobs:
            if not j.job_dir or "://" in j.job_dir or j.id in self._final:
                continue
            try:
                jd = self._jobdir(j)
                self._quality[j.id] = summarize(jd.metrics().eval, jd.status())
            except (OSError, ValueError):
                continue
            if j.state.terminal:
                self._final.add(j.id)       # read once more after it ended, then never again

    def fetch(self) -> tuple[list[Job], Detail | None]:
        jobs = self.backend.list_jobs()
        self._read_quality(jobs)
        key = self._selected
        job = next((j for j in jobs if j.id == key), None)
        if job is None:
            return jobs, None
        detail = Detail(job)
        if job.job_dir:
            jd = self._jobdir(job)
            try:
                detail.metrics = jd.metrics()
                detail.status = jd.status()
                self._quality[job.id] = summarize(detail.metrics.eval, detail.status)
                names = jd.sample_names()
                if names and names[-1] != self._sample_name:
                    detail.sample_name = names[-1]
                    detail.sample = sample_cells(jd.read_sample(names[-1]), jd.config())
            except (OSError, ValueError):
                pass
        if self._log_for != job.id:
            self._log_for, self._log_cursor, detail.reset_log = job.id, None, True
        try:
            chunk = self.backend.read_log(job.id, self._log_cursor)
            self._log_cursor = chunk.cursor
            detail.log = chunk.lines
        except NotImplementedError:
            pass
        return jobs, detail

    def apply(self, data: tuple[list[Job], Detail | None]) -> None:
        jobs, detail = data
        self._notify_transitions(jobs)
        self.records = {j.id: j for j in jobs}
        empty = not jobs
        self.query_one("#welcome").display = empty
        self.query_one("#body").display = not empty
        table = self.query_one(FilterTable)
        table.set_rows([(j.id, job_row(j, self._quality.get(j.id), backend_cell(self.backend, j))) for j in jobs])
        if table.current_key != self._selected:
            self._selected = table.current_key
            self.poll_soon()
        if detail is not None and detail.job.id == self._selected:
            self._show_detail(detail)

    def poll_soon(self) -> None:
        self.call_after_refresh(self.poll_now)

    def _notify_transitions(self, jobs: list[Job]) -> None:
        for j in jobs:
            before = self._seen_states.get(j.id)
            self._seen_states[j.id] = j.state
            if before is not None and not before.terminal and j.state.terminal:
                self.app.bell()
                if j.state is JobState.SUCCEEDED:
                    self.app.notify(f"Job {j.id} finished. Press 3, then D, to deploy it.", title="Job finished")
                elif j.state is JobState.FAILED:
                    self.app.notify(f"Job {j.id} failed: {j.error or 'see its log'}", title="Job failed",
                                    severity="error", timeout=15)
                else:
                    self.app.notify(f"Job {j.id} was cancelled.", title="Job cancelled", severity="warning")

    def _show_detail(self, d: Detail) -> None:
        log = self.query_one(LogPanel)
        if d.reset_log:
            log.view.clear()
            self._sample_name = None
            self.query_one("#sample", ImageView).set_image(None, "no samples yet")
        if d.log:
            log.view.append(d.log)
        if d.reset_log or d.log:
            log.update_status()
        if d.metrics is not None:
            self.query_one(Curves).update_metrics(d.metrics, d.status)
        if d.sample is not None and d.sample_name is not None and d.sample_name != self._sample_name:
            self._sample_name = d.sample_name
            step = d.sample_name.removeprefix("step-").removesuffix(".png").lstrip("0") or "0"
            self.query_one("#sample", ImageView).set_cells(d.sample, title=f"{d.job.id}: samples at step {step}")
        self.query_one("#log").border_title = f"{d.job.id}  {d.job.state.short}"
        if d.job.error:
            self.query_one("#log").border_subtitle = d.job.error[:80]

    @on(FilterTable.Selected)
    def _row(self, event: FilterTable.Selected) -> None:
        if event.key != self._selected:
            self._selected = event.key
            self.poll_now()

    # ---- actions ------------------------------------------------------------------------
    def action_zoom(self) -> None:
        self.genml.zoom(self.query_one("#sample", ImageView))

    def action_focus_log(self) -> None:
        self.query_one(LogPanel).view.focus()

    def action_new(self, dataset: str | None = None) -> None:
        from tui.screens.dialogs import NewJobDialog
        backend = self.backend

        def names() -> dict[str, int]:
            return {d.name: d.image_size for d in backend.list_datasets()}

        def open_dialog(ds: dict[str, int]) -> None:
            self.app.push_screen(NewJobDialog(ds, dataset=dataset), self._submit)
        self.call_backend(names, open_dialog)

    def _submit(self, answer: NewJobRequest | None) -> None:
        if answer is None:
            return

        def started(job: Job) -> None:
            self.app.notify(f"Started {job.id} on {job.dataset} ({answer.options.preset}).", title="Job started")
            self._selected = job.id
            self.call_after_refresh(lambda: self.query_one(FilterTable).select(job.id))
        self.call_backend(lambda: self.backend.submit_job(answer.dataset, answer.options), started)

    def action_cancel(self) -> None:
        job = self.current()
        if job is None:
            return
        if job.state.terminal:
            self.app.notify(f"Job {job.id} is already {job.state.short.lower()}.", severity="warning")
            return
        from tui.screens.dialogs import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_backend(lambda: self.backend.cancel_job(job.id),
                                  lambda j: self.app.notify(f"Cancelling {j.id}."))
        self.app.push_screen(ConfirmDialog(f"Cancel job [b]{job.id}[/b]? It can be resumed later.",
                                           ok="Cancel job"), answered)

    def action_resume(self) -> None:
        job = self.current()
        if job is None:
            return
        self.call_backend(lambda: self.backend.resume_job(job.id),
                          lambda j: self.app.notify(f"Resumed {j.id}."))

    def action_tensorboard(self) -> None:
        job = self.current()
        if job is None or not job.job_dir:
            return
        running = self._tensorboards.get(job.id)
        if running is not None and running[0].poll() is None:
            self.app.notify(f"TensorBoard for {job.id} is already running: {running[1]}")
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        logdir = tensorboard_dir(job.job_dir)
        url = f"http://127.0.0.1:{port}/"
        try:
            proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
                                     "--host", "127.0.0.1", "--port", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            self.app.notify(f"TensorBoard did not start: {exc}", severity="error")
            return
        self._tensorboards[job.id] = (proc, url)
        self.app.notify(f"TensorBoard for {job.id}: {url}\n(over SSH: ssh -L {port}:127.0.0.1:{port} …)",
                        title="TensorBoard", timeout=20)

    def on_unmount(self) -> None:
        for proc, _ in self._tensorboards.values():
            if proc.poll() is None:
                proc.terminate()
