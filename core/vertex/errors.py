"""Turning Google Cloud's error bodies into CloudErrors a person can act on.

Google APIs answer with `{"error": {"code", "message", "status", "details": [...]}}`
where `details` carries typed hints (ErrorInfo with a reason, QuotaFailure, Help links).
We read those rather than the message text where we can, because the text changes.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from core.errors import CloudError

CREDENTIALS_HINT = ("Run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
                    "(or `credentials = \"/path/key.json\"` in the profile) to a service-account key file.")

RETRYABLE_STATUS = {500, 502, 503, 504}
RATE_LIMIT_REASONS = {"RATE_LIMIT_EXCEEDED", "rateLimitExceeded", "userRateLimitExceeded"}


@dataclass
class ApiError:
    """The parts of an error body we act on."""

    code: int
    status: str = ""
    message: str = ""
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, code: int, content: bytes | str | None) -> "ApiError":
        try:
            body = json.loads(content or b"{}")
        except (ValueError, TypeError):
            body = {}
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if not isinstance(err, dict):           # OAuth-style {"error": "invalid_grant", ...}
            err = {"message": str(err)}
        out = cls(code=int(err.get("code") or code), status=str(err.get("status", "")),
                  message=str(err.get("message", "")) or (content.decode("utf-8", "replace")[:300]
                                                          if isinstance(content, bytes) else str(content or "")))
        for d in err.get("details", []) or []:
            kind = str(d.get("@type", ""))
            if kind.endswith("ErrorInfo"):
                out.reason = str(d.get("reason", ""))
                out.metadata = {str(k): str(v) for k, v in (d.get("metadata") or {}).items()}
            elif kind.endswith("QuotaFailure"):
                out.violations = list(d.get("violations") or [])
            elif kind.endswith("Help"):
                out.links = [str(link.get("url")) for link in d.get("links") or [] if link.get("url")]
        for e in err.get("errors", []) or []:      # the older JSON API shape (GCS, Logging)
            out.reason = out.reason or str(e.get("reason", ""))
        return out

    @property
    def is_rate_limit(self) -> bool:
        """Per-minute request limits: waiting fixes them, unlike resource quotas."""
        if self.reason in RATE_LIMIT_REASONS:
            return True
        text = self.message.lower()
        return self.code == 429 and ("per minute" in text or "rate limit" in text or "read requests" in text)

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_STATUS or (self.code == 429 and self.is_rate_limit)

    def quota(self) -> str:
        """The quota's metric name, e.g. custom_model_training_cpus."""
        for key in ("quota_metric", "quota_limit", "quota_id"):
            if self.metadata.get(key):
                return self.metadata[key].rsplit("/", 1)[-1]
        for v in self.violations:
            subject = str(v.get("subject", "")) + " " + str(v.get("description", ""))
            m = re.search(r"([a-z0-9_]+_(?:cpus|gpus|tpus|count|requests|per_minute[a-z_]*)[a-z0-9_]*)", subject)
            if m:
                return m.group(1)
        m = re.search(r"aiplatform\.googleapis\.com/([A-Za-z0-9_]+)", self.message) or \
            re.search(r"'([a-z0-9_]+(?:cpus|gpus|tpus|_count)[a-z0-9_]*)'", self.message) or \
            re.search(r"\b(custom_model_[a-z0-9_]+|[a-z_]+_(?:cpus|gpus))\b", self.message)
        return m.group(1) if m else ""

    def quota_region(self, default: str) -> str:
        for key in ("quota_location", "location", "region"):
            if self.metadata.get(key):
                return self.metadata[key]
        m = re.search(r"region[: ]+'?([a-z]+-[a-z]+\d+)", self.message)
        return m.group(1) if m else default


def to_cloud_error(err: ApiError, *, what: str, project: str, region: str) -> CloudError:
    """Pick the message and the hint for one failed call; the HTTP status rides along as `.http_status`."""
    exc = _to_cloud_error(err, what=what, project=project, region=region)
    exc.http_status = err.code  # type: ignore[attr-defined]  # ad hoc, read by the retry loop
    exc.rate_limited = err.code == 429 and err.is_rate_limit  # type: ignore[attr-defined]  # as above
    return exc


def _to_cloud_error(err: ApiError, *, what: str, project: str, region: str) -> CloudError:
    msg = err.message.strip() or f"HTTP {err.code}"
    console = f"https://console.cloud.google.com/iam-admin/quotas?project={project}"
    if err.code == 429 and not err.is_rate_limit:
        quota = err.quota() or "a resource quota"
        where = err.quota_region(region)
        return CloudError(f"{what} needs more of the quota {quota} in {where} than project {project} has left "
                          f"(429 RESOURCE_EXHAUSTED: {msg}).",
                          "Use fewer or smaller machines (--replicas, --machine-type), wait for running jobs to "
                          f"finish, pick another region in the profile, or request more {quota} in {where} at "
                          f"{console}. genml does not retry this on its own.")
    if err.code == 429:
        return CloudError(f"{what}: Google Cloud kept rate-limiting requests ({msg}).",
                          "Wait a minute and try again; fewer genml windows polling at once also helps.")
    if err.reason in ("SERVICE_DISABLED", "accessNotConfigured") or "has not been used in project" in msg \
            or "is disabled" in msg:
        service = err.metadata.get("service") or _service_in(msg) or "aiplatform.googleapis.com"
        return CloudError(f"{what}: the API {service} is not enabled in project {project}.",
                          f"Enable it with `gcloud services enable {service} --project {project}` "
                          "(or in the console), wait a minute, and try again.")
    if err.code == 401 or err.reason in ("ACCESS_TOKEN_EXPIRED", "CREDENTIALS_MISSING", "invalid_grant"):
        return CloudError(f"{what}: Google Cloud did not accept the credentials ({msg}).", CREDENTIALS_HINT)
    if err.code == 403:
        if err.reason == "BILLING_DISABLED" or "billing" in msg.lower():
            return CloudError(f"{what}: billing is not enabled for project {project}.",
                              f"Link a billing account at https://console.cloud.google.com/billing/linkedaccount?project={project}.")
        if "actas" in msg.lower() or "serviceaccounts" in msg.lower() or "service account" in msg.lower():
            return CloudError(f"{what}: permission denied on the service account ({msg}).",
                              "Running jobs as a service account needs iam.serviceAccounts.actAs on it: grant your "
                              "account Service Account User (roles/iam.serviceAccountUser) on that service account, "
                              "or remove service_account from the profile.")
        return CloudError(f"{what}: permission denied ({msg}).",
                          "Grant the account genml runs as the roles Vertex AI User (roles/aiplatform.user) and "
                          "Storage Object Admin on the bucket (and, with service_account in the profile, Service "
                          "Account User on that account, for iam.serviceAccounts.actAs); see `genml vertex check`.")
    if err.code == 404:
        return CloudError(f"{what}: not found ({msg}).",
                          "Check the project and region in the profile (`genml vertex check`); the resource may have "
                          "been deleted in the console.")
    if err.code == 400 and "location" in msg.lower() and ("bucket" in msg.lower() or "gs://" in msg):
        return CloudError(f"{what}: {msg}", "Use a single-region bucket in the profile's region, not a multi- or "
                          "dual-region one (see `genml vertex check`).")
    if err.code in (400, 413) and ("payload size" in msg.lower() or "too large" in msg.lower()):
        return CloudError(f"{what}: the request is larger than Vertex AI accepts ({msg}).",
                          "Send fewer or smaller images at once; a shared public endpoint takes at most 1.5 MB "
                          "a request.")
    if err.code == 400:
        return CloudError(f"{what}: Vertex AI rejected the request ({msg}).",
                          "This is likely a genml bug or an unsupported option; check the machine type and region.")
    if err.code in RETRYABLE_STATUS:
        return CloudError(f"{what}: Google Cloud kept failing ({err.code} {err.status}: {msg}).",
                          "This is usually temporary; try again in a few minutes (https://status.cloud.google.com).")
    return CloudError(f"{what}: {err.code} {err.status} {msg}".strip(), "See `genml vertex check`.")


def _service_in(text: str) -> str:
    m = re.search(r"([a-z]+\.googleapis\.com)", text)
    return m.group(1) if m else ""
