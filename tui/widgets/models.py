"""Pane 3: models. List; deploy from a finished job, undeploy, delete; enter opens the generator."""
from __future__ import annotations

import time
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.widgets import Static

from core.multi import backend_cell
from core.types import JobState, ModelVersion
from tui.actions import Action
from tui.screens.dialogs import DeployRequest
from tui.widgets.pane import ListPane
from tui.widgets.table import FilterTable, backend_markup

WELCOME = """[b]No models yet.[/b]

A model comes from a finished training job.

  [b]D[/b]  deploy a finished job as a model

No finished job? Press [b]2[/b] and start one with [b]n[/b].
"""


def _num(v: Any, fmt: str) -> str:
    return fmt.format(v) if isinstance(v, (int, float)) else "-"


def model_row(m: ModelVersion, backend: str | None = None) -> tuple[Any, ...]:
    """One row; `backend` is the backend cell when it says more than m.backend (core.multi.backend_cell)."""
    return (m.name, f"v{m.version}", m.job_id, _num(m.metrics.get("swd"), "{:.3f}"),
            _num(m.metrics.get("psnr"), "{:.1f}"),
            "[green]yes[/]" if m.deployed else (f"[red]{m.deployed_label}[/]" if m.missing else "no"),
            backend_markup(m.backend, backend))


class ModelsPane(ListPane[ModelVersion]):
    TITLE = "Models"
    ACTIONS = (
        Action("deploy", "D", "Deploy job", "Deploy a finished job as a model"),
        Action("undeploy", "u", "Undeploy", "Undeploy the selected model"),
        Action("delete", "x,delete", "Delete", "Delete the selected model version"),
        Action("open", "o,enter", "Open in generator", "Open the selected model in the generator"),
    )

    def compose(self) -> ComposeResult:
        yield Static(WELCOME, id="welcome", classes="welcome")
        yield FilterTable(["name", "version", "source job", "SWD", "PSNR", "deployed", "backend"], id="models",
                          classes="body-table")
        yield Static("", id="model-detail", classes="model-detail")

    def fetch(self) -> list[ModelVersion]:
        return self.backend.list_models()

    def apply(self, models: list[ModelVersion]) -> None:
        self.records = {m.ref: m for m in models}
        self.query_one("#welcome").display = not models
        self.query_one(FilterTable).display = bool(models)
        self.query_one("#model-detail").display = bool(models)
        self.query_one(FilterTable).set_rows([(m.ref, model_row(m, backend_cell(self.backend, m))) for m in models])
        self._detail(self.query_one(FilterTable).current_key)

    @on(FilterTable.Selected)
    def _selected(self, event: FilterTable.Selected) -> None:
        self._detail(event.key)

    def _detail(self, ref: str | None) -> None:
        m = self.records.get(ref or "")
        if m is None:
            self.query_one("#model-detail", Static).update("")
            return
        info = ", ".join(f"{k} {v}" for k, v in m.info.items() if not isinstance(v, (dict, list)))
        self.query_one("#model-detail", Static).update(
            f"[b]{m.ref}[/b]  from job {m.job_id}  created {time.strftime('%Y-%m-%d %H:%M', time.localtime(m.created))}"
            f"\n[dim]{m.path}[/dim]\n{info}\n[dim]enter or o: open in the generator[/dim]")

    @on(FilterTable.Activated)
    def _activated(self, event: FilterTable.Activated) -> None:
        self.genml.open_generator(event.key)

    def action_open(self) -> None:
        m = self.current()
        if m is not None:
            self.genml.open_generator(m.ref)

    def action_deploy(self) -> None:
        from tui.screens.dialogs import DeployDialog
        backend = self.backend

        def finished() -> list[Any]:
            return [j for j in backend.list_jobs() if j.state is JobState.SUCCEEDED]

        def choose(jobs: list[Any]) -> None:
            if not jobs:
                self.app.notify("No finished job to deploy yet.", severity="warning")
                return
            options = [(f"{j.id}  ({j.dataset}, step {j.step})", j.id) for j in jobs]
            self.app.push_screen(DeployDialog(options, jobs[0].dataset), self._deploy)
        self.call_backend(finished, choose)

    def _deploy(self, answer: DeployRequest | None) -> None:
        if answer is None:
            return
        self.call_backend(lambda: self.backend.deploy(answer.job_id, answer.name),
                          lambda m: self.app.notify(f"Deployed {m.ref}. Press enter on it (or 4) to generate.",
                                                    title="Model deployed"))

    def action_undeploy(self) -> None:
        m = self.current()
        if m is not None:
            self.call_backend(lambda: self.backend.undeploy(m.ref),
                              lambda mv: self.app.notify(f"Undeployed {mv.ref}."))

    def action_delete(self) -> None:
        m = self.current()
        if m is None:
            return
        from tui.screens.dialogs import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_backend(lambda: self.backend.remove_model(m.ref),
                                  lambda _: self.app.notify(f"Deleted {m.ref}."))
        self.app.push_screen(ConfirmDialog(f"Delete model [b]{m.ref}[/b]? (its job dir stays)"), answered)
