"""Local model registry operations: deploy a finished job's export as a version of a name.

A version points at jobs/JOB_ID/model (nothing is copied), so deploying is instant and a
model's provenance is its job dir. The seed's create_model.sh refused unfinished or failed
jobs; so do we, with the reason and the way out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import InvalidInput, InvalidState, NotFound
from core.jobdir import JobDir
from core.registry import Registry, parse_model_ref, valid_name
from core.types import Job, JobState, ModelVersion
from trainer.contract import MODEL, SAVED_MODEL



def check_name(name: str) -> str:
    if not valid_name(name, 63):
        raise InvalidInput(f"{name!r} is not a usable model name.",
                           "Use letters, digits, '-', '_' or '.', starting with a letter or digit (at most 63).")
    return name


def metrics_of(jd: JobDir) -> dict[str, Any]:
    """swd/psnr/ssim of the job's last evaluation (genml.json first, then metrics.jsonl)."""
    info = jd.model_info()
    metrics = dict(info.get("metrics") or {})
    last = jd.metrics().last_eval
    for k in ("swd", "psnr", "ssim", "step"):
        if k not in metrics and k in last:
            metrics[k] = last[k]
    if "step" not in metrics and info.get("step") is not None:
        metrics["step"] = info["step"]
    return metrics


def deploy(registry: Registry, job: Job, name: str | None = None) -> ModelVersion:
    if job.state.active:
        raise InvalidState(f"Job {job.id} is still {job.state.short}; only a finished job can be deployed.",
                           f"Wait for it (`genml jobs logs {job.id} -f`), then deploy.")
    if job.state is JobState.FAILED:
        raise InvalidState(f"Job {job.id} FAILED, so it has no model to deploy.",
                           f"See why with `genml jobs show {job.id}`; `genml jobs resume {job.id}` continues it.")
    if job.state is JobState.CANCELLED:
        raise InvalidState(f"Job {job.id} was CANCELLED before it exported a model.",
                           f"Finish it with `genml jobs resume {job.id}`, then deploy.")
    if job.backend != "local":
        raise InvalidState(f"Job {job.id} ran on {job.backend}.", "Deploy it with --backend vertex.")
    jd = JobDir(job.job_dir)
    if not jd.has_model():
        raise NotFound(f"Job {job.id} has no exported model in {Path(job.job_dir) / MODEL}.",
                       "The export may have been removed; resume or retrain the job.")
    name = check_name(name or job.dataset)
    info = jd.model_info()
    return registry.add_model_version(name, job.id, str(Path(job.job_dir) / MODEL), backend="local",
                                      metrics=metrics_of(jd), info=info)


def get(registry: Registry, ref: str) -> ModelVersion:
    name, version = parse_model_ref(ref)
    return registry.get_model(name, version)


def get_deployed(registry: Registry, ref: str) -> ModelVersion:
    mv = get(registry, ref)
    if not mv.deployed:
        raise InvalidState(f"Model {mv.ref} is undeployed.",
                           f"Deploy its job again (`genml models deploy {mv.job_id} --name {mv.name}`), "
                           "or use another version from `genml models list`.")
    if not (Path(mv.path) / SAVED_MODEL).exists():
        raise NotFound(f"Model {mv.ref} points at {mv.path}, which has no SavedModel any more.",
                       f"Its job dir was removed; `genml models rm {mv.ref}` clears the entry.")
    return mv


def undeploy(registry: Registry, ref: str) -> ModelVersion:
    mv = get(registry, ref)
    registry.update_model(mv.name, mv.version, deployed=False)
    return registry.get_model(mv.name, mv.version)


def remove(registry: Registry, ref: str) -> int:
    name, version = parse_model_ref(ref)
    return registry.remove_model(name, version)
