"""`genml vertex smoke` / `make cloud-check`: one real round trip, then everything removed.

The only check that can catch what the stand-ins do not model (IAM, quotas, the real
containers, Cloud Storage FUSE, the serving container's TensorFlow). It is opt-in,
billable, skipped without credentials, and never run by CI: the tiny preset on the
smallest machine type, a deploy on the smallest serving machine, one prediction, then
the endpoint, the Model, the CustomJob, the job dir and the dataset are deleted, whatever
failed on the way. The expected cost is shown before anything starts.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.backend import TrainOptions
from core.errors import CloudError, GenmlError
from core.vertex import operations, preflight
from core.vertex import storage as gcs

# The functions below take the VertexBackend facade (typed Any: importing it here, even
# for type checking only, would make an import cycle with the facade that calls them).
VertexBackend = Any

TRAIN_MACHINE = "n1-standard-4"      # the smallest machine type genml's trainer is tried on
SERVE_MACHINE = "n1-standard-2"
DEMO_IMAGES = 64
# rough us-central1 list prices (USD per hour), for the estimate only; docs/vertex.md says where from
PRICE_PER_HOUR = {"n1-standard-2": 0.10, "n1-standard-4": 0.22, "n1-standard-8": 0.44}
TRAIN_MINUTES = 20                   # provisioning included
DEPLOY_MINUTES = 30                  # deploys take 5-20 minutes, then one prediction, then undeploy


def expected_cost() -> tuple[float, str]:
    """(dollars, the lines that explain them), shown before anything is started."""
    train = PRICE_PER_HOUR[TRAIN_MACHINE] * TRAIN_MINUTES / 60
    serve = PRICE_PER_HOUR[SERVE_MACHINE] * DEPLOY_MINUTES / 60
    total = train + serve + 0.01
    text = (f"training: {TRAIN_MACHINE} for up to ~{TRAIN_MINUTES} min  ~${train:.2f}\n"
            f"serving:  {SERVE_MACHINE} for up to ~{DEPLOY_MINUTES} min  ~${serve:.2f}\n"
            f"storage and logs: a few MB for minutes  <$0.01\n"
            f"expected total: about ${total:.2f} (rough list prices in us-central1; your region and "
            "discounts differ; see https://cloud.google.com/vertex-ai/pricing)")
    return total, text


@dataclass
class SmokeReport:
    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)     # what could not be deleted: delete it by hand

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.steps) and not self.left


def credentials_missing(backend: VertexBackend) -> str:
    """Why the smoke check must be skipped ("" when it can run)."""
    try:
        backend.settings.validate()
        backend.clients.credentials
    except GenmlError as exc:
        return exc.message
    return ""


def check(backend: VertexBackend, say: Callable[[str], None], confirm: Callable[[], bool]) -> bool | None:
    """The cost first; then skipped (None) without credentials or without a yes; else run it."""
    say(expected_cost()[1])
    missing = credentials_missing(backend)
    if missing:
        say(f"skipped: {missing}")
        return None
    if not confirm():
        say("Not started.")
        return None
    report = run(backend, say=say)
    if report.left:
        say("Delete these by hand (`genml vertex resources` lists what still bills):")
        for item in report.left:
            say(f"  {item}")
    return report.ok


def run(backend: VertexBackend, *, say: Callable[[str], None] = print, poll_s: float = 20.0,
        train_deadline_s: float = 3600.0, sleep: Callable[[float], None] = time.sleep) -> SmokeReport:
    """Train, deploy, predict once, clean up. Each step is reported as it ends."""
    ctx = backend.ctx
    report = SmokeReport()
    tag = time.strftime("smoke-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)
    job_id = ""
    model_ref = ""

    def step(label: str, fn: Callable[[], str]) -> bool:
        t0 = time.monotonic()
        try:
            detail = fn()
        except GenmlError as exc:
            report.steps.append((label, False, str(exc)))
            say(f"FAIL {label} ({time.monotonic() - t0:.0f} s): {exc}")
            return False
        report.steps.append((label, True, detail))
        say(f"ok   {label} ({time.monotonic() - t0:.0f} s): {detail}")
        return True

    def checks() -> str:
        bad = [f"{label}: {detail}" for label, ok, detail in preflight.check(ctx) if not ok]
        if bad:
            raise CloudError("genml vertex check fails: " + "; ".join(bad), "Fix that first.")
        return "profile, credentials, bucket, images and APIs"

    def dataset() -> str:
        backend.make_demo_dataset(tag, DEMO_IMAGES)
        return f"{DEMO_IMAGES} demo images uploaded to {ctx.dataset_uri(tag)}"

    def train() -> str:
        nonlocal job_id
        job = backend.submit_job(tag, TrainOptions(preset="tiny", replicas=1, machine_type=TRAIN_MACHINE))
        job_id = job.id
        deadline = time.monotonic() + train_deadline_s
        while not job.state.terminal:
            if time.monotonic() > deadline:
                raise CloudError(f"Job {job.id} did not finish within {train_deadline_s / 60:.0f} minutes.",
                                 "It is cancelled in the clean-up; look at its log.")
            sleep(poll_s)
            job = backend.get_job(job.id)
        if job.state.short != "SUCCEEDED":
            raise CloudError(f"Job {job.id} ended {job.state.short}: {job.error}", "See its log.")
        return f"job {job.id} succeeded at step {job.step}"

    def deploy() -> str:
        nonlocal model_ref
        ctx.settings.serving_machine_type = SERVE_MACHINE
        mv = backend.deploy(job_id, tag)
        model_ref = mv.ref
        return f"{mv.ref} on {mv.remote.get('endpoint')}"

    def predict() -> str:
        pred = backend.predictor(model_ref)
        images = pred.generate(np.zeros((1, pred.embedding_size), np.float32))
        return f"one image of {images.shape[1]}x{images.shape[2]} from the endpoint"

    say("Vertex AI smoke check: " + ctx.settings.parent + f", bucket gs://{ctx.settings.bucket}")
    try:
        for label, fn in (("checks", checks), ("dataset", dataset), ("training", train), ("deploy", deploy),
                          ("predict", predict)):
            if not step(label, fn):
                break
    finally:
        _clean_up(backend, tag, job_id, model_ref, report, say)
    return report


def _clean_up(backend: VertexBackend, tag: str, job_id: str, model_ref: str, report: SmokeReport,
              say: Callable[[str], None]) -> None:
    """Delete what the check created, each part on its own, and say what is left."""
    ctx = backend.ctx

    def part(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            report.cleaned.append(what)
            say(f"     removed {what}")
        except (GenmlError, OSError) as exc:
            report.left.append(f"{what}: {exc}")
            say(f"LEFT {what}: {exc}")

    if model_ref:
        part(f"model {model_ref} (endpoint, deployed model, Vertex AI Model)", lambda: backend.remove_model(model_ref))
    else:   # a deploy that failed half-way may have left a Model or an endpoint
        for ref in [mv.ref for mv in backend.list_models() if mv.name == tag]:
            part(f"model {ref}", lambda ref=ref: backend.remove_model(ref))  # type: ignore[misc]  # binds the loop value
    if job_id:
        job = backend.get_job(job_id)
        if not job.state.terminal:
            part(f"running job {job_id} (cancelled)", lambda: backend.cancel_job(job_id))
        name = job.remote.get("name")
        if name and job.state.terminal:
            c = ctx.clients
            part(f"CustomJob {name}", lambda: operations.wait(ctx, c.call(
                c.aiplatform.customJobs().delete(name=name), "Deleting the CustomJob")["name"],
                "Deleting the CustomJob"))

        def job_dir() -> None:
            bucket, prefix = gcs.split_uri(job.job_dir)
            for blob in list(ctx.clients.storage.list_blobs(bucket, prefix=prefix + "/")):
                blob.delete()
        part(f"job dir {job.job_dir}", job_dir)
    if any(d.name == tag for d in backend.list_datasets()):
        part(f"dataset {tag} (bucket copy and local copy)", lambda: backend.remove_dataset(tag, force=True))
