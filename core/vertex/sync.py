"""The registry's Vertex AI models, checked against Vertex AI itself.

The registry is genml's cache of the Models and endpoints it created. Someone can delete
an endpoint or a Model in the Cloud console, or undeploy with gcloud, and the row would
still say "deployed" until predict failed with the service's bare 404. So the models list
asks the service, cheaply: one models.list and one endpoints.list for the profile's
project and region (paged, filtered by the `genml` label that deploy puts on both), not
one call per row, and at most every `models_refresh_interval_s`. One row on its own
(`models show`, predict, batch) is checked with a GET of its Model and of its endpoint.

Each row then says what the service holds:

- its Model is gone: stage "missing" (core.types.REMOTE_MISSING), not deployed, and kept
  in the list rather than dropped, so the person can deploy the job again (`models deploy
  JOB` reuses the row) or forget it (`models rm`);
- its endpoint is gone, or no longer holds the row's deployed model: "undeployed", as after
  `genml models undeploy` (an endpoint left behind stays recorded, so undeploy and rm
  delete it);
- a deploy that genml stopped waiting for has finished: "deployed".

A resource absent from a list is confirmed with one GET before its row changes, so a list
that lags the service, or a label removed by hand, never marks a live model gone; this
happens once per change, not on every list. The registry is written only when a row
changed, and only if the row is still what was read before asking
(Registry.update_model_if), so a deploy that finishes meanwhile wins. An error reaching
the service keeps every row as it was and says why in `ctx.models_refresh_error`, which
core/multi.py turns into "unreachable: as last seen".
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from core.errors import CloudError, GenmlError, NotFound
from core.types import REMOTE_MISSING, ModelVersion
from core.vertex import preflight
from core.vertex.context import Context, last

LABEL_FILTER = 'labels.genml="1"'     # models:upload and endpoints.create set it (core/vertex/models.py)
# what an undeployed row keeps (core/vertex/models.py undeploy and the reconcile below)
UNDEPLOYED_KEEPS = ("model", "project", "region", "profile", "upload_op")


def resource_id(name: str) -> str:
    """projects/N/locations/L/models/123@2 -> 123. Names from the service carry the project
    number, names typed by a person the project ID: the ID is what both share."""
    return last(name).split("@", 1)[0]


class Seen:
    """What Vertex AI holds, as far as the rows ask: the listed resources by ID, and anything
    not listed looked up with one GET (a 404 means gone; any other error is raised)."""

    def __init__(self, ctx: Context, models: list[dict[str, Any]] | None = None,
                 endpoints: list[dict[str, Any]] | None = None) -> None:
        self.ctx = ctx
        self._models: dict[str, dict[str, Any] | None] = {resource_id(m["name"]): m for m in models or []}
        self._endpoints: dict[str, dict[str, Any] | None] = {resource_id(e["name"]): e for e in endpoints or []}

    @classmethod
    def listed(cls, ctx: Context) -> "Seen":
        """Two list calls (plus one per further page) for the whole profile."""
        s, ai = ctx.settings, ctx.clients.aiplatform
        models = preflight.list_all(ctx, lambda **kw: ai.models().list(parent=s.parent, filter=LABEL_FILTER, **kw),
                                    "models", "Listing models")
        endpoints = preflight.list_all(ctx, lambda **kw: ai.endpoints().list(parent=s.parent, filter=LABEL_FILTER,
                                                                              **kw), "endpoints", "Listing endpoints")
        return cls(ctx, models, endpoints)

    def _lookup(self, found: dict[str, dict[str, Any] | None], name: str, request: Callable[[], Any],
                what: str) -> dict[str, Any] | None:
        key = resource_id(name)
        if key not in found:
            try:
                found[key] = dict(self.ctx.clients.call(request(), what))
            except CloudError as exc:
                if getattr(exc, "http_status", 0) != 404:
                    raise
                found[key] = None
        return found[key]

    def model(self, name: str) -> dict[str, Any] | None:
        return self._lookup(self._models, name, lambda: self.ctx.clients.aiplatform.models().get(name=name),
                            "Reading the model")

    def endpoint(self, name: str) -> dict[str, Any] | None:
        return self._lookup(self._endpoints, name, lambda: self.ctx.clients.aiplatform.endpoints().get(name=name),
                            "Reading the endpoint")


def reconcile(mv: ModelVersion, seen: Seen) -> tuple[dict[str, Any], bool] | None:
    """The row's new `remote` and `deployed` from what the service holds; None if unchanged."""
    r = mv.remote
    stage, model, endpoint, dmid = r.get("stage"), r.get("model"), r.get("endpoint"), r.get("deployed_model_id")
    if stage == REMOTE_MISSING:
        return None
    kept = {k: r[k] for k in UNDEPLOYED_KEEPS if k in r}
    noticed = time.time()
    if model and seen.model(model) is None:
        out = dict(kept, stage=REMOTE_MISSING, noticed=noticed,
                   note=f"its Model {model} was deleted outside genml (Cloud console or gcloud)")
        if endpoint and seen.endpoint(endpoint) is not None:
            out["endpoint"] = endpoint          # left behind: a new deploy or `models rm` deletes it
        return out, False
    if not endpoint:
        return None
    ep = seen.endpoint(endpoint)
    if ep is None:
        if dmid or stage == "deployed":
            return dict(kept, stage="undeployed", noticed=noticed,
                        note=f"its endpoint {endpoint} was deleted outside genml"), False
        rest = {k: v for k, v in r.items() if k not in ("endpoint", "endpoint_op", "deploy_op", "endpoint_delete_op")}
        if stage == "deploy":       # a deploy stopped after creating the endpoint: running it again makes another
            rest["stage"] = "endpoint"
        return rest, False
    deployed = ep.get("deployedModels") or []
    if dmid:
        if str(dmid) in {str(d.get("id", "")) for d in deployed}:
            return None
        return dict(kept, endpoint=endpoint, stage="undeployed", noticed=noticed,
                    note=f"it was undeployed from {endpoint} outside genml"), False
    ours = [d for d in deployed if model and resource_id(str(d.get("model", ""))) == resource_id(model)]
    if stage == "deploy" and ours:             # genml stopped waiting, and the deploy finished
        return dict(r, stage="deployed", deployed_model_id=str(ours[0].get("id", ""))), True
    return None


def checkable(ctx: Context, mv: ModelVersion) -> bool:
    """A row with a Model or endpoint in this profile's region to check (rows saved under
    another region, before the profile changed, are left as they are)."""
    names = [n for n in (mv.remote.get("model"), mv.remote.get("endpoint")) if n]
    return (mv.remote.get("stage") != REMOTE_MISSING and bool(names)
            and all(f"/locations/{ctx.settings.region}/" in str(n) for n in names))


def _apply(ctx: Context, mv: ModelVersion, seen: Seen) -> ModelVersion:
    change = reconcile(mv, seen)
    if change is None:
        return mv
    remote, deployed = change
    if ctx.registry.update_model_if(mv, remote=remote, deployed=deployed):
        return dataclasses.replace(mv, remote=remote, deployed=deployed)
    try:                                   # changed meanwhile (a deploy finished): its own word wins
        return ctx.registry.get_model(mv.name, mv.version)
    except NotFound:
        return mv


def _ready(ctx: Context) -> None:
    """No network: the profile is complete and credentials exist (a profile with nothing
    to check is still found out)."""
    ctx.settings.validate()
    ctx.clients.credentials


def refresh(ctx: Context, rows: list[ModelVersion]) -> list[ModelVersion]:
    """The profile's rows, checked against one listing of its Models and endpoints."""
    now = time.monotonic()
    try:
        _ready(ctx)
        todo = [m for m in rows if checkable(ctx, m)]
        if not todo or now - ctx.models_synced < ctx.settings.models_refresh_interval_s:
            ctx.models_refresh_error = ""
            return rows
        seen = Seen.listed(ctx)
        fresh = {m.ref: _apply(ctx, m, seen) for m in todo}
    except GenmlError as exc:
        ctx.models_refresh_error = exc.message
        return rows                         # offline, throttled, no credentials: what genml knew
    ctx.models_synced = now
    ctx.models_refresh_error = ""
    ctx.models_checked.update(dict.fromkeys(fresh, now))
    return [fresh.get(m.ref, m) for m in rows]


def refresh_one(ctx: Context, mv: ModelVersion) -> ModelVersion:
    """One row, checked with a GET of its Model and one of its endpoint (at most); as it
    was, with a notice, when the service cannot be asked."""
    now = time.monotonic()
    if not checkable(ctx, mv) or now - ctx.models_checked.get(mv.ref, -1e9) < ctx.settings.models_refresh_interval_s:
        return mv
    try:
        _ready(ctx)
        out = _apply(ctx, mv, Seen(ctx))
    except GenmlError as exc:
        ctx.on_notice(f"Could not check {mv.ref} in Vertex AI ({exc.message}); showing what genml last knew.")
        return mv
    ctx.models_checked[mv.ref] = now
    return out
