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

Serving may leave the prebuilt image the same way: a `serving_image` in the user's
Artifact Registry that holds TensorFlow Serving (an Artifact Registry remote repository
proxying Docker Hub serves `tensorflow/serving:2.17.1` with nothing built) is run as a
custom container (core/vertex/serving.py). Such an image is a "tf-serving" entry: no
Vertex AI date, its TensorFlow version read from its tag. Vertex AI pulls a model's
container only from Artifact Registry or Container Registry, not from Docker Hub.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from core.errors import InvalidInput

WARN_DAYS = 90
# the address under which Google's docs index served the page when it was read
SUPPORTED_FRAMEWORKS_URL = "https://docs.cloud.google.com/gemini-enterprise-agent-platform/machine-learning/supported-frameworks"


_PREBUILT = ("us-docker.pkg.dev/vertex-ai/", "europe-docker.pkg.dev/vertex-ai/", "asia-docker.pkg.dev/vertex-ai/")


@dataclass(frozen=True)
class Image:
    uri: str
    role: str                       # "training" or "serving"
    tensorflow: str                 # "" when the tag names no version
    end_of_availability: dt.date | None   # None: not a Vertex AI prebuilt image, no Vertex date
    source: str                     # where the date (or its absence) comes from
    kind: str = "prebuilt"          # "prebuilt" (Vertex AI's), "docker-hub", or "tf-serving" (the user's registry)

    @property
    def prebuilt(self) -> bool:
        return self.uri.startswith(_PREBUILT)


_READ = "Vertex AI supported-frameworks page, read 2026-12-02 (team notes, cloud.md)"
_HUB = "Docker Hub image, not on Vertex AI's list: no Vertex end-of-availability date"
_CUSTOM = "your registry's image, run as a custom container: no Vertex AI end-of-availability date"

TRAINING_CPU = "tensorflow/tensorflow:2.17.1"
TRAINING_GPU = "tensorflow/tensorflow:2.17.1-gpu"
SERVING_CPU = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
# The way out of SERVING_CPU's date: this Docker Hub image through an Artifact Registry
# remote repository (REMOTE_REPO), as REGION-docker.pkg.dev/PROJECT/REMOTE_REPO/TF_SERVING.
TF_SERVING = "tensorflow/serving:2.17.1"
REMOTE_REPO = "dockerhub"

TABLE: tuple[Image, ...] = (
    Image(TRAINING_CPU, "training", "2.17.1", None, _HUB, "docker-hub"),
    Image(TRAINING_GPU, "training", "2.17.1", None, _HUB, "docker-hub"),
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


def registry_host(uri: str) -> str:
    """The registry an image reference names (Docker's rule: a first part with a dot or a colon)."""
    first = uri.split("/", 1)[0]
    return first if "/" in uri and ("." in first or ":" in first or first == "localhost") else "docker.io"


def vertex_serving_registry(uri: str) -> bool:
    """Artifact Registry or Container Registry: the only places Vertex AI pulls a model's container from."""
    host = registry_host(uri)
    return host.endswith("-docker.pkg.dev") or host == "gcr.io" or host.endswith(".gcr.io")


def tag_version(uri: str) -> str:
    """"2.17.1" from ...:2.17.1 or ...:2.17.1-gpu; "" for :latest, a digest or no tag."""
    last = uri.rsplit("/", 1)[-1]
    if "@" in last or ":" not in last:
        return ""
    m = re.match(r"^(\d+\.\d+(?:\.\d+)?)(?:$|-)", last.rsplit(":", 1)[1])
    return m.group(1) if m else ""


def tf_serving_uri(project: str, region: str, repo: str = REMOTE_REPO) -> str:
    """TF_SERVING as the profile names it, through a remote repository of Docker Hub."""
    return f"{region}-docker.pkg.dev/{project}/{repo}/{TF_SERVING}"


def find(uri: str, role: str = "") -> Image | None:
    """The table's row for `uri`; for role "serving", any image that is not Vertex AI's own is a
    "tf-serving" entry (genml runs it as TensorFlow Serving, core/vertex/serving.py)."""
    row = next((i for i in TABLE if i.uri == uri), None)
    if row is None and role == "serving" and uri and not uri.startswith(_PREBUILT):
        return Image(uri, "serving", tag_version(uri), None, _CUSTOM, "tf-serving")
    return row


def serving_way_out(project: str = "PROJECT", region: str = "REGION", profile: str = "PROFILE") -> str:
    """The commands that move serving off the prebuilt image: nothing is built, Artifact
    Registry pulls TensorFlow Serving from Docker Hub on first use."""
    return ("Serve on TensorFlow Serving through an Artifact Registry remote repository of Docker Hub instead "
            f"(nothing to build): `gcloud services enable artifactregistry.googleapis.com --project={project}`, "
            f"`gcloud artifacts repositories create {REMOTE_REPO} --project={project} --repository-format=docker "
            f"--location={region} --mode=remote-repository --remote-docker-repo=DOCKER-HUB`, then "
            f"`genml vertex configure --profile {profile} --serving-image {tf_serving_uri(project, region)}` "
            "(docs/vertex.md, Containers)")


def _tf_serving_status(img: Image) -> tuple[str, str]:
    if not vertex_serving_registry(img.uri):
        return "invalid", (f"{img.uri} is on {registry_host(img.uri)}, but Vertex AI runs a model's container only "
                           "from Artifact Registry or Container Registry")
    trainer_tf = tag_version(TRAINING_CPU)
    what = f"{img.uri} (TensorFlow Serving {img.tensorflow or '?'}; {img.source}"
    if not img.tensorflow:
        return "warn", (f"{what}); its tag names no version, so the TensorFlow that serves can change under it: "
                        f"pin one, e.g. :{TF_SERVING.split(':')[1]} (the trainer exports with TensorFlow {trainer_tf})")
    if img.tensorflow.split(".")[:2] != trainer_tf.split(".")[:2]:
        return "warn", (f"{what}); the trainer exports with TensorFlow {trainer_tf}, and a SavedModel can need ops "
                        f"an older TensorFlow lacks: use :{TF_SERVING.split(':')[1]}")
    return "ok", f"{what}; the trainer exports with TensorFlow {trainer_tf})"


def _status(uri: str, today: dt.date, role: str) -> tuple[str, str, bool]:
    """(state, sentence, whether the serving way out applies)."""
    img = find(uri, role)
    if img is None:
        if uri.startswith(_PREBUILT):
            return "unknown", (f"{uri} is a Vertex AI prebuilt image genml has no date for; look up its end of "
                               f"availability on {SUPPORTED_FRAMEWORKS_URL}"), False
        return "ok", f"{uri} (your own image: no Vertex AI date applies)", False
    if img.kind == "tf-serving":
        state, text = _tf_serving_status(img)
        return state, text, state == "invalid"
    if img.end_of_availability is None:
        return "ok", f"{uri} (TensorFlow {img.tensorflow}; {img.source})", False
    left = (img.end_of_availability - today).days
    if left < 0:
        return "expired", (f"{uri} reached Vertex AI's end of availability on {img.end_of_availability}; jobs and "
                           "deployments naming it may be refused"), img.role == "serving"
    if left <= WARN_DAYS:
        return "warn", (f"{uri} reaches Vertex AI's end of availability on {img.end_of_availability} "
                        f"({left} days left); plan the move to a newer image (docs/vertex.md)"), img.role == "serving"
    return "ok", f"{uri} (TensorFlow {img.tensorflow}; available until {img.end_of_availability})", False


def status(uri: str, today: dt.date | None = None, role: str = "", *, project: str = "PROJECT",
           region: str = "REGION", profile: str = "PROFILE") -> tuple[str, str]:
    """("ok"|"warn"|"expired"|"invalid"|"unknown", a sentence for `genml vertex check`).

    A prebuilt serving image near or past its date, and a serving image Vertex AI cannot
    pull, name the way out (serving_way_out) with the profile's project, region and name.
    """
    state, text, way_out = _status(uri, today or dt.date.today(), role)
    return state, text + (". " + serving_way_out(project, region, profile) if way_out else "")


def require_available(uri: str, what: str, today: dt.date | None = None, role: str = "", *,
                      project: str = "PROJECT", region: str = "REGION", profile: str = "PROFILE") -> None:
    """Refuse, before anything is submitted, an image past its end of availability, or a
    serving image Vertex AI cannot pull."""
    state, text, way_out = _status(uri, today or dt.date.today(), role)
    if state not in ("expired", "invalid"):
        return
    if way_out:
        raise InvalidInput(f"Cannot {what}: {text}.", serving_way_out(project, region, profile) + ".")
    raise InvalidInput(f"Cannot {what}: {text}.",
                       "Remove training_image/serving_image from the profile to use genml's defaults, or name "
                       f"a newer image (see docs/vertex.md and {SUPPORTED_FRAMEWORKS_URL}).")
