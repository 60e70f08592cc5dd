"""Vertex AI error handling from recorded error bodies (HttpMockSequence: no server needed)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from core.errors import CloudError, InvalidInput
from core.vertex.clients import Clients, load_credentials
from core.vertex.errors import ApiError
from core.vertex.settings import Settings, bucket_location_kind, bucket_location_ok
from tests.fakes.fixtures import without_credentials

QUOTA_429 = {"error": {
    "code": 429, "status": "RESOURCE_EXHAUSTED",
    "message": "The following quota metrics exceed quota limits: aiplatform.googleapis.com/custom_model_training_cpus",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RESOURCE_EXHAUSTED",
                 "domain": "aiplatform.googleapis.com",
                 "metadata": {"quota_metric": "aiplatform.googleapis.com/custom_model_training_cpus",
                              "quota_location": "us-central1"}}]}}
RATE_429 = {"error": {
    "code": 429, "status": "RESOURCE_EXHAUSTED",
    "message": "Quota exceeded for quota metric 'Resource management requests' and limit "
               "'Resource management requests per minute per region' of service 'aiplatform.googleapis.com'",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                 "domain": "googleapis.com", "metadata": {"service": "aiplatform.googleapis.com"}}]}}
DISABLED_403 = {"error": {
    "code": 403, "status": "PERMISSION_DENIED",
    "message": "Vertex AI API has not been used in project 123 before or it is disabled. Enable it by visiting "
               "https://console.developers.google.com/apis/api/aiplatform.googleapis.com/overview?project=123",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                 "domain": "googleapis.com", "metadata": {"service": "aiplatform.googleapis.com",
                                                          "consumer": "projects/123"}},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
                    "description": "Google developers console API activation",
                    "url": "https://console.developers.google.com/apis/api/aiplatform.googleapis.com/overview?project=123"}]}]}}
UNAVAILABLE_503 = {"error": {"code": 503, "status": "UNAVAILABLE", "message": "The service is currently unavailable."}}
OK_JOB = {"name": "projects/123/locations/us-central1/customJobs/42", "state": "JOB_STATE_QUEUED"}


def _clients(responses: list[tuple[int, dict[str, Any]]], **settings: Any) -> tuple[Clients, Any, list[float]]:
    s = Settings(project="p", region="us-central1", bucket="b", api_endpoint="http://127.0.0.1:9/",
                 retry_initial_s=0.5, **settings)
    slept: list[float] = []
    clients = Clients(s, sleep=slept.append)
    seq = HttpMockSequence([({"status": str(code)}, json.dumps(body)) for code, body in responses])
    clients._local.http = seq
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    svc = build("aiplatform", "v1", credentials=AnonymousCredentials(), static_discovery=True,
                cache_discovery=False, client_options=ClientOptions(api_endpoint=s.aiplatform_endpoint))
    req = svc.projects().locations().customJobs().create(parent="projects/p/locations/us-central1", body={})
    return clients, req, slept


def test_quota_exhausted_names_the_quota_and_region_and_is_not_retried() -> None:
    clients, req, slept = _clients([(429, QUOTA_429), (200, OK_JOB)])
    with pytest.raises(CloudError) as e:
        clients.call(req, "Submitting the training job")
    assert "custom_model_training_cpus" in e.value.message and "us-central1" in e.value.message
    assert "does not retry" in e.value.hint and "--replicas" in e.value.hint
    assert slept == []


def test_rate_limits_and_5xx_are_retried_with_growing_backoff() -> None:
    clients, req, slept = _clients([(429, RATE_429), (503, UNAVAILABLE_503), (503, UNAVAILABLE_503), (200, OK_JOB)])
    assert clients.call(req, "Submitting")["name"].endswith("/42")
    assert len(slept) == 3 and slept[0] < slept[1] < slept[2]


def test_transient_errors_give_up_at_the_deadline() -> None:
    clients, req, slept = _clients([(503, UNAVAILABLE_503)] * 20)
    with pytest.raises(CloudError) as e:
        clients.call(req, "Submitting", deadline_s=3.0)
    assert "503" in e.value.message and "try again" in e.value.hint
    assert 0 < len(slept) < 20


def test_retry_checks_whether_a_lost_answer_had_succeeded() -> None:
    clients, req, _ = _clients([(503, UNAVAILABLE_503), (200, OK_JOB)])
    assert clients.call(req, "Submitting", before_retry=lambda: {"name": "found"}) == {"name": "found"}


def test_disabled_api_says_how_to_enable_it() -> None:
    clients, req, _ = _clients([(403, DISABLED_403)])
    with pytest.raises(CloudError) as e:
        clients.call(req, "Listing jobs")
    assert "aiplatform.googleapis.com" in e.value.message
    assert "gcloud services enable aiplatform.googleapis.com --project p" in e.value.hint


def test_api_error_parsing_of_quota_failure_details() -> None:
    body = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"subject": "custom_model_training_nvidia_t4_gpus", "description": "in europe-west4"}]}]}}
    err = ApiError.parse(429, json.dumps(body).encode())
    assert not err.retryable and err.quota() == "custom_model_training_nvidia_t4_gpus"


def test_missing_credentials_name_adc_and_the_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    without_credentials(monkeypatch, tmp_path)
    with pytest.raises(CloudError) as e:
        load_credentials(Settings(project="p", bucket="b"))
    assert "GOOGLE_APPLICATION_CREDENTIALS" in e.value.hint
    assert "gcloud auth application-default login" in e.value.hint
    with pytest.raises(CloudError) as e:
        load_credentials(Settings(project="p", bucket="b", credentials=str(tmp_path / "nope.json")))
    assert "nope.json" in e.value.message and "GOOGLE_APPLICATION_CREDENTIALS" in e.value.hint


def test_profile_validation_and_bucket_regions() -> None:
    with pytest.raises(InvalidInput, match="project"):
        Settings().validate()
    with pytest.raises(InvalidInput, match="region"):
        Settings(project="p", region="central", bucket="b12").validate()
    s = Settings.from_profile({"project": "p", "bucket": "gs://my-bucket/", "replicas": "3"}).validate()
    assert s.bucket == "my-bucket" and s.replicas == 3 and s.parent == "projects/p/locations/us-central1"
    assert s.aiplatform_endpoint == "https://us-central1-aiplatform.googleapis.com/"
    # Vertex AI takes a single-region bucket in the job's region, nothing else: multi-region
    # (US, EU) and dual-region (NAM4, EUR4) buckets are refused at model upload and batch
    # prediction, and the /gcs mount does not support them
    assert bucket_location_ok("US-CENTRAL1", "us-central1")
    for loc in ("US", "NAM4", "EU", "EUR4", "EUROPE-WEST4", "US-EAST1"):
        assert not bucket_location_ok(loc, "us-central1"), loc
    assert not bucket_location_ok("EUR4", "europe-west4") and not bucket_location_ok("EU", "europe-west1")
    assert bucket_location_kind("NAM4") == "dual-region" and bucket_location_kind("US") == "multi-region"
    assert bucket_location_kind("EUROPE-WEST4") == "region"


def test_a_service_account_key_file_is_used_and_named(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from core.vertex.clients import describe_credentials
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "key.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "1",
                                "private_key": pem, "client_email": "trainer@p.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    s = Settings.from_profile({"project": "p", "bucket": "b12", "credentials": str(path)})
    creds = load_credentials(s)
    assert creds.service_account_email == "trainer@p.iam.gserviceaccount.com"
    text = describe_credentials(s, creds)
    assert "trainer@p.iam.gserviceaccount.com" in text and str(path) in text
    path.write_text("{}")
    with pytest.raises(CloudError, match="not a service-account key"):
        load_credentials(s)
