"""Models on Vertex AI: models:upload, a new endpoint, deployModel; and back again.

Each is a long-running operation whose name is saved in the registry's `remote` column
before genml waits for it, so a deploy interrupted by a crash or by genml's deadline
continues where it stopped when the same command is run again.

Lists, `models show`, predict and batch check the rows against Vertex AI first
(core/vertex/sync.py), so a model deleted or undeployed outside genml says so instead of
failing with the service's 404; deploying its job again starts such a row over.
"""
from __future__ import annotations

from typing import Any, Callable

from core.backend import ProgressFn
from core.errors import CloudError, InvalidState, NotFound
from core.jobdir import JobDir
from core.registry import parse_model_ref
from core.types import JobState, ModelVersion
from core.vertex import images, jobs, operations, preflight, serving, sync
from core.vertex import storage as gcs
from core.vertex.context import Context, label


def vertex_model(ctx: Context, ref: str) -> ModelVersion:
    """NAME (the deployed, else newest version) or NAME@vN, which must be a Vertex AI model."""
    name, version = parse_model_ref(ref)
    if version is None:
        cands = [m for m in ctx.registry.list_models() if m.name == name and m.backend == "vertex"]
        if not cands:
            raise NotFound(f"No Vertex AI model named {name!r}.", "See `genml --backend vertex models list`.")
        cands.sort(key=lambda m: (m.deployed, m.version))
        return cands[-1]
    mv = ctx.registry.get_model(name, version)
    if mv.backend != "vertex":
        raise NotFound(f"{ref} is a {mv.backend} model, not a Vertex AI one.",
                       f"Use `genml --backend {mv.backend} ...`.")
    return mv


def _mine(ctx: Context) -> list[ModelVersion]:
    return [m for m in ctx.registry.list_models() if jobs.mine(ctx, m)]


def list_models(ctx: Context) -> list[ModelVersion]:
    """This profile's models, checked against Vertex AI; as last seen when it cannot be
    asked (then `ctx.models_refresh_error` says why, for the all-backends list)."""
    return sync.refresh(ctx, _mine(ctx))


def get_model(ctx: Context, ref: str) -> ModelVersion:
    return sync.refresh_one(ctx, vertex_model(ctx, ref))


def missing_error(mv: ModelVersion) -> InvalidState:
    """What predict and batch say about a model whose Vertex AI Model is gone."""
    note = mv.remote.get("note") or "its Model was deleted outside genml"
    return InvalidState(f"{mv.ref} is missing in Vertex AI: {note}.",
                        f"Deploy its job again with `genml --backend {mv.remote.get('profile', 'vertex')} models "
                        f"deploy {mv.job_id}` (it keeps the name {mv.ref}), or forget it with "
                        f"`genml models rm {mv.ref}`.")


def _save(ctx: Context, mv: ModelVersion, **remote: Any) -> ModelVersion:
    mv.remote = dict(mv.remote, **remote)
    ctx.registry.update_model(mv.name, mv.version, remote=mv.remote)
    return mv


def _step(ctx: Context, mv: ModelVersion, op_key: str, start: Callable[[], dict[str, Any]], what: str,
          progress: ProgressFn | None) -> dict[str, Any]:
    """Start an operation once (its name is saved before waiting), then wait for it."""
    if not mv.remote.get(op_key):
        op = start()
        _save(ctx, mv, **{op_key: op["name"]})
    try:
        return operations.wait(ctx, mv.remote[op_key], what, progress)
    except CloudError as exc:
        if getattr(exc, "operation_failed", False) or getattr(exc, "http_status", 0) == 404:
            _save(ctx, mv, **{op_key: None})      # the next run starts this step afresh
        raise


def deploy(ctx: Context, job_id: str, name: str | None = None, progress: ProgressFn | None = None) -> ModelVersion:
    job = jobs.get(ctx, job_id)
    if job.state is not JobState.SUCCEEDED:
        raise InvalidState(f"Job {job_id} is {job.state.short}; only a finished job has a model to deploy.",
                           "Wait for it to succeed (`genml jobs show`), then deploy.")
    s = preflight.ready(ctx)
    images.require_available(s.serving_image_uri(), f"deploy the model of job {job_id}", ctx.today(), "serving",
                             project=s.project, region=s.region, profile=s.name)
    pending = [m for m in ctx.registry.list_models() if m.backend == "vertex" and m.job_id == job_id
               and m.remote.get("stage") not in ("deployed", "undeployed")
               and (name is None or m.name == name)]
    if pending:
        mv = pending[-1]
        if mv.missing:
            mv = _start_over(ctx, mv)
    else:
        jd = JobDir(gcs.GcsStore(job.job_dir, ctx.clients.storage))
        if not jd.has_model():
            raise InvalidState(f"Job {job_id} has no exported model in {job.job_dir}/model.",
                               "The trainer writes it when a job succeeds; check the job's log.")
        info = jd.model_info()
        preflight.billing_notice(ctx)
        mv = ctx.registry.add_model_version(name or job.dataset, job_id, job.job_dir + "/model", backend="vertex",
                                            metrics=dict(info.get("metrics") or {}), info=info,
                                            remote={"stage": "upload", "project": s.project, "region": s.region,
                                                    "profile": s.name})
        ctx.registry.update_model(mv.name, mv.version, deployed=False)
    return _continue_deploy(ctx, mv, progress)


def _delete_endpoint(ctx: Context, mv: ModelVersion, endpoint: str, what: str) -> None:
    """Delete the row's endpoint (its operation saved as endpoint_delete_op); gone already is fine."""
    c = ctx.clients
    operations.gone_ok(lambda: _step(ctx, mv, "endpoint_delete_op", lambda: c.call(
        c.aiplatform.endpoints().delete(name=endpoint), "Deleting the endpoint"), what, None))


def _start_over(ctx: Context, mv: ModelVersion) -> ModelVersion:
    """A row whose Model was deleted outside genml is deployed again from the upload on,
    under the same version; an endpoint it left behind is deleted first."""
    s = ctx.settings
    endpoint = mv.remote.get("endpoint")
    if endpoint:
        _delete_endpoint(ctx, mv, endpoint, f"Deleting the endpoint left behind by {mv.ref}")
    mv.remote = {"stage": "upload", "project": s.project, "region": s.region, "profile": s.name}
    ctx.registry.update_model(mv.name, mv.version, remote=mv.remote, deployed=False)
    return mv


def _continue_deploy(ctx: Context, mv: ModelVersion, progress: ProgressFn | None) -> ModelVersion:
    s, ai, c = ctx.settings, ctx.clients.aiplatform, ctx.clients
    name = f"genml-{label(mv.name)}-v{mv.version}"
    body: dict[str, Any]                 # three request bodies, each its own shape
    if not mv.remote.get("model"):
        image = s.serving_image_uri()

        def upload() -> dict[str, Any]:
            # a TF Serving image needs the model in a version folder: copied before the upload starts
            artifacts = serving.artifact_uri(c.storage, mv.path, image)
            body = {"model": {"displayName": name, "artifactUri": artifacts,
                              "containerSpec": serving.container_spec(image),
                              "labels": {"genml": "1", "genml-model": label(mv.name)}}}
            return dict(c.call(ai.models().upload(parent=s.parent, body=body), "Uploading the model"))
        resp = _step(ctx, mv, "upload_op", upload, f"Uploading {mv.ref} to Vertex AI", progress)
        _save(ctx, mv, model=resp["model"], stage="endpoint")
    if not mv.remote.get("endpoint"):
        body = {"displayName": name, "labels": {"genml": "1"}}
        resp = _step(ctx, mv, "endpoint_op", lambda: c.call(ai.endpoints().create(parent=s.parent, body=body),
                                                            "Creating an endpoint"),
                     f"Creating an endpoint for {mv.ref}", progress)
        _save(ctx, mv, endpoint=resp["name"], stage="deploy")
    if not mv.remote.get("deployed_model_id"):
        body = {"deployedModel": {"model": mv.remote["model"], "displayName": name,
                                  "dedicatedResources": {"machineSpec": {"machineType": s.serving_machine_type},
                                                         "minReplicaCount": 1, "maxReplicaCount": 1}},
                "trafficSplit": {"0": 100}}
        resp = _step(ctx, mv, "deploy_op", lambda: c.call(
            ai.endpoints().deployModel(endpoint=mv.remote["endpoint"], body=body), "Deploying the model"),
            f"Deploying {mv.ref} (this takes 5-20 minutes)", progress)
        _save(ctx, mv, deployed_model_id=str(resp.get("deployedModel", {}).get("id", "")), stage="deployed")
    ctx.registry.update_model(mv.name, mv.version, deployed=True)
    return ctx.registry.get_model(mv.name, mv.version)


def undeploy(ctx: Context, ref: str) -> ModelVersion:
    """Stop serving (and billing): undeploy from the endpoint, then delete the endpoint. The Model stays."""
    mv = vertex_model(ctx, ref)
    ai, c = ctx.clients.aiplatform, ctx.clients
    endpoint = mv.remote.get("endpoint")
    if endpoint and mv.remote.get("deployed_model_id"):
        body = {"deployedModelId": mv.remote["deployed_model_id"]}
        operations.gone_ok(lambda: _step(ctx, mv, "undeploy_op", lambda: c.call(
            ai.endpoints().undeployModel(endpoint=endpoint, body=body), "Undeploying the model"),
            f"Undeploying {mv.ref}", None))
    if endpoint:
        _delete_endpoint(ctx, mv, endpoint, f"Deleting the endpoint of {mv.ref}")
    if mv.missing:                 # its Model is gone: only the endpoint it left was to delete
        mv.remote = {k: v for k, v in mv.remote.items() if k not in ("endpoint", "endpoint_delete_op", "undeploy_op")}
    else:
        keep = {k: v for k, v in mv.remote.items() if k in sync.UNDEPLOYED_KEEPS}
        mv.remote = dict(keep, stage="undeployed")
    ctx.registry.update_model(mv.name, mv.version, remote=mv.remote, deployed=False)
    return ctx.registry.get_model(mv.name, mv.version)


def remove(ctx: Context, ref: str) -> None:
    name, version = parse_model_ref(ref)
    versions = [vertex_model(ctx, ref)] if version is not None else \
        [m for m in _mine(ctx) if m.name == name]
    if not versions:
        raise NotFound(f"No Vertex AI model named {name!r}.", "See `genml --backend vertex models list`.")
    for mv in versions:
        if mv.remote.get("endpoint"):
            mv = undeploy(ctx, mv.ref)
        if mv.remote.get("model"):
            model, m = mv.remote["model"], mv
            operations.gone_ok(lambda: _step(ctx, m, "delete_op", lambda: ctx.clients.call(
                ctx.clients.aiplatform.models().delete(name=model), "Deleting the model"),
                f"Deleting {m.ref} from Vertex AI", None))
        ctx.registry.remove_model(mv.name, mv.version)


def deployed(ctx: Context, ref: str) -> ModelVersion:
    """The model, which must be serving on an endpoint (checked with Vertex AI first)."""
    mv = get_model(ctx, ref)
    if mv.missing:
        raise missing_error(mv)
    if not mv.deployed or not mv.remote.get("endpoint"):
        note = f": {mv.remote['note']}" if mv.remote.get("note") else f" (stage: {mv.remote.get('stage', '?')})"
        raise InvalidState(f"{mv.ref} is not deployed on Vertex AI{note}.",
                           f"Run `genml --backend {mv.remote.get('profile', 'vertex')} models deploy {mv.job_id}` "
                           "(it resumes an unfinished deploy; an undeployed model gets a new version).")
    return mv
