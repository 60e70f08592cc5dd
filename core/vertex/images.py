"""Every container image genml names on Vertex AI, with its end-of-availability date.

Vertex AI lists an end-of-patch and an end-of-availability date for each of its
prebuilt containers on its "supported frameworks" page; after end of availability, jobs
and deployments naming the image may be refused, and a `pythonPackageSpec` may only name
a listed image. docs/vertex.md shows this table and where each figure comes from; keep
the two in step. `genml vertex check` warns WARN_DAYS ahead of a date and refuses after
it, and so do submit and deploy.

Training does not use a prebuilt Vertex image: it runs a `containerSpec` on a public
TensorFlow image from Docker Hub, which has no Vertex end-of-availability date, and
unpacks the uploaded trainer package from the /gcs mount at start (LAUNCHER). See
docs/vertex.md, "Containers", for why.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.errors import InvalidInput

WARN_DAYS = 90
# the address under which Google's docs index served the page when it was read
SUPPORTED_FRAMEWORKS_URL = "https://docs.cloud.google.com/gemini-enterprise-agent-platform/machine-learning/supported-frameworks"


@dataclass(frozen=True)
class Image:
    uri: str
    role: str                       # "training" or "serving"
    tensorflow: str
    end_of_availability: dt.date | None   # None: not a Vertex AI prebuilt image, no Vertex date
    source: str                     # where the date (or its absence) comes from

    @property
    def prebuilt(self) -> bool:
        return self.uri.startswith(("us-docker.pkg.dev/vertex-ai/", "europe-docker.pkg.dev/vertex-ai/",
                                    "asia-docker.pkg.dev/vertex-ai/"))


_READ = "Vertex AI supported-frameworks page, read 2026-12-02 (team notes, cloud.md)"
_HUB = "Docker Hub image, not on Vertex AI's list: no Vertex end-of-availability date"

TRAINING_CPU = "tensorflow/tensorflow:2.17.1"
TRAINING_GPU = "tensorflow/tensorflow:2.17.1-gpu"
SERVING_CPU = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"

TABLE: tuple[Image, ...] = (
    Image(TRAINING_CPU, "training", "2.17.1", None, _HUB),
    Image(TRAINING_GPU, "training", "2.17.1", None, _HUB),
    Image(SERVING_CPU, "serving", "2.15", dt.date(2027, 1, 14), _READ),
    # the prebuilt training images genml used before; listed so old profiles are caught
    Image("us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest", "training", "2.17",
          dt.date(2026, 7, 11), _READ),
    Image("us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-17.py310:latest", "training", "2.17",
          dt.date(2026, 7, 11), _READ),
)

# Runs in the training container: unpack the trainer sdist (argv[1], a /gcs/ path) and run
# `python -m trainer.task` with the remaining arguments. Standard library only, no pip, no
# network: the image brings TensorFlow, the bucket mount brings the package.
LAUNCHER = (
    "import os, runpy, sys, tarfile\n"
    "import tempfile\n"
    "dest = tempfile.mkdtemp(prefix='genml-trainer-')\n"
    "with tarfile.open(sys.argv[1]) as tar:\n"
    "    tar.extractall(dest)\n"
    "root = os.path.join(dest, sorted(os.listdir(dest))[0])\n"
    "sys.path.insert(0, root)\n"
    "sys.argv = ['trainer.task'] + sys.argv[2:]\n"
    "runpy.run_module('trainer.task', run_name='__main__', alter_sys=True)\n"
)


def find(uri: str) -> Image | None:
    return next((i for i in TABLE if i.uri == uri), None)


def status(uri: str, today: dt.date | None = None) -> tuple[str, str]:
    """("ok"|"warn"|"expired"|"unknown", a sentence for `genml vertex check`)."""
    today = today or dt.date.today()
    img = find(uri)
    if img is None:
        if uri.startswith(("us-docker.pkg.dev/vertex-ai/", "europe-docker.pkg.dev/vertex-ai/",
                           "asia-docker.pkg.dev/vertex-ai/")):
            return "unknown", (f"{uri} is a Vertex AI prebuilt image genml has no date for; look up its end of "
                               f"availability on {SUPPORTED_FRAMEWORKS_URL}")
        return "ok", f"{uri} (your own image: no Vertex AI date applies)"
    if img.end_of_availability is None:
        return "ok", f"{uri} (TensorFlow {img.tensorflow}; {img.source})"
    left = (img.end_of_availability - today).days
    if left < 0:
        return "expired", (f"{uri} reached Vertex AI's end of availability on {img.end_of_availability}; jobs and "
                           "deployments naming it may be refused")
    if left <= WARN_DAYS:
        return "warn", (f"{uri} reaches Vertex AI's end of availability on {img.end_of_availability} "
                        f"({left} days left); plan the move to a newer image (docs/vertex.md)")
    return "ok", f"{uri} (TensorFlow {img.tensorflow}; available until {img.end_of_availability})"


def require_available(uri: str, what: str, today: dt.date | None = None) -> None:
    """Refuse, before anything is submitted, an image past its end of availability."""
    state, text = status(uri, today)
    if state == "expired":
        raise InvalidInput(f"Cannot {what}: {text}.",
                           "Remove training_image/serving_image from the profile to use genml's defaults, or name "
                           f"a newer image (see docs/vertex.md and {SUPPORTED_FRAMEWORKS_URL}).")
