"""A custom Vertex AI prediction container running TensorFlow Serving, as the fake starts it.

Vertex AI runs a Model's `containerSpec` (command, args, ports, routes) on a node: it
expands `$(VAR)` references in command and args from its AIP_* variables and `env`
(Kubernetes' rule: an unknown reference stays as written, `$$` escapes), sends health
checks (GET healthRoute) and predictions (POST predictRoute) to the first listed port
(8080 when none is listed), and a deploy fails if the server never answers the health
route with 200.

This emulates what `tensorflow_model_server` (tensorflow/serving images) does with such a
spec, the way TFPredictor emulates the prebuilt image: only `--flag=value` flags it knows
(an unknown flag ends the process), the REST API only when --rest_api_port is set (its
default is 0, off; the image's own entrypoint sets 8501), versions only in numbered
folders under --model_base_path holding saved_model.pb (the highest is served), and REST
paths /v1/models/NAME[/versions/N] (status) and /v1/models/NAME[/versions/N]:predict.
Predictions are answered by the fake's `predict_fn` on the served version's folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

PredictFn = Callable[[str, str, list[Any]], list[Any]]
DEFAULT_PORT = 8080
SERVER = "tensorflow_model_server"
# the image's ENTRYPOINT (tf_serving_entrypoint.sh), with its environment defaults
ENTRYPOINT = [SERVER, "--port=8500", "--rest_api_port=8501", "--model_name=model", "--model_base_path=/models/model"]
FLAGS = {"port": int, "grpc_socket_path": str, "rest_api_port": int, "rest_api_num_threads": int,
         "rest_api_timeout_in_ms": int, "model_name": str, "model_base_path": str, "model_config_file": str,
         "enable_batching": bool, "batching_parameters_file": str, "file_system_poll_wait_seconds": int,
         "tensorflow_intra_op_parallelism": int, "tensorflow_inter_op_parallelism": int}
NOT_READY = ("Model server never became ready. Please validate that your model file or container configuration "
             "are valid.")


class ContainerError(Exception):
    """The container would not come up, or its server answered an error (status, body)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) from env; unknown references unchanged; $$(VAR) is a literal $(VAR)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$(" + m.group(2) + ")"
        return env.get(m.group(2), m.group(0))
    return re.sub(r"(\$)?\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


@dataclass
class Server:
    model_name: str
    base_path: str
    rest_port: int


def parse(argv: list[str]) -> Server:
    """What tensorflow_model_server makes of its command line, or why it exits."""
    if not argv or argv[0].rsplit("/", 1)[-1] != SERVER:
        raise ContainerError(f"exec: {argv[0] if argv else '(nothing)'}: not found in the TF Serving image")
    values: dict[str, Any] = {"port": 8500, "rest_api_port": 0, "model_name": "default", "model_base_path": ""}
    for arg in argv[1:]:
        m = re.fullmatch(r"--([a-z_]+)(?:=(.*))?", arg, re.S)
        if not m or m.group(1) not in FLAGS:
            raise ContainerError(f"{SERVER}: unknown command line flag {arg!r}")
        kind, raw = FLAGS[m.group(1)], m.group(2)
        if raw is None and kind is not bool:
            raise ContainerError(f"{SERVER}: flag {arg!r} needs a value (--{m.group(1)}=VALUE)")
        try:
            values[m.group(1)] = True if raw is None else kind(raw) if kind is not bool else raw == "true"
        except ValueError as exc:
            raise ContainerError(f"{SERVER}: bad value for {arg!r}") from exc
    if values["rest_api_port"] and values["rest_api_port"] == values["port"]:
        raise ContainerError(f"{SERVER}: --port and --rest_api_port cannot be the same")
    if not values["model_base_path"]:
        raise ContainerError(f"{SERVER}: --model_base_path or --model_config_file is required")
    return Server(values["model_name"], values["model_base_path"], values["rest_api_port"])


class TFServingContainer:
    """One node's container for a Model: started from its containerSpec, then asked over REST."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str], list_dirs: Callable[[str], list[str]]) -> None:
        """`list_dirs(gs_uri)` names the version folders under a gs:// folder that hold saved_model.pb."""
        self.spec = spec
        variables = dict(env)
        for e in spec.get("env") or []:              # later entries may reference earlier ones
            variables[e["name"]] = expand(e.get("value", ""), variables)
        command = [expand(c, variables) for c in spec.get("command") or []]
        args = [expand(a, variables) for a in spec.get("args") or []]
        self.argv = (command + args) if command else ENTRYPOINT + args
        self.port = int(((spec.get("ports") or [{}])[0]).get("containerPort", DEFAULT_PORT))
        self.list_dirs = list_dirs
        self.server: Server | None = None
        self.version = ""

    def start(self) -> None:
        """Run the server and health-check it as Vertex AI does; ContainerError(NOT_READY ...) if it never is."""
        try:
            self.server = parse(self.argv)
        except ContainerError as exc:
            raise ContainerError(f"{NOT_READY} (container exited: {exc.message})") from exc
        base = self.server.base_path.rstrip("/")
        versions = sorted((int(v) for v in self.list_dirs(base) if v.isdigit())) if base.startswith("gs://") else []
        self.version = str(versions[-1]) if versions else ""
        if not self.server.rest_port:
            raise ContainerError(f"{NOT_READY} (no REST API: --rest_api_port is not set)")
        if self.server.rest_port != self.port:
            raise ContainerError(f"{NOT_READY} (nothing listens on port {self.port}; the REST API is on "
                                 f"{self.server.rest_port})")
        status, body = self.get(self.spec.get("healthRoute") or "/v1/endpoints/E/deployedModels/D")
        if status != 200:
            raise ContainerError(f"{NOT_READY} (GET {self.spec.get('healthRoute')} answered {status}: {body})")

    def _model(self, path: str, verb: str) -> str:
        """The version folder a REST path names, or ContainerError(404)."""
        assert self.server is not None
        suffix = r":predict" if verb == "POST" else ""
        m = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?" + suffix, path)
        if not m:
            raise ContainerError(f'{{"error": "Malformed request: {verb} {path}"}}', 404)
        if m.group(1) != self.server.model_name or not self.version or m.group(2) not in (None, self.version):
            raise ContainerError(f'{{"error": "Servable not found for request: Latest({m.group(1)})"}}', 404)
        return f"{self.server.base_path.rstrip('/')}/{self.version}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            self._model(path, "GET")
        except ContainerError as exc:
            return exc.status, exc.message
        return 200, '{"model_version_status": [{"version": "%s", "state": "AVAILABLE"}]}' % self.version

    def predict(self, body: Any, predict_fn: PredictFn) -> dict[str, Any]:
        """POST predictRoute with `body` (what Vertex AI forwards): TF Serving's answer, or ContainerError."""
        folder = self._model(self.spec.get("predictRoute") or "/v1/endpoints/E/deployedModels/D:predict", "POST")
        if not isinstance(body, dict) or "instances" not in body:
            raise ContainerError('{"error": "Missing \'instances\' key"}', 400)
        try:
            return {"predictions": predict_fn(folder, body.get("signature_name", "serving_default"),
                                              body["instances"])}
        except (KeyError, ValueError, TypeError) as exc:
            raise ContainerError(f'{{"error": "{exc}"}}', 400) from exc
