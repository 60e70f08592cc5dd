"""Before anything billable: the profile, the credentials, the bucket and the APIs.

`ready` runs before every call that starts cloud work (it checks the bucket once per
backend), `check` is `genml vertex check`, `billing_notice` says once per workspace that
this costs money, and `billable_resources` lists what genml left running.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from core import atomic
from core.errors import CloudError, GenmlError
from core.vertex.context import Context
from core.vertex import images
from core.vertex.settings import Settings, bucket_location_kind, bucket_location_ok
from trainer.contract import ACTIVE_STATES

BILLING_NOTICE = (
    "Vertex AI and Cloud Storage are billable Google Cloud services: training jobs bill per machine-hour "
    "while they run, a deployed model bills per node-hour until you undeploy it (`genml models undeploy`), "
    "batch prediction bills per node-hour, and the bucket bills for what it stores. See docs/vertex.md for "
    "typical costs. (Shown once.)")

RUNNING = ACTIVE_STATES


def billing_notice(ctx: Context) -> None:
    """Say once per workspace, before the first billable call, that this costs money."""
    marker = ctx.state_dir / "billing-notice-shown"
    if marker.exists():
        return
    ctx.on_notice(BILLING_NOTICE)
    atomic.write_text(marker, f"{time.time()}\n")


def check_bucket(ctx: Context) -> str:
    """The bucket exists and sits where the jobs will run; checked before anything is submitted."""
    s = ctx.settings.validate()
    from google.api_core import exceptions as gexc
    try:
        bucket = ctx.clients.storage.get_bucket(s.bucket)
    except gexc.NotFound as exc:
        raise CloudError(f"The bucket gs://{s.bucket} does not exist.",
                         f"Create it in the job region: `gcloud storage buckets create gs://{s.bucket} "
                         f"--project {s.project} --location {s.region}`.") from exc
    except gexc.Forbidden as exc:
        # Storage Object Admin alone may use the bucket but not read its metadata (storage.buckets.get)
        try:
            list(ctx.clients.storage.list_blobs(s.bucket, max_results=1))
        except gexc.GoogleAPIError:
            raise CloudError(f"No access to the bucket gs://{s.bucket} ({exc.message}).",
                             "Grant the account Storage Admin (or Storage Object Admin and Storage Bucket "
                             "Viewer) on the bucket, or pick another with `genml vertex configure --bucket NAME`."
                             ) from exc
        ctx.on_notice(f"genml could not read where gs://{s.bucket} is (no storage.buckets.get permission); "
                      f"make sure it is in {s.region}, or grant Storage Bucket Viewer so genml can check.")
        ctx.bucket_checked = True
        return "unknown"
    except gexc.GoogleAPIError as exc:
        raise CloudError(f"Cannot read the bucket gs://{s.bucket}: {exc}.", "Try `genml vertex check`.") from exc
    location = str(bucket.location or "")
    if not bucket_location_ok(location, s.region):
        kind = bucket_location_kind(location)
        fix = (f"Use a single-region bucket in {s.region} (`gcloud storage buckets create gs://NAME --location "
               f"{s.region}` then `genml vertex configure --bucket NAME`)")
        if kind == "region":
            raise CloudError(f"The bucket gs://{s.bucket} is in {location}, but jobs run in {s.region}; Vertex AI "
                             "needs them in the same region (and traffic between regions is billed).",
                             f"{fix}, or set region = \"{location.lower()}\" in the profile.")
        raise CloudError(f"The bucket gs://{s.bucket} is a {kind} bucket ({location}); Vertex AI refuses those at "
                         f"model upload and batch prediction, and the /gcs mount in training does not support "
                         f"them. It needs a single-region bucket in {s.region}.", f"{fix}.")
    ctx.bucket_checked = True
    return location


def ready(ctx: Context) -> Settings:
    """The settings, validated, with the bucket checked once: call before starting cloud work."""
    s = ctx.settings.validate()
    if not ctx.bucket_checked:
        check_bucket(ctx)
    return s


def check(ctx: Context) -> list[tuple[str, bool, str]]:
    """`genml vertex check`: each thing that must work, whether it does, and what to do if not."""
    results: list[tuple[str, bool, str]] = []
    s, c = ctx.settings, ctx.clients

    def step(label: str, fn: Callable[[], str]) -> bool:
        try:
            results.append((label, True, fn()))
            return True
        except GenmlError as exc:
            results.append((label, False, str(exc)))
            return False

    if not step("profile", lambda: f"project {s.validate().project}, region {s.region}, bucket gs://{s.bucket}"):
        return results
    from core.vertex.clients import describe_credentials
    if not step("credentials", lambda: describe_credentials(s, c.credentials)):
        return results
    step("bucket", lambda: f"gs://{s.bucket} in {check_bucket(ctx)}")
    for role, uri in (("training", s.training_image_uri()), ("serving", s.serving_image_uri())):
        state, text = images.status(uri, ctx.today(), role, project=s.project, region=s.region, profile=s.name)
        name = f"{role} image"
        if state == "invalid":
            results.append((name, False, text))
        elif state == "expired":
            results.append((name, False, text + ("" if role == "serving" else
                                                 "; remove the override from the profile or name a newer image")))
        else:
            results.append((name, True, ("warning: " if state in ("warn", "unknown") else "") + text))
    step("Vertex AI API", lambda: (c.call(c.aiplatform.customJobs().list(
        parent=s.parent, pageSize=1), "Listing training jobs", deadline_s=30), "reachable")[1])
    step("Cloud Logging API", lambda: (c.call(c.logging.entries().list(body={
        "resourceNames": [f"projects/{s.project}"], "pageSize": 1,
        "filter": 'resource.type="ml_job"'}), "Reading logs", deadline_s=30, retry=False), "reachable")[1])
    return results


def list_all(ctx: Context, request: Callable[..., Any], key: str, what: str,
             page_size: int = 100) -> list[dict[str, Any]]:
    """Every item of a list method, page by page (nextPageToken), not just the first page."""
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        kw: dict[str, Any] = {"pageSize": page_size}
        if token:
            kw["pageToken"] = token
        resp = ctx.clients.call(request(**kw), what)
        out += resp.get(key, [])
        token = resp.get("nextPageToken", "")
        if not token:
            return out


def billable_resources(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """What genml started that may still be billing: running jobs and endpoints with models.

    Read from Vertex AI itself (by the `genml` label), not from the local registry, so it
    also finds what another machine or a lost registry left behind.
    """
    s, ai = ctx.settings.validate(), ctx.clients.aiplatform
    flt = 'labels.genml="1"'
    jobs = list_all(ctx, lambda **kw: ai.customJobs().list(parent=s.parent, filter=flt, **kw),
                    "customJobs", "Listing training jobs")
    batch = list_all(ctx, lambda **kw: ai.batchPredictionJobs().list(parent=s.parent, filter=flt, **kw),
                     "batchPredictionJobs", "Listing batch prediction jobs")
    eps = list_all(ctx, lambda **kw: ai.endpoints().list(parent=s.parent, filter=flt, **kw),
                   "endpoints", "Listing endpoints")
    return {
        "training": [{"name": j["name"], "display_name": j.get("displayName", ""), "state": j.get("state", "")}
                     for j in jobs if j.get("state") in RUNNING],
        "batch": [{"name": j["name"], "display_name": j.get("displayName", ""), "state": j.get("state", "")}
                  for j in batch if j.get("state") in RUNNING],
        "endpoints": [{"name": e["name"], "display_name": e.get("displayName", ""),
                       "deployed_models": len(e.get("deployedModels", []))}
                      for e in eps if e.get("deployedModels")],
    }
