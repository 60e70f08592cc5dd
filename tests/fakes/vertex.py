"""A fake Vertex AI + Cloud Logging server on 127.0.0.1 for the real google-api-python-client.

Every request is routed and checked with the discovery documents the client ships
(tests/fakes/discovery.py); a request the real service would reject is answered 400
and recorded in `rejected`, which the fixtures assert is empty. Resources move through
their states as in the real service:

- CustomJobs: with `executor="simulate"` each GET moves a job one state on along
  `job_script` (QUEUED, PENDING, RUNNING, SUCCEEDED by default) and writes log entries;
  with `executor="trainer"` the job really runs: the uploaded sdist is unpacked and put on
  PYTHONPATH, `python -m trainer.task` runs with /gcs/BUCKET/... mapped to a local mirror
  of the emulated bucket (synced down before, and up while and after it runs), and its
  stdout/stderr become INFO/ERROR log entries, as Vertex logs them.
- Long-running operations (models:upload, endpoints create/deployModel/undeployModel,
  deletes) are done after `op_polls` GETs.
- endpoints:predict / rawPredict and batch prediction call `predict_fn(artifact_uri,
  signature, instances)`: by default `tf_predict`, which loads the uploaded SavedModel.
  A Model on a custom container (any image that is not Vertex AI's prebuilt) must name
  an Artifact Registry or Container Registry image; its artifactUri is copied to a
  staging folder (AIP_STORAGE_URI), and its containerSpec is run as TensorFlow Serving
  would run it (tests/fakes/tf_serving.py): a deploy whose server would never answer the
  health route fails, and predictions go to the predict route and reach `predict_fn`
  with the served version folder.

`fail_next(method_id, status, body)` queues a recorded error body for the next call of
a method (e.g. "aiplatform.projects.locations.customJobs.create"). `undeploy_outside`,
`delete_endpoint_outside` and `delete_model_outside` do what a person does in the Cloud
console or with gcloud, behind genml's back.

Beyond the schemas, the fake enforces the service's semantic rules that genml has got
wrong before (each refusal is a 400 and lands in `rejected`):

- images: a pythonPackageSpec must name a listed prebuilt training image, and a listed
  prebuilt image past its end of availability (IMAGES, as of `today`) is refused in jobs
  and model uploads; a containerSpec may name any other image, except that a Model's
  custom container must come from Artifact Registry or Container Registry;
- buckets: single-region and in the job's region, on customJobs.create (its output
  directory), models.upload (artifactUri) and batch prediction (input and output);
- labels (keys and values: lowercase letters, digits, _ and -, at most 63 characters,
  keys start with a letter), display names of at most 128 characters, replica counts of
  at least 1, a worker pool with exactly one of pythonPackageSpec and containerSpec, a
  trafficSplit that sums to 100 over known deployed-model IDs;
- a request body of at most 1.5 MB on predict and rawPredict.

Its answers look like the service's: resource names carry the project number, not the
ID; timestamps come with 0, 3, 6 or 9 fractional digits; log entries carry textPayload
or jsonPayload.message, and `log_late()` adds one with an earlier timestamp after later
ones were listed; batch jobs whose model refuses some instances end
JOB_STATE_PARTIALLY_SUCCEEDED with tuple-shaped, non-JSON lines in errors_stats files.
The /gcs mount of a running trainer refuses directory renames, as Cloud Storage FUSE does.
"""
from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from tests.fakes.discovery import Discovery
from tests.fakes.tf_serving import ContainerError, TFServingContainer

SIMULATED_STATES = ["JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
PredictFn = Callable[[str, str, list[Any]], list[Any]]
PROJECT_NUMBER = "314159265358"
MAX_PREDICT_BODY = 1_500_000          # bytes: a shared public endpoint's request cap
AIP_TYPES = "type.googleapis.com/google.cloud.aiplatform.v1"   # prefix of the response @type names

# The service's own list (supported-frameworks page, read 2026-12-02): end of availability.
IMAGES: dict[str, dt.date] = {
    "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest": dt.date(2026, 7, 11),
    "us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-17.py310:latest": dt.date(2026, 7, 11),
    "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest": dt.date(2027, 1, 14),
    "us-docker.pkg.dev/vertex-ai/prediction/tf2-gpu.2-15:latest": dt.date(2027, 1, 14),
}
STAGING_BUCKET = "caip-tenant-fake"      # where models:upload copies artifactUri (AIP_STORAGE_URI)
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_digits = itertools.cycle([0, 3, 6, 9])
_clock_lock = threading.Lock()
_last_ns = [0]


def rfc3339_ns(ns: int) -> str:
    """Protobuf JSON's form: as many fractional digits (0, 3, 6 or 9) as the value needs."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    for digits in (3, 6, 9):
        if frac % 10 ** (9 - digits) == 0:
            return base + "." + f"{frac:09d}"[:digits] + "Z"
    raise AssertionError


def now_rfc3339() -> str:
    """Now, at a precision that cycles through whole seconds, ms, us and ns, never going back
    (so some entries share a timestamp, as they do in Cloud Logging)."""
    with _clock_lock:
        digits = next(_digits)
        ns = time.time_ns()
        ns = ns - ns % 10 ** (9 - digits) if digits < 9 else ns
        if ns % 1_000_000_000 == 0 and digits:
            ns += 10 ** (9 - digits)        # keep the precision the cycle asked for
        ns = max(ns, _last_ns[0])
        _last_ns[0] = ns
    return rfc3339_ns(ns)


def parse_ns(value: str) -> int:
    """RFC 3339 with any number of fractional digits -> nanoseconds since the epoch."""
    head, _, frac = value.rstrip("Z").partition(".")
    secs = int(datetime.fromisoformat(head + "+00:00").timestamp())
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])




def google_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


class FakeVertex:
    def __init__(self, storage_client: Any, workdir: Path, *, project: str = "test-project",
                 executor: str = "simulate", op_polls: int = 1, predict_fn: PredictFn | None = None) -> None:
        self.storage = storage_client
        self.workdir = Path(workdir)
        self.project = project
        self.today = dt.date.today()
        self.max_page = 100            # the most items one list call returns
        self.gate = threading.Event()  # clear it to make every request hang (a cloud that does not answer)
        self.gate.set()
        self.batch_refuse: Callable[[Any], bool] = lambda instance: False
        self.executor = executor
        self.op_polls = op_polls
        self.predict_fn: PredictFn = predict_fn or TFPredictor(storage_client, self.workdir / "models").predict
        self.job_script = list(SIMULATED_STATES)
        self.aiplatform = Discovery("aiplatform", "v1")
        self.logging = Discovery("logging", "v2")
        self.lock = threading.RLock()
        self.ids = itertools.count(1000)
        self.requests: list[tuple[str, str, Any]] = []
        self.rejected: list[str] = []
        self.failures: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.custom_jobs: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, "TrainerRun"] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.batch_jobs: dict[str, dict[str, Any]] = {}
        self.staged: dict[str, str] = {}                      # model id -> its AIP_STORAGE_URI
        self.containers: dict[str, TFServingContainer] = {}   # deployed model id -> its running container
        self.entries: list[dict[str, Any]] = []
        self.log_reads = 0
        self.next_operation_error: dict[str, Any] | None = None
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> "FakeVertex":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                fake.gate.wait(60)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                code, body = fake.handle(self.command, self.path, raw)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def stop(self) -> None:
        for run in list(self.runs.values()):
            run.cancel()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def fail_next(self, method_id: str, status: int, body: dict[str, Any], times: int = 1) -> None:
        with self.lock:
            self.failures.setdefault(method_id, []).extend([(status, body)] * times)

    def calls(self, method_id: str) -> list[Any]:
        return [b for m, _, b in self.requests if m == method_id]

    # ---- dispatch ----------------------------------------------------------------------
    def handle(self, http_method: str, raw_path: str, raw_body: bytes) -> tuple[int, Any]:
        url = urlparse(raw_path)
        query = parse_qs(url.query)
        disc = self.logging if url.path.startswith("/v2/") else self.aiplatform
        route = disc.route(http_method, url.path)
        if route is None:
            self.rejected.append(f"{http_method} {url.path}: no such method")
            return 404, google_error(404, "NOT_FOUND", f"The requested URL {url.path} was not found on this server.")
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            self.rejected.append(f"{route.id}: body is not JSON")
            return 400, google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        with self.lock:
            self.requests.append((route.id, url.path, body))
            queued = self.failures.get(route.id)
            if queued:
                return queued.pop(0)
        # rawPredict's request is an HttpBody: the gateway hands the raw HTTP body to the
        # model's container, so there is no JSON schema to check it against.
        raw = route.id.endswith(".rawPredict")
        if route.id.endswith((".predict", ".rawPredict")) and len(raw_body) > MAX_PREDICT_BODY:
            self.rejected.append(f"{route.id}: body of {len(raw_body)} bytes")
            return 400, google_error(400, "INVALID_ARGUMENT", f"Request payload size exceeds the limit: "
                                     f"{MAX_PREDICT_BODY} bytes.")
        errors = disc.check_query(route, query) + ([] if raw else disc.check_body(route, body))
        if errors:
            self.rejected.append(f"{route.id}: " + "; ".join(errors))
            return 400, google_error(400, "INVALID_ARGUMENT", "; ".join(errors))
        name = url.path.split("/", 2)[2]            # drop /v1/
        handler = getattr(self, "_" + route.id.split(".", 3)[-1].replace(".", "_"), None)
        if route.id.endswith(".operations.get"):
            handler = self._operation_get
        if handler is None:
            self.rejected.append(f"{route.id}: not implemented by the fake")
            return 501, google_error(501, "UNIMPLEMENTED", f"{route.id} is not implemented by the fake")
        with self.lock:
            try:
                return handler(name, query, body or {})
            except FakeError as exc:
                if isinstance(exc, RuleError):
                    self.rejected.append(f"{route.id}: {exc.message}")
                return exc.code, google_error(exc.code, exc.status, exc.message)

    def _id(self) -> str:
        return str(next(self.ids))

    def _parent(self, name: str) -> str:
        """The parent as the service names it in answers: with the project number."""
        parts = name.split("/")[:4]
        if parts[1] == self.project:
            parts[1] = PROJECT_NUMBER
        return "/".join(parts)

    def _check_parent(self, name: str) -> None:
        parts = name.split("/")
        if parts[1] not in (self.project, PROJECT_NUMBER):
            raise FakeError(403, "PERMISSION_DENIED", f"Permission denied on project {parts[1]}")

    def _region(self, name: str) -> str:
        return name.split("/")[3]

    # ---- the service's semantic rules ------------------------------------------------
    def _check_common(self, body: dict[str, Any], where: str) -> None:
        name = body.get("displayName", "")
        if len(name) > 128:
            raise RuleError(400, "INVALID_ARGUMENT", f"{where}.display_name is longer than 128 characters.")
        labels = body.get("labels") or {}
        if len(labels) > 64:
            raise RuleError(400, "INVALID_ARGUMENT", f"{where}.labels: at most 64 labels.")
        for k, v in labels.items():
            if not _LABEL_KEY.match(k) or not _LABEL_VALUE.match(str(v)):
                raise RuleError(400, "INVALID_ARGUMENT", f"{where}.labels: invalid label {k!r}: {v!r}. Keys and "
                                "values may hold lowercase letters, digits, _ and -, at most 63 characters; "
                                "keys start with a letter.")

    def _check_image(self, uri: str, where: str, package: bool = False) -> None:
        prebuilt = _prebuilt(uri)
        if package and uri not in IMAGES:
            raise RuleError(400, "INVALID_ARGUMENT", f"{where}: {uri} is not a supported prebuilt container for "
                            "Python package training.")
        if prebuilt and uri in IMAGES and IMAGES[uri] < self.today:
            raise RuleError(400, "FAILED_PRECONDITION", f"{where}: the container image {uri} is no longer "
                            f"available (end of availability {IMAGES[uri]}).")
        if prebuilt and uri not in IMAGES:
            raise RuleError(400, "INVALID_ARGUMENT", f"{where}: {uri} is not a Vertex AI prebuilt container.")

    def _check_bucket(self, uri: str, region: str, where: str) -> None:
        if not uri.startswith("gs://"):
            raise RuleError(400, "INVALID_ARGUMENT", f"{where}: {uri} is not a gs:// URI.")
        bucket = uri[5:].split("/", 1)[0]
        try:
            location = str(self.storage.get_bucket(bucket).location or "").lower()
        except Exception as exc:
            raise RuleError(400, "FAILED_PRECONDITION", f"{where}: cannot read bucket {bucket}: {exc}") from exc
        if location != region:
            raise RuleError(400, "FAILED_PRECONDITION", f"{where}: Location of gs://{bucket} is in location "
                            f"`{location}`. It must be in the same regional location as the service location "
                            f"`{region}`.")

    # ---- custom jobs ------------------------------------------------------------------
    def _customJobs_create(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        parent = self._parent(name)
        self._check_parent(parent)
        self._check_common(body, "custom_job")
        pools = body["jobSpec"].get("workerPoolSpecs", [])
        if not pools or str(pools[0].get("replicaCount", "1")) != "1":
            raise FakeError(400, "INVALID_ARGUMENT", "workerPoolSpecs[0].replicaCount must be 1 (the chief).")
        for i, p in enumerate(pools):
            if not p:
                continue                       # an empty pool is allowed as a placeholder
            if not p.get("machineSpec", {}).get("machineType"):
                raise FakeError(400, "INVALID_ARGUMENT", f"workerPoolSpecs[{i}].machineSpec.machineType is required.")
            if int(p.get("replicaCount", "0")) < 1:
                raise RuleError(400, "INVALID_ARGUMENT", f"workerPoolSpecs[{i}].replica_count must be at least 1.")
            if bool(p.get("pythonPackageSpec")) == bool(p.get("containerSpec")):
                raise RuleError(400, "INVALID_ARGUMENT", f"workerPoolSpecs[{i}] must set exactly one of "
                                "python_package_spec and container_spec.")
            if p.get("pythonPackageSpec"):
                self._check_image(p["pythonPackageSpec"].get("executorImageUri", ""),
                                  f"workerPoolSpecs[{i}].python_package_spec.executor_image_uri", package=True)
            else:
                self._check_image(p["containerSpec"].get("imageUri", ""), f"workerPoolSpecs[{i}].container_spec")
        out = (body["jobSpec"].get("baseOutputDirectory") or {}).get("outputUriPrefix")
        if out:
            self._check_bucket(out, self._region(parent), "base_output_directory")
        jid = self._id()
        job = dict(body, name=f"{parent}/customJobs/{jid}", state="JOB_STATE_QUEUED", createTime=now_rfc3339(),
                   updateTime=now_rfc3339())
        self.custom_jobs[jid] = job
        self._log(jid, "INFO", "Waiting for job to be provisioned.")
        if self.executor == "trainer":
            run = TrainerRun(self, jid, job)
            self.runs[jid] = run
            run.start()
        return 200, job

    def _customJobs_get(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        jid = name.rsplit("/", 1)[-1]
        job = self.custom_jobs.get(jid)
        if job is None:
            raise FakeError(404, "NOT_FOUND", f"CustomJob {name} not found.")
        if self.executor == "simulate" and job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED",
                                                                "JOB_STATE_CANCELLED"):
            self._advance(jid, job)
        return 200, job

    def _advance(self, jid: str, job: dict[str, Any]) -> None:
        if job["state"] == "JOB_STATE_CANCELLING":
            self.set_job_state(jid, "JOB_STATE_CANCELLED")
            return
        script = self.job_script
        i = script.index(job["state"]) if job["state"] in script else 0
        if i + 1 < len(script):
            nxt = script[i + 1]
            if nxt == "JOB_STATE_FAILED":
                self._log(jid, "ERROR", "Traceback (most recent call last):")
                self._log(jid, "ERROR", "ValueError: the dataset has no train shards")
                job["error"] = {"code": 3, "message": "The replica workerpool0-0 exited with a non-zero status of 1."}
            self.set_job_state(jid, nxt)

    def set_job_state(self, jid: str, state: str) -> None:
        with self.lock:
            job = self.custom_jobs[jid]
            job["state"] = state
            job["updateTime"] = now_rfc3339()
            if state == "JOB_STATE_RUNNING":
                job.setdefault("startTime", now_rfc3339())
                if self.executor == "simulate":
                    self._log(jid, "INFO", "step 1/10 loss_g=1.0")
            if state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                job["endTime"] = now_rfc3339()
                self._log(jid, "INFO", f"Job {state.removeprefix('JOB_STATE_').lower()}.")

    def _filtered(self, items: list[dict[str, Any]], query: dict[str, list[str]], key: str) -> dict[str, Any]:
        """The filters genml uses (display_name="x", labels.KEY="v", joined by AND), one page at a
        time: at most min(pageSize, `max_page`) items, then a nextPageToken."""
        flt = (query.get("filter") or [""])[0]
        m = re.search(r'display_name="([^"]+)"', flt)
        if m:
            items = [i for i in items if i.get("displayName") == m.group(1)]
        for k, value in re.findall(r'labels\.([a-z0-9_-]+)="([^"]*)"', flt):
            items = [i for i in items if (i.get("labels") or {}).get(k) == value]
        size = min(int((query.get("pageSize") or ["100"])[0]), self.max_page)
        start = int((query.get("pageToken") or ["0"])[0])
        page = items[start:start + size]
        out: dict[str, Any] = {key: page} if page else {}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return out

    def _customJobs_list(self, name: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        return 200, self._filtered(list(self.custom_jobs.values()), query, "customJobs")

    def _batchPredictionJobs_list(self, name: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        return 200, self._filtered(list(self.batch_jobs.values()), query, "batchPredictionJobs")

    def _endpoints_list(self, name: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        return 200, self._filtered(list(self.endpoints.values()), query, "endpoints")

    def _models_list(self, name: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        return 200, self._filtered(list(self.models.values()), query, "models")

    def _customJobs_delete(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        jid = name.rsplit("/", 1)[-1]
        job = self.custom_jobs.get(jid)
        if job is None:
            raise FakeError(404, "NOT_FOUND", f"CustomJob {name} not found.")
        if job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            raise FakeError(400, "FAILED_PRECONDITION", f"CustomJob {jid} is still running; cancel it first.")
        return 200, self._operation(job["name"], {}, "DeleteOperationMetadata".removesuffix("OperationMetadata"),
                                    on_done=lambda: self.custom_jobs.pop(jid, None))

    def _customJobs_cancel(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        jid = name.split("/")[-1].split(":")[0]
        job = self.custom_jobs.get(jid)
        if job is None:
            raise FakeError(404, "NOT_FOUND", f"CustomJob {name} not found.")
        if job["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            raise FakeError(400, "FAILED_PRECONDITION", f"Cannot cancel CustomJob {jid} in state {job['state']}.")
        self.set_job_state(jid, "JOB_STATE_CANCELLING")
        run = self.runs.get(jid)
        if run is not None:
            run.cancel()
        return 200, {}

    # ---- logging -----------------------------------------------------------------------
    def _log(self, jid: str, severity: str, text: str, task: str = "workerpool0-0",
             timestamp: str | None = None) -> None:
        with self.lock:
            n = len(self.entries)
            entry: dict[str, Any] = {
                "logName": f"projects/{self.project}/logs/workerpool0-0", "insertId": f"{n:08d}",
                "timestamp": timestamp or now_rfc3339(), "severity": severity,
                "resource": {"type": "ml_job", "labels": {"job_id": jid, "project_id": self.project,
                                                          "task_name": task}}}
            if n % 2:             # the service uses both payload kinds
                entry["jsonPayload"] = {"message": text, "levelname": severity}
            else:
                entry["textPayload"] = text
            self.entries.append(entry)

    def log_late(self, jid: str, text: str, seconds_ago: float = 2.0) -> None:
        """An entry that arrives after later ones were listed, stamped `seconds_ago` earlier."""
        self._log(jid, "INFO", text, timestamp=rfc3339_ns(time.time_ns() - int(seconds_ago * 1e9)))

    def _list(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:   # logging entries:list
        self.log_reads += 1
        flt = body.get("filter", "")
        entries = list(self.entries)
        if 'resource.type="ml_job"' in flt:
            entries = [e for e in entries if e["resource"]["type"] == "ml_job"]
        for key in ("job_id", "task_name"):
            m = re.search(rf'resource\.labels\.{key}="([^"]+)"', flt)
            if m:
                entries = [e for e in entries if e["resource"]["labels"].get(key) == m.group(1)]
        m = re.search(r'timestamp>="([^"]+)"', flt)
        if m:
            floor = parse_ns(m.group(1))
            entries = [e for e in entries if parse_ns(e["timestamp"]) >= floor]
        if "severity>=ERROR" in flt:
            entries = [e for e in entries if e["severity"] in ("ERROR", "CRITICAL", "ALERT", "EMERGENCY")]
        entries.sort(key=lambda e: parse_ns(e["timestamp"]))      # stable: insertion order at equal times
        if body.get("orderBy", "timestamp asc").endswith("desc"):
            entries.reverse()
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or 50)
        page = entries[start:start + size]
        out: dict[str, Any] = {"entries": page} if page else {}
        if start + size < len(entries):
            out["nextPageToken"] = str(start + size)
        return 200, out

    # ---- operations --------------------------------------------------------------------
    def _operation(self, resource: str, response: dict[str, Any] | None, kind: str,
                   error: dict[str, Any] | None = None, on_done: Callable[[], None] | None = None) -> dict[str, Any]:
        if self.next_operation_error is not None:     # a recorded failure, e.g. an internal error
            error, self.next_operation_error = self.next_operation_error, None
            on_done = None
        op = {"name": f"{resource}/operations/{self._id()}", "metadata": {
            "@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{kind}OperationMetadata",
            "genericMetadata": {"createTime": now_rfc3339()}}}
        self.operations[op["name"]] = {"op": op, "polls": 0, "response": response, "error": error, "on_done": on_done}
        return op

    def _operation_get(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        rec = self.operations.get(name)
        if rec is None:
            raise FakeError(404, "NOT_FOUND", f"Operation {name} not found.")
        rec["polls"] += 1
        op = dict(rec["op"])
        if rec["polls"] >= self.op_polls:
            op["done"] = True
            if rec["on_done"] is not None:
                rec["on_done"]()
                rec["on_done"] = None
            if rec["error"]:
                op["error"] = rec["error"]
            else:
                op["response"] = rec["response"] or {}
        return 200, op

    # ---- models and endpoints ---------------------------------------------------------
    def _models_upload(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        parent = self._parent(name)
        self._check_parent(parent)
        model = body["model"]
        self._check_common(model, "model")
        if not model.get("containerSpec", {}).get("imageUri"):
            raise FakeError(400, "INVALID_ARGUMENT", "model.containerSpec.imageUri is required.")
        image = model["containerSpec"]["imageUri"]
        self._check_image(image, "model.container_spec")
        if not _prebuilt(image) and not _registry_ok(image):
            raise RuleError(400, "INVALID_ARGUMENT", f"model.container_spec.image_uri: {image} must identify an "
                            "image in Artifact Registry or Container Registry.")
        self._check_bucket(model.get("artifactUri", ""), self._region(parent), "model.artifact_uri")
        mid = self._id()
        mname = f"{parent}/models/{mid}"
        uri = model.get("artifactUri", "")
        error = None
        if _prebuilt(image) and not self._exists(uri.rstrip("/") + "/saved_model.pb"):
            error = {"code": 3, "message": f"There are no files under \"{uri}\" to copy (saved_model.pb missing)."}
        elif not _prebuilt(image) and not self._files(uri):
            error = {"code": 3, "message": f"There are no files under \"{uri}\" to copy."}
        stored = dict(model, name=mname, createTime=now_rfc3339())

        def done() -> None:
            if error is None:
                self.models[mid] = stored
                self.staged[mid] = self._stage(uri, mid)
        return 200, self._operation(mname, {"@type": f"{AIP_TYPES}.UploadModelResponse", "model": mname},
                                    "UploadModel", error, done)

    def _files(self, uri: str) -> list[Any]:
        if not uri.startswith("gs://"):
            return []
        bucket, _, prefix = uri[5:].partition("/")
        prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        return [b for b in self.storage.list_blobs(bucket, prefix=prefix) if not b.name.endswith("/")]

    def _stage(self, uri: str, mid: str) -> str:
        """Copy the artifactUri folder to the Model's AIP_STORAGE_URI, keeping its layout."""
        from google.api_core import exceptions as gexc
        try:
            self.storage.create_bucket(STAGING_BUCKET)
        except gexc.Conflict:
            pass
        prefix = uri[5:].partition("/")[2].strip("/")
        dest = f"model-{mid}/artifacts"
        staging = self.storage.bucket(STAGING_BUCKET)
        for blob in self._files(uri):
            rel = blob.name[len(prefix):].lstrip("/")
            staging.blob(f"{dest}/{rel}").upload_from_string(blob.download_as_bytes())
        return f"gs://{STAGING_BUCKET}/{dest}"

    def _versions(self, base: str) -> list[str]:
        """Folders directly under a gs:// folder that hold a saved_model.pb (TF Serving's versions)."""
        out = []
        for blob in self._files(base):
            rel = blob.name[len(base[5:].partition("/")[2].strip("/")):].strip("/").split("/")
            if len(rel) == 2 and rel[1] == "saved_model.pb":
                out.append(rel[0])
        return out

    def _container(self, model: dict[str, Any], **env: str) -> TFServingContainer:
        """The model's custom container, started (ContainerError if it never becomes ready)."""
        spec = model["containerSpec"]
        port = str(((spec.get("ports") or [{}])[0]).get("containerPort", 8080))
        variables = {"AIP_STORAGE_URI": self.staged[model["name"].rsplit("/", 1)[-1]], "AIP_HTTP_PORT": port,
                     "AIP_HEALTH_ROUTE": spec.get("healthRoute", ""), "AIP_PREDICT_ROUTE": spec.get("predictRoute", ""),
                     "AIP_PROJECT_NUMBER": PROJECT_NUMBER, "AIP_MODE": "PREDICTION", **env}
        container = TFServingContainer(spec, variables, self._versions)
        container.start()
        return container

    def _exists(self, uri: str) -> bool:
        if not uri.startswith("gs://"):
            return False
        bucket, _, key = uri[5:].partition("/")
        return self.storage.bucket(bucket).blob(key).exists()

    def _models_get(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        model = self.models.get(name.rsplit("/", 1)[-1])
        if model is None:
            raise FakeError(404, "NOT_FOUND", f"Model {name} not found.")
        return 200, model

    def _models_delete(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        mid = name.rsplit("/", 1)[-1]
        if mid not in self.models:
            raise FakeError(404, "NOT_FOUND", f"Model {name} not found.")
        for ep in self.endpoints.values():
            if any(d["model"] == name for d in ep.get("deployedModels", [])):
                raise FakeError(400, "FAILED_PRECONDITION",
                                f"Model {name} is deployed to {ep['name']}; undeploy it first.")
        return 200, self._operation(name, {}, "DeleteOperationMetadata".removesuffix("OperationMetadata"),
                                    on_done=lambda: self.models.pop(mid, None))

    def _endpoints_create(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        parent = self._parent(name)
        self._check_parent(parent)
        self._check_common(body, "endpoint")
        eid = self._id()
        ep = dict(body, name=f"{parent}/endpoints/{eid}", createTime=now_rfc3339(), deployedModels=[], trafficSplit={})
        return 200, self._operation(ep["name"], dict(ep, **{"@type": f"{AIP_TYPES}.Endpoint"}),
                                    "CreateEndpoint", on_done=lambda: self.endpoints.__setitem__(eid, ep))

    def _endpoint(self, name: str) -> dict[str, Any]:
        ep = self.endpoints.get(name.split("/")[-1].split(":")[0])
        if ep is None:
            raise FakeError(404, "NOT_FOUND", f"Endpoint {name} not found.")
        return ep

    def _endpoints_get(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        return 200, self._endpoint(name)

    def _endpoints_delete(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        ep = self._endpoint(name)
        if ep["deployedModels"]:
            raise FakeError(400, "FAILED_PRECONDITION", "The endpoint has deployed models; undeploy them first.")
        eid = ep["name"].rsplit("/", 1)[-1]
        return 200, self._operation(ep["name"], {}, "Delete", on_done=lambda: self.endpoints.pop(eid, None))

    def _endpoints_deployModel(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        ep = self._endpoint(name)
        dm = body["deployedModel"]
        mid = dm["model"].rsplit("/", 1)[-1]
        if mid not in self.models:
            raise FakeError(404, "NOT_FOUND", f"Model {dm['model']} not found.")
        if not dm.get("dedicatedResources") and not dm.get("automaticResources"):
            raise FakeError(400, "INVALID_ARGUMENT", "deployedModel needs dedicatedResources for this model type.")
        res = dm.get("dedicatedResources") or dm.get("automaticResources") or {}
        lo, hi = int(res.get("minReplicaCount", 1)), int(res.get("maxReplicaCount", res.get("minReplicaCount", 1)))
        if lo < 1 or hi < lo:
            raise RuleError(400, "INVALID_ARGUMENT",
                            "min_replica_count must be at least 1 and at most max_replica_count.")
        self._check_common(dm, "deployed_model")
        split = body.get("trafficSplit") or {}
        known = {d["id"] for d in ep["deployedModels"]} | {"0"}
        if split and (sum(int(v) for v in split.values()) != 100 or not set(split) <= known):
            raise RuleError(400, "INVALID_ARGUMENT", f"traffic_split must sum to 100 over the deployed models "
                            f"{sorted(known)} (\"0\" is the one being deployed): {split}.")
        if not split and ep["deployedModels"]:
            raise RuleError(400, "INVALID_ARGUMENT", "traffic_split is required when the endpoint has models.")
        did = self._id()
        deployed = dict(dm, id=did, createTime=now_rfc3339())
        model = self.models[mid]
        container: TFServingContainer | None = None
        if not _prebuilt(model["containerSpec"]["imageUri"]):
            try:
                container = self._container(model, AIP_DEPLOYED_MODEL_ID=did,
                                            AIP_ENDPOINT_ID=ep["name"].rsplit("/", 1)[-1])
            except ContainerError as exc:
                return 200, self._operation(ep["name"], None, "DeployModel", {"code": 9, "message": exc.message})

        def done() -> None:
            ep["deployedModels"].append(deployed)
            ep["trafficSplit"] = {did: 100}
            if container is not None:
                self.containers[did] = container
        return 200, self._operation(ep["name"], {"@type": f"{AIP_TYPES}.DeployModelResponse",
                                                 "deployedModel": {"id": did}}, "DeployModel", on_done=done)

    def _endpoints_undeployModel(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        ep = self._endpoint(name)
        did = body["deployedModelId"]
        if not any(d["id"] == did for d in ep["deployedModels"]):
            raise FakeError(400, "FAILED_PRECONDITION", f"Deployed model {did} is not on {ep['name']}.")

        def done() -> None:
            ep["deployedModels"] = [d for d in ep["deployedModels"] if d["id"] != did]
            ep["trafficSplit"] = {}
            self.containers.pop(did, None)
        return 200, self._operation(ep["name"], {}, "UndeployModel", on_done=done)

    # ---- what a person does in the Cloud console or with gcloud, behind genml's back ----------
    def undeploy_outside(self, endpoint: str) -> None:
        """`gcloud ai endpoints undeploy-model`: the endpoint stays, empty."""
        with self.lock:
            ep = self._endpoint(endpoint)
            for d in ep["deployedModels"]:
                self.containers.pop(d["id"], None)
            ep["deployedModels"], ep["trafficSplit"] = [], {}

    def delete_endpoint_outside(self, endpoint: str) -> None:
        """The console's delete: its models are undeployed, then the endpoint goes."""
        with self.lock:
            self.undeploy_outside(endpoint)
            self.endpoints.pop(self._endpoint(endpoint)["name"].rsplit("/", 1)[-1])

    def delete_model_outside(self, model: str) -> None:
        """The console's delete of a Model: undeployed from every endpoint first (the service
        refuses to delete a deployed Model); the endpoints stay."""
        with self.lock:
            mid = model.rsplit("/", 1)[-1]
            for ep in self.endpoints.values():
                if any(d["model"].rsplit("/", 1)[-1] == mid for d in ep["deployedModels"]):
                    self.undeploy_outside(ep["name"])
            del self.models[mid]

    def _serving_model(self, ep: dict[str, Any]) -> dict[str, Any]:
        if not ep["deployedModels"]:
            raise FakeError(400, "FAILED_PRECONDITION", f"Endpoint {ep['name']} does not have any deployed models.")
        return self.models[ep["deployedModels"][0]["model"].rsplit("/", 1)[-1]]

    def _endpoints_predict(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        ep = self._endpoint(name)
        model = self._serving_model(ep)
        container = self.containers.get(ep["deployedModels"][0]["id"])
        if container is not None:        # the PredictRequest body goes to the predict route as it is
            preds = self._in_container(container, body)["predictions"]
        else:
            preds = self._predict(model, "serving_default", body.get("instances", []))
        return 200, {"predictions": preds, "deployedModelId": ep["deployedModels"][0]["id"], "model": model["name"]}

    def _endpoints_rawPredict(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        ep = self._endpoint(name)
        model = self._serving_model(ep)
        payload = body                   # the raw body, as TF Serving receives it
        container = self.containers.get(ep["deployedModels"][0]["id"])
        if container is not None:
            return 200, self._in_container(container, payload)
        if "instances" not in payload:
            raise FakeError(400, "INVALID_ARGUMENT", '{"error": "Missing \'instances\' key"}')
        return 200, {"predictions": self._predict(model, payload.get("signature_name", "serving_default"),
                                                  payload.get("instances", []))}

    def _in_container(self, container: TFServingContainer, body: Any) -> dict[str, Any]:
        try:
            return container.predict(body, self.predict_fn)
        except ContainerError as exc:
            status = "NOT_FOUND" if exc.status == 404 else "FAILED_PRECONDITION"
            raise FakeError(exc.status if exc.status in (400, 404) else 500, status, exc.message) from exc

    def _predict(self, model: dict[str, Any], signature: str, instances: list[Any]) -> list[Any]:
        try:
            return self.predict_fn(model["artifactUri"], signature, instances)
        except (KeyError, ValueError, TypeError) as exc:
            raise FakeError(400, "FAILED_PRECONDITION", f"{{\"error\": \"{exc}\"}}") from exc

    # ---- batch prediction -------------------------------------------------------------
    def _batchPredictionJobs_create(self, name: str, query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        parent = self._parent(name)
        self._check_parent(parent)
        mid = body["model"].rsplit("/", 1)[-1]
        if mid not in self.models:
            raise FakeError(404, "NOT_FOUND", f"Model {body['model']} not found.")
        if body["inputConfig"].get("instancesFormat") != "jsonl":
            raise FakeError(400, "INVALID_ARGUMENT", "instancesFormat must be jsonl here.")
        self._check_common(body, "batch_prediction_job")
        res = body.get("dedicatedResources") or {}
        if res and (int(res.get("startingReplicaCount", 1)) < 1 or int(res.get("maxReplicaCount", 1)) < 1):
            raise RuleError(400, "INVALID_ARGUMENT", "replica counts must be at least 1.")
        for uri in body["inputConfig"].get("gcsSource", {}).get("uris", []):
            self._check_bucket(uri, self._region(parent), "input_config.gcs_source")
        self._check_bucket(body["outputConfig"]["gcsDestination"]["outputUriPrefix"], self._region(parent),
                           "output_config.gcs_destination")
        bid = self._id()
        job = dict(body, name=f"{parent}/batchPredictionJobs/{bid}", state="JOB_STATE_PENDING",
                   createTime=now_rfc3339())
        self.batch_jobs[bid] = job
        return 200, job

    def _batchPredictionJobs_get(self, name: str, query: Any, body: Any) -> tuple[int, Any]:
        job = self.batch_jobs.get(name.rsplit("/", 1)[-1])
        if job is None:
            raise FakeError(404, "NOT_FOUND", f"BatchPredictionJob {name} not found.")
        if job["state"] == "JOB_STATE_PENDING":
            job["state"] = "JOB_STATE_RUNNING"
        elif job["state"] == "JOB_STATE_RUNNING":
            self._run_batch(job)
        return 200, job

    def _run_batch(self, job: dict[str, Any]) -> None:
        model = self.models[job["model"].rsplit("/", 1)[-1]]
        lines: list[str] = []
        for uri in job["inputConfig"]["gcsSource"]["uris"]:
            bucket, _, key = uri[5:].partition("/")
            lines += [x for x in self.storage.bucket(bucket).blob(key).download_as_text().splitlines() if x.strip()]
        instances = [json.loads(x) for x in lines]
        good = [i for i in instances if not self.batch_refuse(i)]
        bad = [i for i in instances if self.batch_refuse(i)]
        if not _prebuilt(model["containerSpec"]["imageUri"]):
            try:                         # the batch job's nodes run the model's container too
                container = self._container(model)
                preds = container.predict({"instances": good}, self.predict_fn)["predictions"] if good else []
            except ContainerError as exc:
                job.update(state="JOB_STATE_FAILED", endTime=now_rfc3339(), error={"code": 9, "message": exc.message})
                return
        else:
            preds = self.predict_fn(model["artifactUri"], "serving_default", good) if good else []
        stamp = datetime.now(timezone.utc).strftime('%Y_%m_%dT%H_%M_%S_%fZ')
        out = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/") + \
            f"/prediction-{model.get('displayName', 'model')}-{stamp}"
        bucket, _, key = out[5:].partition("/")
        text = "".join(json.dumps({"instance": i, "prediction": p}) + "\n" for i, p in zip(good, preds))
        # the service's error lines are not always JSON: tuple-shaped lines have been reported
        errors = "".join(f"('Post request fails. Cannot get predictions. Error: Predictions are not in the "
                         f"response. Got: {{\"error\": \"refused {json.dumps(i)[:40]}\"}}.', 1)\n" for i in bad)
        self.storage.bucket(bucket).blob(key + "/prediction.results-00000-of-00001").upload_from_string(text)
        self.storage.bucket(bucket).blob(key + "/prediction.errors_stats-00000-of-00001").upload_from_string(errors)
        state = "JOB_STATE_SUCCEEDED" if not bad else ("JOB_STATE_PARTIALLY_SUCCEEDED" if good else "JOB_STATE_FAILED")
        job.update(state=state, endTime=now_rfc3339(), outputInfo={"gcsOutputDirectory": out},
                   completionStats={"successfulCount": str(len(preds)), "failedCount": str(len(bad))})
        if bad:
            job["partialFailures"] = [{"code": 3, "message": f"{len(bad)} instances failed"}]
            if not good:
                job["error"] = {"code": 3, "message": "All instances failed."}


def _prebuilt(uri: str) -> bool:
    return uri.split("/")[0].endswith("-docker.pkg.dev") and "/vertex-ai/" in uri


def _registry_ok(uri: str) -> bool:
    """Artifact Registry or Container Registry: where a Model's custom container may come from."""
    host = uri.split("/")[0] if "/" in uri else ""
    return host.endswith("-docker.pkg.dev") or host == "gcr.io" or host.endswith(".gcr.io")


class FakeError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


class RuleError(FakeError):
    """A request the real service refuses by one of its semantic rules: recorded in `rejected`."""


# ---- running the trainer for real ------------------------------------------------------------
def _sync_down(client: Any, bucket: str, prefix: str, dest: Path) -> None:
    for blob in client.list_blobs(bucket, prefix=prefix):
        if blob.name.endswith("/"):
            continue
        path = dest / blob.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob.download_as_bytes())


def _sync_up(client: Any, bucket: str, root: Path, prefix: str, seen: dict[str, tuple[int, float]]) -> None:
    """Upload files under root/prefix that changed since the last sync (as Cloud Storage FUSE would)."""
    base = root / prefix
    if not base.exists():
        return
    b = client.bucket(bucket)
    for path in sorted(base.rglob("*")):
        if not path.is_file() or ".tmp" in path.name:
            continue
        try:
            st = path.stat()
            key = path.relative_to(root).as_posix()
            sig = (st.st_size, st.st_mtime)
            if seen.get(key) == sig:
                continue
            b.blob(key).upload_from_filename(str(path))
            seen[key] = sig
        except FileNotFoundError:
            continue          # replaced while we looked (atomic rename by the trainer)


class TrainerRun:
    """One CustomJob's chief, run as `python -m trainer.task` from the uploaded sdist."""

    def __init__(self, fake: FakeVertex, jid: str, job: dict[str, Any]) -> None:
        self.fake, self.jid, self.job = fake, jid, job
        self.dir = fake.workdir / f"customjob-{jid}"
        self.mount = self.dir / "gcs"
        self.proc: subprocess.Popen[str] | None = None
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.cancelled.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def _map(self, value: str) -> str:
        if value.startswith("/gcs/"):
            return str(self.mount) + "/" + value[5:]
        if value.startswith("gs://"):
            return str(self.mount) + "/" + value[5:]
        return value

    def _run(self) -> None:
        fake, client = self.fake, self.fake.storage
        try:
            pool = self.job["jobSpec"]["workerPoolSpecs"][0]
            base = self.job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"].rstrip("/")
            bucket, _, job_prefix = base[5:].partition("/")
            fake.set_job_state(self.jid, "JOB_STATE_PENDING")
            self.dir.mkdir(parents=True, exist_ok=True)
            # the bucket mount: datasets, packages and this job's dir (for resumed jobs)
            for prefix in ("genml/datasets/", "genml/packages/", job_prefix + "/"):
                _sync_down(client, bucket, prefix, self.mount / bucket)
            pythonpath = [str(self.shim_dir())]
            if "containerSpec" in pool:
                # the image's command, with this venv's Python (TF comes from here, as from the image)
                spec = pool["containerSpec"]
                command = [sys.executable if c in ("python", "python3") else c for c in spec.get("command", [])]
                argv = [*command, *[self._map(a) for a in spec.get("args", [])]]
            else:
                # a prebuilt image: unpack the sdist and put it on PYTHONPATH
                spec = pool["pythonPackageSpec"]
                sdist = Path(self._map(spec["packageUris"][0]))
                with tarfile.open(sdist) as tar:
                    tar.extractall(self.dir / "pkg", filter="data")
                pkg_root = next((self.dir / "pkg").iterdir())
                if not (pkg_root / "setup.py").exists():
                    raise RuntimeError("the package has no setup.py")
                pythonpath.append(str(pkg_root))
                argv = [sys.executable, "-m", spec["pythonModule"], *[self._map(a) for a in spec.get("args", [])]]
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "TF_CONFIG", "CLUSTER_SPEC"))}
            local_base = self._map(base)
            env.update(PYTHONPATH=os.pathsep.join(pythonpath), GENML_FAKE_GCS_MOUNT=str(self.mount),
                       AIP_MODEL_DIR=local_base + "/model/",
                       AIP_CHECKPOINT_DIR=local_base + "/checkpoints/", AIP_TENSORBOARD_LOG_DIR=local_base + "/logs/",
                       CLOUD_ML_JOB_ID=self.jid, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="-1",
                       TF_CPP_MIN_LOG_LEVEL="2")
            if self.cancelled.is_set():
                fake.set_job_state(self.jid, "JOB_STATE_CANCELLED")
                return
            fake.set_job_state(self.jid, "JOB_STATE_RUNNING")
            self.proc = subprocess.Popen(argv, cwd=self.dir,
                                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            readers = [threading.Thread(target=self._pump, args=(s, sev), daemon=True)
                       for s, sev in ((self.proc.stdout, "INFO"), (self.proc.stderr, "ERROR"))]
            for r in readers:
                r.start()
            seen: dict[str, tuple[int, float]] = {}
            while self.proc.poll() is None:
                _sync_up(client, bucket, self.mount / bucket, job_prefix, seen)
                self.cancelled.wait(0.5)
            for r in readers:
                r.join(timeout=5)
            _sync_up(client, bucket, self.mount / bucket, job_prefix, seen)
            rc = self.proc.returncode
            if self.cancelled.is_set():
                fake.set_job_state(self.jid, "JOB_STATE_CANCELLED")
            elif rc == 0:
                fake.set_job_state(self.jid, "JOB_STATE_SUCCEEDED")
            else:
                with fake.lock:
                    fake.custom_jobs[self.jid]["error"] = {
                        "code": 3, "message": f"The replica workerpool0-0 exited with a non-zero status of {rc}."}
                fake.set_job_state(self.jid, "JOB_STATE_FAILED")
        except Exception as exc:  # noqa: BLE001 - the fake must never leave a job hanging
            with fake.lock:
                fake.custom_jobs[self.jid]["error"] = {"code": 13, "message": f"fake executor: {exc!r}"}
            fake._log(self.jid, "ERROR", f"fake executor: {exc!r}")
            fake.set_job_state(self.jid, "JOB_STATE_FAILED")

    def shim_dir(self) -> Path:
        """A sitecustomize that makes the mount behave like Cloud Storage FUSE for renames."""
        d = self.dir / "shim"
        d.mkdir(parents=True, exist_ok=True)
        (d / "sitecustomize.py").write_text(GCS_FUSE_SHIM)
        return d

    def _pump(self, stream: Any, severity: str) -> None:
        for line in stream:
            self.fake._log(self.jid, severity, line.rstrip("\n"))


# Loaded in the trainer's process: under the bucket mount, renaming a directory fails with
# ENOTSUP (os.rename/os.replace and TensorFlow's gfile rename), as on Cloud Storage FUSE
# without hierarchical namespace; renaming a file still works (it is a copy and a delete there).
GCS_FUSE_SHIM = r'''
import errno, importlib.abc, importlib.machinery, os, sys

_MOUNT = os.environ.get("GENML_FAKE_GCS_MOUNT", "")


def _refuse(src):
    path = os.fsdecode(src)
    if _MOUNT and os.path.abspath(path).startswith(_MOUNT + os.sep) and os.path.isdir(path):
        raise OSError(errno.ENOTSUP, "Cloud Storage FUSE: renaming a directory is not supported", path)


def _wrap(fn):
    def rename(src, dst, *args, **kwargs):
        _refuse(src)
        return fn(src, dst, *args, **kwargs)
    return rename


os.rename, os.replace = _wrap(os.rename), _wrap(os.replace)


class _Proxy:
    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def RenameFile(self, src, dst, overwrite=False):
        _refuse(src)
        return self._inner.RenameFile(src, dst, overwrite)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps TensorFlow's file_io once it is imported (gfile.rename does not go through os)."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow.python.lib.io.file_io":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        sys.meta_path.insert(0, self)
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            module._pywrap_file_io = _Proxy(module._pywrap_file_io)
        loader.exec_module = exec_module
        return spec


import importlib.util  # noqa: E402 - used only by the code below
sys.meta_path.insert(0, _Finder())
'''


# ---- serving a SavedModel like TF Serving's REST row format -------------------------------
class TFPredictor:
    """Loads an uploaded SavedModel from the emulated bucket and answers TF Serving row-format requests."""

    def __init__(self, storage_client: Any, cache: Path) -> None:
        self.storage = storage_client
        self.cache = Path(cache)
        self.loaded: dict[str, Any] = {}
        self.lock = threading.Lock()

    def _load(self, uri: str) -> Any:
        with self.lock:
            if uri not in self.loaded:
                import tensorflow as tf
                bucket, _, prefix = uri[5:].rstrip("/").partition("/")
                dest = self.cache / f"m{len(self.loaded)}"
                if dest.exists():
                    shutil.rmtree(dest)
                _sync_down(self.storage, bucket, prefix + "/", dest)
                self.loaded[uri] = tf.saved_model.load(str(dest / prefix))
            return self.loaded[uri]

    def predict(self, uri: str, signature: str, instances: list[Any]) -> list[Any]:
        import numpy as np
        import tensorflow as tf
        model = self._load(uri)
        if signature not in model.signatures:
            raise ValueError(f"Serving signature name: \"{signature}\" not found in signature def")
        fn = model.signatures[signature]
        specs = fn.structured_input_signature[1]
        inputs: dict[str, Any] = {}
        for key, spec in specs.items():
            if not all(isinstance(i, dict) and key in i for i in instances):
                raise ValueError(f"Missing input '{key}' in an instance")
            vals = [i[key] for i in instances]
            if spec.dtype == tf.string:
                vals = [base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode() for v in vals]
            inputs[key] = tf.constant(vals, dtype=spec.dtype)
        out = fn(**inputs)
        rows: list[dict[str, Any]] = [{} for _ in instances]
        for key, tensor in out.items():
            arr = tensor.numpy()
            for i in range(len(instances)):
                v = arr[i]
                if isinstance(v, bytes):
                    rows[i][key] = {"b64": base64.b64encode(v).decode()} if key.endswith("_bytes") else v.decode()
                else:
                    rows[i][key] = np.asarray(v).tolist()
        return rows
