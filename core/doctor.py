"""`genml doctor`: check the local registry against the workspace folders, and mend it.

The registry (SQLite) and the folders (datasets/NAME, jobs/ID) can drift apart: a
damaged registry moved aside, a folder deleted by hand, a crash between a rename and an
insert. The folders describe themselves (a dataset's manifest.json, a job dir's
config.json and status.json), so the registry can be rebuilt from them. `check` only
looks; with `fix`:

- a registry that cannot be opened is moved aside (registry.sqlite.damaged-TIME) and a new
  one created;
- datasets and jobs found on disk but not registered are registered again (a job whose
  process is gone is recorded FAILED, so `genml jobs resume` can continue it);
- registered datasets whose folder is gone are dropped from the registry;
- leftovers of interrupted builds in tmp/ are deleted;
- a workspace other users can read is made private (0700).

Models cannot be re-registered by name (only the registry knows the names), so a
finished job whose model no version points at is reported with the command to deploy it.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import GenmlError
from core.jobdir import JobDir
from core.registry import Registry, valid_name
from core.types import Dataset, Job, JobState
from core.workspace import Workspace
from trainer.contract import (CONFIG, DATASET_MANIFEST, DEFAULT_CROP, DEFAULT_IMAGE_SIZE, DEFAULT_PRESET,
                              SAVED_MODEL, STATUS)


@dataclass
class Finding:
    kind: str          # "registry", "dataset", "job", "model", "tmp", "permissions"
    what: str          # the thing, e.g. a dataset name
    problem: str       # a sentence for a person
    action: str = ""   # what --fix did, or the command that mends it
    fixed: bool = False


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.fixed for f in self.findings)

    def add(self, *args: Any, **kw: Any) -> Finding:
        f = Finding(*args, **kw)
        self.findings.append(f)
        return f


def check(ws: Workspace, fix: bool = False) -> Report:
    report = Report()
    _permissions(ws, report, fix)
    reg = _open_registry(ws, report, fix)
    if reg is None:
        return report
    try:
        _datasets(ws, reg, report, fix)
        _jobs(ws, reg, report, fix)
        _models(reg, report)
        _tmp(ws, report, fix)
    finally:
        reg.close()
    return report


def _permissions(ws: Workspace, report: Report, fix: bool) -> None:
    if ws.open_to_others():
        mode = ws.root.stat().st_mode & 0o777
        f = report.add("permissions", str(ws.root), f"the workspace is mode {mode:o}: other users can read "
                                                    "its photos and models", "chmod 700 " + str(ws.root))
        if fix:
            os.chmod(ws.root, 0o700)
            f.action, f.fixed = "made private (0700)", True


def _open_registry(ws: Workspace, report: Report, fix: bool) -> Registry | None:
    try:
        return Registry(ws.registry_path)
    except GenmlError as exc:
        f = report.add("registry", str(ws.registry_path), f"cannot be opened: {exc.message}",
                       "genml doctor --fix (moves it aside and rebuilds it from the folders)")
        if not fix:
            return None
    aside = ws.registry_path.with_name(f"{ws.registry_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(ws.registry_path) + suffix)
        if p.exists():
            os.replace(p, Path(str(aside) + suffix))
    f.action, f.fixed = f"moved to {aside.name}; a new registry was rebuilt from the folders", True
    return Registry(ws.registry_path)


def _datasets(ws: Workspace, reg: Registry, report: Report, fix: bool) -> None:
    registered = {d.name: d for d in reg.list_datasets()}
    for d in registered.values():
        if d.backend == "local" and not (Path(d.path) / DATASET_MANIFEST).exists():
            f = report.add("dataset", d.name, f"registered, but {d.path} has no {DATASET_MANIFEST}",
                           f"genml dataset rm {d.name}")
            if fix:
                reg.remove_dataset(d.name)
                f.action, f.fixed = "removed from the registry", True
    if not ws.datasets_dir.is_dir():
        return
    for folder in sorted(ws.datasets_dir.iterdir()):
        if folder.name in registered or not folder.is_dir():
            continue
        manifest = _read_json(folder / DATASET_MANIFEST)
        if not manifest or not valid_name(folder.name):
            report.add("dataset", folder.name, f"{folder} is not a complete dataset (no readable {DATASET_MANIFEST})",
                       f"delete {folder} by hand if nothing needs it")
            continue
        f = report.add("dataset", folder.name, f"{folder} is not in the registry", "genml doctor --fix")
        if fix:
            counts, opts = manifest.get("counts", {}), manifest.get("options", {})
            reg.add_dataset(Dataset(name=folder.name, path=str(folder), created=float(manifest.get("created") or
                                                                                     folder.stat().st_mtime),
                                    train_count=int(counts.get("train", 0)),
                                    validation_count=int(counts.get("validation", 0)),
                                    skipped_count=int(counts.get("skipped", 0)),
                                    duplicate_count=int(counts.get("duplicates", 0)),
                                    crop=str(opts.get("crop", DEFAULT_CROP)),
                                    image_size=int(opts.get("image_size", DEFAULT_IMAGE_SIZE))))
            f.action, f.fixed = "registered again", True


def _jobs(ws: Workspace, reg: Registry, report: Report, fix: bool) -> None:
    registered = {j.id: j for j in reg.list_jobs()}
    for j in registered.values():
        if j.backend == "local" and j.job_dir and not Path(j.job_dir).is_dir():
            report.add("job", j.id, f"registered, but its job dir {j.job_dir} is gone",
                       "nothing to resume or deploy from; it can be ignored")
    if not ws.jobs_dir.is_dir():
        return
    for folder in sorted(ws.jobs_dir.iterdir()):
        if folder.name in registered or not folder.is_dir():
            continue
        config, status = _read_json(folder / CONFIG), _read_json(folder / STATUS)
        if not config:
            report.add("job", folder.name, f"{folder} has no readable {CONFIG}", f"delete {folder} by hand")
            continue
        f = report.add("job", folder.name, f"{folder} is not in the registry", "genml doctor --fix")
        if not fix:
            continue
        try:
            state = JobState.parse(str(status.get("state") or JobState.FAILED.value))
        except ValueError:
            state = JobState.FAILED
        error = str(status.get("error") or "")
        if not state.terminal:             # its process went with the old registry's record of it
            state, error = JobState.FAILED, "found on disk by genml doctor; its process was gone (resume it)"
        trainer = config.get("trainer", {})
        preset = str(trainer.get("preset", DEFAULT_PRESET))
        max_steps = int(trainer.get("max_steps") or status.get("max_steps") or 0)
        args = ["--preset", preset] + (["--max-steps", str(max_steps)] if max_steps else [])
        reg.add_job(Job(id=folder.name, dataset=str(config.get("dataset", {}).get("name", "")), state=state,
                        backend="local", created=folder.stat().st_mtime, ended=time.time() if state.terminal else None,
                        job_dir=str(folder), options={"preset": preset, "max_steps": max_steps, "args": args},
                        error=error, step=int(status.get("step") or 0), max_steps=max_steps))
        f.action, f.fixed = f"registered again ({state.short})", True


def _models(reg: Registry, report: Report) -> None:
    models = reg.list_models()
    used = {m.job_id for m in models}
    for m in models:
        if m.backend == "local" and not (Path(m.path) / SAVED_MODEL).exists():
            report.add("model", m.ref, f"registered, but {m.path} holds no SavedModel",
                       f"genml models rm {m.ref}")
    for j in reg.list_jobs():
        if j.backend == "local" and j.state is JobState.SUCCEEDED and j.id not in used \
                and j.job_dir and JobDir(j.job_dir).has_model():
            report.add("model", j.id, "a finished job's model is not deployed under any name",
                       f"genml models deploy {j.id} --name NAME")


def _tmp(ws: Workspace, report: Report, fix: bool) -> None:
    if not ws.tmp_dir.is_dir():
        return
    for p in sorted(ws.tmp_dir.iterdir()):
        if not (p.name.startswith("trash-") or p.name.endswith(".building")):
            continue
        if p.name.endswith(".building") and _build_running(ws, p.name[len("dataset-"):-len(".building")]):
            continue
        f = report.add("tmp", p.name, "left over from an interrupted build or removal", "genml doctor --fix")
        if fix:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            f.action, f.fixed = "deleted", True


def _build_running(ws: Workspace, name: str) -> bool:
    """Another process holds the dataset's build lock (core/datasets/catalog.py's lockf)."""
    import fcntl
    try:
        with open(ws.tmp_dir / f"dataset-{name}.lock", "a") as f:
            try:
                fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.lockf(f.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}
