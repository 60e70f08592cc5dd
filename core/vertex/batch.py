"""Batch prediction on Vertex AI: local JSONL in, local folder out.

In between: the lines that can go (embeddings, checked here) are uploaded, a
BatchPredictionJob runs the model's default signature on them, and its output files are
downloaded and rewritten under the local backend's names.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from core import atomic
from core import batch as batch_mod
from core.backend import BatchResult, Progress, ProgressFn
from core.errors import CloudError, InvalidInput, InvalidState
from core.predict import BadInstance, EmbeddingInstance, parse_instance
from core.types import JobState
from core.vertex import models, operations, preflight
from core.vertex import storage as gcs
from core.vertex.context import Context, label


def run(ctx: Context, ref: str, input_path: Path, output_dir: Path, *,
        progress: ProgressFn | None = None) -> BatchResult:
    """A batch job runs the model's default signature, so lines with embeddings go to Vertex;
    other lines (and malformed ones) get an error line here instead of failing the job.
    The output has the local backend's names: predictions-00000-of-00001.jsonl and
    errors-00000-of-00001.jsonl (plus Vertex's own files under vertex/).
    """
    s = preflight.ready(ctx)
    mv = models.get_model(ctx, ref)
    if mv.missing:
        raise models.missing_error(mv)
    if not mv.remote.get("model"):
        raise InvalidState(f"{mv.ref} has not been uploaded to Vertex AI.",
                           f"Run `genml --backend vertex models deploy {mv.job_id}`.")
    emb = int(mv.info.get("embedding_size", 100))
    good: list[str] = []
    local_errors: list[tuple[int | None, Any, str]] = []       # (line, key, error)
    try:
        with open(input_path, "rb") as f:           # the same bounded reader and parser as local batch
            for lineno, obj in batch_mod.read_instances(f):
                p = parse_instance(obj, lineno, emb)
                if isinstance(p, BadInstance):
                    local_errors.append((lineno, p.key, p.error.replace("instance ", "line ", 1)))
                elif not isinstance(p, EmbeddingInstance):
                    local_errors.append((lineno, p.key,
                                         f"line {lineno}: Vertex AI batch prediction runs the generate "
                                         "signature; encode images online with `genml predict`"))
                else:
                    good.append(json.dumps({"embeddings": [float(x) for x in p.z], "key": str(p.key)}))
    except OSError as exc:
        raise InvalidInput(f"Cannot read {input_path}: {exc.strerror}.",
                           "Give a JSONL file, one instance per line.") from exc
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions = 0
    files: list[str] = []
    out_lines: list[dict[str, Any]] = []
    if good:
        preflight.billing_notice(ctx)
        run_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)
        base = s.gs("batch", run_id)
        tmp = ctx.ws.tmp_dir / f"batch-{run_id}.jsonl"
        atomic.write_text(tmp, "\n".join(good) + "\n")
        gcs.upload_file(ctx.clients.storage, tmp, base + "/input.jsonl")
        tmp.unlink(missing_ok=True)
        body = {"displayName": f"genml-{label(mv.name)}-v{mv.version}-{run_id}", "model": mv.remote["model"],
                "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [base + "/input.jsonl"]}},
                "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": base + "/output"}},
                "dedicatedResources": {"machineSpec": {"machineType": s.batch_machine_type},
                                       "startingReplicaCount": 1, "maxReplicaCount": 1},
                "labels": {"genml": "1"}}
        bj = ctx.clients.call(ctx.clients.aiplatform.batchPredictionJobs().create(parent=s.parent, body=body),
                              "Starting batch prediction")
        bj = wait(ctx, bj["name"], progress)
        out_uri = (bj.get("outputInfo") or {}).get("gcsOutputDirectory", base + "/output")
        raw_dir = output_dir / "vertex"
        for path in gcs.download_prefix(ctx.clients.storage, out_uri, raw_dir):
            files.append(str(path))
            results = path.name.startswith("prediction.results")
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                row = _row(line)
                if results and isinstance(row, dict) and "prediction" in row:
                    pred = dict(row.get("prediction") or {})
                    pred.setdefault("key", (row.get("instance") or {}).get("key"))
                    out_lines.append(pred)
                    predictions += 1
                elif results or path.name.startswith("prediction.errors"):
                    local_errors.append(_error_row(row, line))
        if bj.get("state") == "JOB_STATE_PARTIALLY_SUCCEEDED" and progress:
            progress(Progress("batch prediction", predictions, 0,
                              f"partly succeeded: {predictions} predictions, {len(local_errors)} errors"))
    # the local backend's writer (core/batch.py), so the output has the same names, in one shard
    w = batch_mod.ShardWriter(output_dir, 0, 1)
    for pred in out_lines:
        w.prediction(pred)
    for err_line, key, error in local_errors:
        w.error(err_line, key, error)
    written = w.commit()
    return BatchResult(output_dir=str(output_dir), predictions=predictions, errors=len(local_errors),
                       files=[*written, *files])


def _row(line: str) -> Any:
    """One output line: JSON when it is, else the text (error lines are not always JSON:
    tuple-shaped lines such as `('Post request fails...', 1)` have been reported)."""
    try:
        return json.loads(line)
    except ValueError:
        return line


def _error_row(row: Any, line: str) -> tuple[int | None, Any, str]:
    """(line, key, error) for the writer, from a JSON error row or a raw text line."""
    if isinstance(row, dict):
        inst = row.get("instance")
        return None, inst.get("key") if isinstance(inst, dict) else None, str(row.get("error", line))
    return None, None, f"Vertex AI: {line.strip()}"


def wait(ctx: Context, name: str, progress: ProgressFn | None) -> dict[str, Any]:
    """Poll a BatchPredictionJob until it ends. SUCCEEDED and PARTIALLY_SUCCEEDED return (the
    second has good results beside its errors); FAILED, CANCELLED and EXPIRED raise."""
    def finished(bj: dict[str, Any]) -> bool:
        state = JobState.parse(bj.get("state", JobState.PENDING.value))
        if progress:
            stats = bj.get("completionStats") or {}
            progress(Progress("batch prediction", int(stats.get("successfulCount", 0) or 0), 0, state.short))
        partly = bj.get("state") == "JOB_STATE_PARTIALLY_SUCCEEDED"
        if state.terminal and state is not JobState.SUCCEEDED and not partly:
            err = (bj.get("error") or {}).get("message", state.short)
            raise CloudError(f"Batch prediction {name} ended {state.short}: {err}.",
                             "Check the input lines and the model; the job's details are in the console.")
        return state is JobState.SUCCEEDED or partly

    def timeout() -> CloudError:
        return CloudError(f"Batch prediction {name} is still running after genml's deadline.",
                          f"It goes on in Google Cloud; its output will be under gs://{ctx.settings.bucket}/genml/batch/.")

    return operations.poll(ctx, lambda: ctx.clients.call(ctx.clients.aiplatform.batchPredictionJobs().get(name=name),
                                                          "Reading batch prediction"), finished, timeout)
