"""Google API clients built offline from the discovery documents google-api-python-client ships.

`static_discovery=True` means no request goes out to fetch the API description, so
building works behind a proxy, in tests and on a plane. Calls go through `Clients.call`,
which retries what waiting fixes (5xx, per-minute rate limits, dropped connections)
with exponential backoff and jitter until a deadline, and turns everything else into
a CloudError whose hint says what to change.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

from core.errors import CloudError
from core.vertex.errors import CREDENTIALS_HINT, ApiError, to_cloud_error
from core.vertex.settings import Settings

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
MAX_BACKOFF_S = 32.0


def load_credentials(settings: Settings) -> Any:
    """A key file from the profile, else Application Default Credentials; loopback needs none."""
    import google.auth
    from google.auth import exceptions as auth_exc
    from google.auth.credentials import AnonymousCredentials

    if settings.anonymous:
        return AnonymousCredentials()
    try:
        if settings.credentials:
            from google.oauth2 import service_account
            return service_account.Credentials.from_service_account_file(settings.credentials, scopes=SCOPES)
        creds, _ = google.auth.default(scopes=SCOPES, quota_project_id=settings.project or None)
        return creds
    except FileNotFoundError as exc:
        raise CloudError(f"The key file {settings.credentials} does not exist.", CREDENTIALS_HINT) from exc
    except (ValueError, auth_exc.MalformedError) as exc:
        raise CloudError(f"The key file {settings.credentials} is not a service-account key: {exc}.",
                         CREDENTIALS_HINT) from exc
    except auth_exc.DefaultCredentialsError as exc:
        raise CloudError(f"No Google Cloud credentials found ({exc}).", CREDENTIALS_HINT) from exc


def describe_credentials(settings: Settings, creds: Any) -> str:
    """Which credentials genml found and where from: the usual confusion with ADC."""
    import os
    if settings.anonymous:
        return f"none needed (emulator at {settings.aiplatform_endpoint})"
    who = getattr(creds, "service_account_email", None) or getattr(creds, "signer_email", None)
    kind = f"service account {who}" if who and who != "default" else \
        ("the Compute Engine metadata server" if type(creds).__module__.endswith("compute_engine.credentials")
         else "your user account")
    if settings.credentials:
        return f"{kind}, from the key file {settings.credentials}"
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return f"{kind}, from GOOGLE_APPLICATION_CREDENTIALS={os.environ['GOOGLE_APPLICATION_CREDENTIALS']}"
    return f"{kind}, from Application Default Credentials (gcloud auth application-default login)"


class Clients:
    """The aiplatform v1 and logging v2 clients and a storage client for one profile."""

    def __init__(self, settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._lock = threading.Lock()
        self._local = threading.local()
        self._creds: Any = None
        self._storage: Any = None

    # ---- construction -----------------------------------------------------------------
    @property
    def credentials(self) -> Any:
        with self._lock:
            if self._creds is None:
                self._creds = load_credentials(self.settings)
            return self._creds

    def _service(self, api: str, version: str, endpoint: str) -> Any:
        self.credentials            # fail early, with the credentials hint, before any request is built
        return _built(api, version, endpoint)

    @property
    def aiplatform(self) -> Any:
        """projects().locations() of aiplatform v1 on the regional endpoint."""
        return self._service("aiplatform", "v1", self.settings.aiplatform_endpoint).projects().locations()

    @property
    def logging(self) -> Any:
        return self._service("logging", "v2", self.settings.logging_api_endpoint)

    @property
    def storage(self) -> Any:
        from core.vertex import storage as gcs
        with self._lock:
            if self._storage is None:
                self._storage = gcs.make_client(self.settings.project, None if self.settings.anonymous
                                                else self._creds_unlocked(), self.settings.storage_endpoint)
                gcs.set_default_client(self._storage)
            return self._storage

    def _creds_unlocked(self) -> Any:
        if self._creds is None:
            self._creds = load_credentials(self.settings)
        return self._creds

    def _http(self) -> Any:
        """httplib2 is not thread-safe: one authorised connection per thread."""
        http = getattr(self._local, "http", None)
        if http is None:
            import google_auth_httplib2
            import httplib2
            http = google_auth_httplib2.AuthorizedHttp(self.credentials, http=httplib2.Http(timeout=60))
            self._local.http = http
        return http

    # ---- calls ------------------------------------------------------------------------
    def call(self, request: Any, what: str, *, deadline_s: float | None = None, retry: bool = True,
             before_retry: Callable[[], Any] | None = None) -> Any:
        """Execute one request, retrying transient failures with backoff until the deadline.

        `before_retry` lets a caller look for the result of an attempt that may have
        succeeded on the server although the answer was lost (e.g. a CustomJob created just
        before a 503); if it returns something, that is the result.
        """
        from google.auth import exceptions as auth_exc
        from googleapiclient.errors import HttpError

        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.settings.call_deadline_s)
        delay = self.settings.retry_initial_s
        while True:
            try:
                return request.execute(http=self._http(), num_retries=0)
            except HttpError as exc:
                err = ApiError.parse(exc.resp.status, exc.content)
                wait = _retry_after(exc) or delay
                if not (retry and err.retryable) or time.monotonic() + wait > deadline:
                    raise to_cloud_error(err, what=what, project=self.settings.project,
                                         region=self.settings.region) from exc
            except auth_exc.RefreshError as exc:
                raise CloudError(f"{what}: the credentials could not be refreshed ({exc}).", CREDENTIALS_HINT) from exc
            except auth_exc.DefaultCredentialsError as exc:
                raise CloudError(f"{what}: no Google Cloud credentials found ({exc}).", CREDENTIALS_HINT) from exc
            except (OSError, TimeoutError) as exc:
                wait = delay
                if not retry or time.monotonic() + wait > deadline:
                    raise CloudError(f"{what}: could not reach {self.settings.aiplatform_endpoint} ({exc}).",
                                     "Check the network connection (and any proxy settings) and try again.") from exc
            except Exception as exc:  # httplib2's own errors do not derive from OSError
                if type(exc).__module__.split(".")[0] != "httplib2":
                    raise
                wait = delay
                if not retry or time.monotonic() + wait > deadline:
                    raise CloudError(f"{what}: the connection failed ({exc}).", "Try again in a minute.") from exc
            self._sleep(wait * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_BACKOFF_S)
            if before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found


_built_lock = threading.Lock()
_built_cache: dict[tuple[str, str, str], Any] = {}


def _built(api: str, version: str, endpoint: str) -> Any:
    """Building from the 3 MB aiplatform document takes ~0.6 s, so it happens once per process.

    The service carries no credentials of its own: every request is executed with the
    calling thread's authorised http (Clients._http).
    """
    key = (api, version, endpoint)
    with _built_lock:
        if key not in _built_cache:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials
            from googleapiclient import discovery
            _built_cache[key] = discovery.build(
                api, version, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint),
                static_discovery=True, cache_discovery=False)
        return _built_cache[key]


def _retry_after(exc: Any) -> float | None:
    try:
        value = exc.resp.get("retry-after")
        return float(value) if value else None
    except (TypeError, ValueError, AttributeError):
        return None
