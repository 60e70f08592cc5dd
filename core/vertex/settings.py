"""A Vertex AI profile from the config file, with defaults and checks.

```toml
[profiles.cloud]
backend = "vertex"
project = "my-project"
region = "us-central1"
bucket = "my-bucket"                 # gs:// optional
service_account = "trainer@my-project.iam.gserviceaccount.com"   # optional
machine_type = "n1-standard-8"
replicas = 1
accelerator_type = ""                # e.g. NVIDIA_TESLA_T4: switches to the GPU image
accelerator_count = 0
credentials = "/path/key.json"       # optional; otherwise Application Default Credentials
serving_image = ""                   # optional: TensorFlow Serving in your Artifact Registry, e.g.
                                     # "us-central1-docker.pkg.dev/my-project/dockerhub/tensorflow/serving:2.17.1"
```

`serving_image` empty means Vertex AI's prebuilt TensorFlow image (images.SERVING_CPU);
any other image is run as TensorFlow Serving in a custom container (core/vertex/serving.py).

Endpoints can be pointed elsewhere (`api_endpoint`, `logging_endpoint`,
`storage_endpoint`), which is how the tests run the real clients against local
emulators; a loopback endpoint uses anonymous credentials.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlparse

from core.errors import InvalidInput
from core.vertex import images


_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass
class Settings:
    project: str = ""
    region: str = "us-central1"
    bucket: str = ""
    service_account: str = ""
    machine_type: str = "n1-standard-8"
    replicas: int = 1
    accelerator_type: str = ""
    accelerator_count: int = 0
    serving_machine_type: str = "n1-standard-2"
    batch_machine_type: str = "n1-standard-4"
    training_image: str = ""
    serving_image: str = ""
    credentials: str = ""
    api_endpoint: str = ""
    logging_endpoint: str = ""
    storage_endpoint: str = ""
    call_deadline_s: float = 120.0       # one API call, retries included
    operation_deadline_s: float = 1800.0  # one long-running operation (deploy can take 20+ minutes)
    retry_initial_s: float = 1.0
    poll_interval_s: float = 10.0          # long-running operations and batch jobs
    refresh_interval_s: float = 5.0        # re-read a running job from Vertex AI at most this often
    models_refresh_interval_s: float = 30.0  # check the models' Vertex AI resources at most this often
    log_reads_per_minute: int = 60
    name: str = "vertex"

    @classmethod
    def from_profile(cls, profile: dict[str, Any]) -> "Settings":
        known = {f.name: f.type for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in profile.items():
            if key not in known or value is None:
                continue
            default = getattr(cls, key)
            try:
                if isinstance(default, bool):
                    kwargs[key] = bool(value)
                elif isinstance(default, int):
                    kwargs[key] = int(value)
                elif isinstance(default, float):
                    kwargs[key] = float(value)
                else:
                    kwargs[key] = str(value)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"The profile setting {key} = {value!r} is not a {type(default).__name__}.",
                                   "Fix it with `genml vertex configure` or in the config file.") from exc
        import os
        kwargs.setdefault("project",
                          os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT", ""))
        s = cls(**kwargs)
        s.bucket = s.bucket.removeprefix("gs://").strip("/")
        if s.credentials:
            s.credentials = os.path.expanduser(s.credentials)
        return s

    def validate(self) -> "Settings":
        """Everything that can be checked without a network call, with the fix in the hint."""
        where = f"profile {self.name!r}"
        if not self.project:
            raise InvalidInput(f"No Google Cloud project set in {where}.",
                               "Run `genml vertex configure --project PROJECT --region REGION --bucket BUCKET`.")
        if not _REGION.match(self.region):
            raise InvalidInput(f"{self.region!r} in {where} is not a region name.",
                               "Use a Vertex AI region such as us-central1 or europe-west4.")
        if not self.bucket or not _BUCKET.match(self.bucket):
            raise InvalidInput(f"No usable bucket in {where} ({self.bucket!r}).",
                               f"Create one in {self.region} (`gcloud storage buckets create gs://NAME "
                               f"--location {self.region}`) and run `genml vertex configure --bucket NAME`.")
        if self.replicas < 1:
            raise InvalidInput(f"replicas in {where} must be at least 1.", "Use 1 for a single machine.")
        return self

    def validate_serving_image(self) -> "Settings":
        """`genml vertex configure` refuses a serving image Vertex AI cannot pull (a Docker Hub
        name would only fail at deploy, minutes later); deploy and `vertex check` refuse it too,
        but training with such a profile is not held up."""
        img = images.find(self.serving_image, "serving")
        if img is not None and img.kind == "tf-serving" and not images.vertex_serving_registry(img.uri):
            raise InvalidInput(f"serving_image in profile {self.name!r} is {img.uri}, but Vertex AI runs a model's "
                               "container only from Artifact Registry or Container Registry.",
                               images.serving_way_out(self.project, self.region, self.name) + ".")
        return self

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def aiplatform_endpoint(self) -> str:
        return self.api_endpoint or f"https://{self.region}-aiplatform.googleapis.com/"

    @property
    def logging_api_endpoint(self) -> str:
        return self.logging_endpoint or self.api_endpoint or "https://logging.googleapis.com/"

    @property
    def anonymous(self) -> bool:
        """Loopback endpoints are emulators: no credentials are looked for."""
        host = urlparse(self.aiplatform_endpoint).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")

    @property
    def uses_gpu(self) -> bool:
        return bool(self.accelerator_type) and self.accelerator_count > 0

    def training_image_uri(self, gpu: bool | None = None) -> str:
        if self.training_image:
            return self.training_image
        return images.TRAINING_GPU if (self.uses_gpu if gpu is None else gpu) else images.TRAINING_CPU

    def serving_image_uri(self) -> str:
        return self.serving_image or images.SERVING_CPU

    def gs(self, *parts: str) -> str:
        """gs://BUCKET/genml/<parts>"""
        return "gs://" + "/".join([self.bucket, "genml", *[p.strip("/") for p in parts if p]])

    def gcs_mount(self, gs_uri: str) -> str:
        """gs://B/x -> /gcs/B/x: the trainer sees buckets through Vertex's Cloud Storage FUSE mount."""
        return "/gcs/" + gs_uri.removeprefix("gs://")


MULTI_REGIONS = {"us", "eu", "asia"}
DUAL_REGIONS = {"nam4", "eur4", "eur5", "eur7", "eur8", "asia1"}


def bucket_location_ok(bucket_location: str, region: str) -> bool:
    """Vertex AI needs a single-region bucket in the job's own region.

    Multi-region (US, EU, ASIA) and dual-region (NAM4, EUR4, ...) buckets are refused at
    model upload and batch prediction ("It must be in the same regional location as the
    service location"), and the /gcs mount in training does not support them either.
    """
    return bucket_location.lower() == region.lower()


def bucket_location_kind(bucket_location: str) -> str:
    """"multi-region", "dual-region" or "region", for the error message."""
    loc = bucket_location.lower()
    if loc in MULTI_REGIONS:
        return "multi-region"
    if loc in DUAL_REGIONS or (not re.match(r"^[a-z]+-[a-z]+\d+$", loc) and loc):
        return "dual-region"
    return "region"
