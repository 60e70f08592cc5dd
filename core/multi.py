"""One list for local and cloud work: every configured backend behind one Backend.

A person with a local job and a Vertex AI job running wants both in one jobs list and
one models list, and the logs and actions of each row to go to the backend that owns it,
without choosing a backend first. `AllBackends` does that for the CLI (`genml jobs list`
with no --backend, or --backend all) and the TUI:

- lists merge the local backend's rows with each Vertex AI profile's; each profile is
  read in its own thread with a deadline, so a profile that cannot be reached (no
  credentials, no network, an API that hangs) shows its last-known rows, is reported in
  `status()` and through `on_notice`, and never holds up the local rows;
- calls about one job or model (show, logs, cancel, resume, deploy, undeploy, predict)
  go to the backend that owns it, found from the shared registry;
- everything else (datasets, new jobs, backend-specific commands) goes to the primary
  backend: the one --backend or the config names.

All backends share one workspace and one registry (core/registry.py), which is what
makes the owner of each row known without asking the cloud.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core import config as config_mod
from core.backend import Backend, BatchResult, Capabilities, LogChunk, Predictor, ProgressFn, TrainOptions
from core.jobdir import JobDir
from core.errors import GenmlError, NotFound
from core.registry import Registry, parse_model_ref
from core.types import Dataset, Job, ModelVersion
from core.workspace import Workspace

LIST_DEADLINE_S = 5.0       # how long a list waits for one cloud profile before showing what it knew


@dataclass
class _Fetch:
    """One profile's list running in a daemon thread (a hung cloud call must not keep the
    CLI from exiting), and whether its answer has been shown."""

    future: Future[Any] = field(default_factory=Future)
    started: float = field(default_factory=time.monotonic)
    used: bool = False


@dataclass
class ProfileStatus:
    name: str
    kind: str                  # "local" or "vertex"
    reachable: bool = True
    message: str = ""


def vertex_profiles(cfg: config_mod.Config) -> list[str]:
    """The configured Vertex AI profiles, in the config file's order (and `vertex` if it is the default)."""
    names = [n for n, p in cfg.profiles.items() if p.get("backend", n) == "vertex"]
    if cfg.backend == "vertex" and "vertex" not in names:
        names.append("vertex")
    return names


def owner_of(item: Job | ModelVersion, cfg: config_mod.Config) -> str:
    """The profile a job or model belongs to: "local", the profile recorded with it, or the
    Vertex AI profile with the same project and region (records from before profiles were saved)."""
    if item.backend != "vertex":
        return "local"
    remote = item.remote or {}
    if remote.get("profile"):
        return str(remote["profile"])
    names = vertex_profiles(cfg)
    for n in names:
        p = cfg.profiles.get(n, {})
        if p.get("project") == remote.get("project") and p.get("region", "us-central1") == remote.get("region"):
            return n
    return names[0] if names else "vertex"


class AllBackends(Backend):
    """A Backend over the local backend and every Vertex AI profile (see the module docstring)."""

    def __init__(self, primary: str | None = None, workspace: Workspace | None = None,
                 cfg: config_mod.Config | None = None,
                 opener: Callable[[str], Backend] | None = None,
                 deadline_s: float = LIST_DEADLINE_S) -> None:
        from core.backends import open_backend
        self.cfg = cfg or config_mod.load()
        self.ws = workspace or Workspace.open()
        self._open = opener or (lambda name: open_backend(name, self.ws, self.cfg))
        self.primary_name = primary or self.cfg.backend
        self.deadline_s = deadline_s
        self.registry = Registry(self.ws.registry_path)
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._fetches: dict[tuple[str, str], _Fetch] = {}
        self._status: dict[str, ProfileStatus] = {}
        self.on_notice: Callable[[str], None] = lambda text: None
        self._vertex = vertex_profiles(self.cfg)
        if self.cfg.profile(self.primary_name)["backend"] == "vertex" and self.primary_name not in self._vertex:
            self._vertex.append(self.primary_name)
        self.primary = self.backend(self.primary_name)
        self.name = self.primary.name

    # ---- which backend ----------------------------------------------------------------
    def profiles(self) -> list[str]:
        return ["local", *self._vertex]

    def backend(self, profile: str) -> Backend:
        """The backend of one profile, opened once (opening does not touch the network)."""
        with self._lock:
            if profile not in self._backends:
                b = self._open(profile)
                b.set_notice_handler(lambda text: self.on_notice(text))
                self._backends[profile] = b
            return self._backends[profile]

    def for_job(self, job_id: str) -> Backend:
        try:
            job = self.registry.get_job(job_id)
        except NotFound:
            return self.primary            # let it say what is wrong
        return self.backend(owner_of(job, self.cfg))

    def for_model(self, ref: str) -> Backend:
        name, version = parse_model_ref(ref)
        cands = [m for m in self.registry.list_models() if m.name == name and (version is None or m.version == version)]
        owners = {owner_of(m, self.cfg) for m in cands}
        if len(owners) == 1:
            return self.backend(owners.pop())
        if self.primary_name in owners or not owners:
            return self.primary
        deployed = [m for m in cands if m.deployed]
        return self.backend(owner_of((deployed or cands)[-1], self.cfg))

    def __getattr__(self, attr: str) -> Any:
        """Anything beyond the Backend protocol belongs to the primary backend."""
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.primary, attr)

    # ---- the primary backend: what it offers, datasets, new jobs ------------------------
    def capabilities(self) -> Capabilities:
        return self.primary.capabilities()

    def set_notice_handler(self, fn: Callable[[str], None]) -> None:
        self.on_notice = fn

    def list_datasets(self) -> list[Dataset]:
        return self.primary.list_datasets()

    def get_dataset(self, name: str) -> Dataset:
        return self.primary.get_dataset(name)

    def dataset_manifest(self, name: str) -> dict[str, Any]:
        return self.primary.dataset_manifest(name)

    def contact_sheet(self, name: str) -> bytes | None:
        return self.primary.contact_sheet(name)

    def add_dataset(self, source: Path, name: str, **kwargs: Any) -> Dataset:
        return self.primary.add_dataset(source, name, **kwargs)

    def make_demo_dataset(self, name: str = "demo", count: int = 2000, **kwargs: Any) -> Dataset:
        return self.primary.make_demo_dataset(name, count, **kwargs)

    def remove_dataset(self, name: str, force: bool = False) -> None:
        self.primary.remove_dataset(name, force)

    def submit_job(self, dataset: str, options: TrainOptions) -> Job:
        return self.primary.submit_job(dataset, options)

    def reconcile(self) -> list[str]:
        return self.backend("local").reconcile()

    def job_dir(self, job: Job) -> JobDir:
        return self.backend(owner_of(job, self.cfg)).job_dir(job)

    # ---- lists ----------------------------------------------------------------------------
    def status(self) -> list[ProfileStatus]:
        """Each profile and whether the last list reached it."""
        return [self._status.get(p, ProfileStatus(p, "local" if p == "local" else "vertex"))
                for p in self.profiles()]

    def _mark(self, profile: str, error: str) -> None:
        old = self._status.get(profile)
        st = ProfileStatus(profile, "local" if profile == "local" else "vertex", not error, error)
        self._status[profile] = st
        if error and (old is None or old.reachable or old.message != error):
            self.on_notice(f"The profile {profile!r} cannot be reached ({error}); its rows show what genml last "
                           "knew. `genml --backend " + profile + " vertex check` says why.")

    def _start(self, profile: str, call: Callable[[Backend], list[Any]]) -> _Fetch:
        f = _Fetch()

        def run() -> None:
            try:
                f.future.set_result(call(self.backend(profile)))
            except BaseException as exc:  # noqa: BLE001 - not swallowed: handed to the caller through the future
                f.future.set_exception(exc)
        threading.Thread(target=run, name=f"genml-list-{profile}", daemon=True).start()
        return f

    def _remote(self, profile: str, what: str, call: Callable[[Backend], list[Any]],
                cached: Callable[[], list[Any]], error_attr: str = "last_refresh_error") -> list[Any]:
        """One profile's list, within the deadline; its last-known rows when it fails or is slow.

        A list still running from an earlier call is not started twice: its rows are shown
        when it answers (a TUI polling every second or two picks them up on a later poll).
        """
        key = (profile, what)
        with self._lock:
            f = self._fetches.get(key)
            if f is None or (f.future.done() and f.used):
                f = self._start(profile, call)
                self._fetches[key] = f
                wait = self.deadline_s
            else:
                wait = 0.0         # still running, or answered and not shown yet
        try:
            rows = f.future.result(timeout=wait)
        except FutureTimeout:
            if time.monotonic() - f.started >= self.deadline_s:
                self._mark(profile, f"no answer within {self.deadline_s:g} s")
            return cached()
        except GenmlError as exc:
            f.used = True
            self._mark(profile, exc.message)
            return cached()
        except Exception as exc:  # noqa: BLE001 - a cloud profile must never take the local rows down with it
            f.used = True
            self._mark(profile, f"{type(exc).__name__}: {exc}")
            return cached()
        f.used = True
        # a Vertex AI backend shows cached rows when it cannot ask; it says why here
        error = str(getattr(self.backend(profile), error_attr, "") or "")
        self._mark(profile, error)
        return list(rows)

    def list_jobs(self) -> list[Job]:
        local = [j for j in self.backend("local").list_jobs() if j.backend == "local"]
        cloud: list[Job] = []
        for p in self._vertex:
            mine = [j for j in self.registry.list_jobs() if j.backend == "vertex" and owner_of(j, self.cfg) == p]
            rows = self._remote(p, "jobs", lambda b: b.list_jobs(), lambda m=mine: m)  # type: ignore[misc]  # default binds the loop value
            cloud += [j for j in rows if owner_of(j, self.cfg) == p]
        known = {*self.profiles()}
        orphans = [j for j in self.registry.list_jobs() if j.backend == "vertex" and owner_of(j, self.cfg) not in known]
        return sorted(local + cloud + orphans, key=lambda j: (j.created, j.id))

    def list_models(self) -> list[ModelVersion]:
        """Local models and every Vertex AI profile's, each profile's checked against Vertex AI
        within the deadline like its jobs (a Model or endpoint deleted outside genml shows
        so); a profile that cannot be reached shows its rows as last seen."""
        local = [m for m in self.backend("local").list_models() if m.backend == "local"]
        cloud: list[ModelVersion] = []
        for p in self._vertex:
            mine = [m for m in self.registry.list_models() if m.backend == "vertex" and owner_of(m, self.cfg) == p]
            rows = self._remote(p, "models", lambda b: b.list_models(), lambda m=mine: m,  # type: ignore[misc]  # default binds the loop value
                                error_attr="last_models_refresh_error")
            cloud += [m for m in rows if owner_of(m, self.cfg) == p]
        known = {*self.profiles()}
        orphans = [m for m in self.registry.list_models()
                   if m.backend == "vertex" and owner_of(m, self.cfg) not in known]
        return local + sorted(cloud + orphans, key=lambda m: (m.name, m.version))

    def owner(self, item: Job | ModelVersion) -> str:
        """The profile name for a row's backend column."""
        return owner_of(item, self.cfg)

    # ---- one job ----------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        return self.for_job(job_id).get_job(job_id)

    def cancel_job(self, job_id: str) -> Job:
        return self.for_job(job_id).cancel_job(job_id)

    def resume_job(self, job_id: str) -> Job:
        return self.for_job(job_id).resume_job(job_id)

    def read_log(self, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk:
        return self.for_job(job_id).read_log(job_id, cursor, max_lines)

    def deploy(self, job_id: str, name: str | None = None) -> ModelVersion:
        return self.for_job(job_id).deploy(job_id, name)

    # ---- one model ----------------------------------------------------------------------------
    def get_model(self, ref: str) -> ModelVersion:
        return self.for_model(ref).get_model(ref)

    def undeploy(self, ref: str) -> ModelVersion:
        return self.for_model(ref).undeploy(ref)

    def remove_model(self, ref: str) -> None:
        self.for_model(ref).remove_model(ref)

    def predictor(self, ref: str) -> Predictor:
        return self.for_model(ref).predictor(ref)

    def batch_predict(self, ref: str, input_path: Path, output_dir: Path, *,
                      progress: ProgressFn | None = None) -> BatchResult:
        return self.for_model(ref).batch_predict(ref, input_path, output_dir, progress=progress)


def primary(backend: Any) -> Any:
    """The backend new work goes to: itself, or the primary of an AllBackends."""
    return backend.primary if isinstance(backend, AllBackends) else backend


def unreachable(backend: Any) -> list[ProfileStatus]:
    """The profiles the last list could not reach (none for a single backend)."""
    return [st for st in backend.status() if not st.reachable] if isinstance(backend, AllBackends) else []


def backend_cell(backend: Any, item: Job | ModelVersion) -> str:
    """What a list shows in its backend column: the backend, and "as last seen" when the
    row's profile could not be reached by the last list (its row is the registry's copy)."""
    down = {st.name for st in unreachable(backend)}
    if down and owner_of(item, backend.cfg) in down:
        return f"{item.backend} (unreachable: as last seen)"
    return item.backend


def open_all(primary: str | None = None, workspace: Workspace | None = None,
             cfg: config_mod.Config | None = None, *, tui: bool = False) -> Backend:
    """AllBackends when a Vertex AI profile is configured (or named), else the plain backend.

    `primary` is where new work goes (None or "all": the config's default). The TUI waits
    at most a second for a cloud list (it polls again soon); the CLI waits LIST_DEADLINE_S.
    """
    cfg = cfg or config_mod.load()
    if primary == "all":
        primary = None
    kind = cfg.profile(primary)["backend"]
    if not vertex_profiles(cfg) and kind != "vertex":
        from core.backends import open_backend
        return open_backend(primary, workspace, cfg)
    return AllBackends(primary, workspace, cfg,
                       deadline_s=1.0 if tui else LIST_DEADLINE_S)
