"""The container a Vertex AI Model serves on, and the artifact layout it needs.

A prebuilt Vertex AI TensorFlow image needs only `imageUri`: it finds the SavedModel at
the model's artifactUri itself. A TensorFlow Serving image in the user's registry (an
images.find(..., "serving") entry of kind "tf-serving") is a custom container, so genml
says how to run it:

- `tensorflow_model_server` with its REST API on PORT, the first (and only) port listed,
  because Vertex AI sends prediction and health requests to the first port;
- `--model_base_path=$(AIP_STORAGE_URI)`: Vertex AI copies the artifactUri folder there
  and expands `$(VAR)` in command and args; TF Serving reads gs:// itself;
- predictRoute and healthRoute on TF Serving's own REST paths for MODEL_NAME.

TF Serving serves numbered version folders under its base path, never a SavedModel at
the base path itself, and the trainer exports to JOB/model/ (docs/contracts.md). So for
a TF Serving image the model's files are copied (server side, in the bucket) to
JOB/serving/VERSION/ and artifactUri names JOB/serving/. The request and answer bodies
are TF Serving's `{"instances": ...}` / `{"predictions": ...}` either way (the prebuilt
image runs TF Serving too), so core/vertex/predict.py is the same for both.
"""
from __future__ import annotations

from typing import Any

from core.errors import InvalidState
from core.vertex import images
from core.vertex import storage as gcs
from trainer.contract import SAVED_MODEL

MODEL_NAME = "genml"       # TF Serving's --model_name: the name in its REST paths
PORT = 8080                # Vertex AI's default container port, given explicitly
VERSION = "1"              # the version folder TF Serving loads
SERVING_DIR = "serving"    # JOB/serving/VERSION/: a copy of JOB/model/ laid out for TF Serving


def is_tf_serving(image_uri: str) -> bool:
    img = images.find(image_uri, "serving")
    return img is not None and img.kind == "tf-serving"


def container_spec(image_uri: str) -> dict[str, Any]:
    """Model.containerSpec for models:upload."""
    if not is_tf_serving(image_uri):
        return {"imageUri": image_uri}
    return {"imageUri": image_uri,
            "command": ["tensorflow_model_server"],
            "args": [f"--rest_api_port={PORT}", f"--model_name={MODEL_NAME}",
                     "--model_base_path=$(AIP_STORAGE_URI)"],
            "ports": [{"containerPort": PORT}],
            "predictRoute": f"/v1/models/{MODEL_NAME}:predict",
            "healthRoute": f"/v1/models/{MODEL_NAME}"}


def artifact_uri(client: Any, model_uri: str, image_uri: str) -> str:
    """The artifactUri to upload: the model folder itself for a prebuilt image; for TF
    Serving, its parent's SERVING_DIR/ after copying the model into SERVING_DIR/VERSION/
    (server side, saved_model.pb last as the trainer writes it; safe to repeat)."""
    model_uri = model_uri.rstrip("/")
    if not is_tf_serving(image_uri):
        return model_uri + "/"
    base = model_uri.rsplit("/", 1)[0] + f"/{SERVING_DIR}"
    if not gcs.copy_prefix(client, model_uri, f"{base}/{VERSION}", last=SAVED_MODEL):
        raise InvalidState(f"{model_uri} holds no files to serve.",
                           "The trainer writes the model when a job succeeds; check the job's log.")
    return base + "/"
