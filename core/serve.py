"""A REST server in the Vertex AI / TF Serving shape, on the standard library.

  POST /v1/models/NAME:predict   {"instances": [...]} -> {"predictions": [...]}
       (also /v1/models/NAME/versions/N:predict, N being the served version)
  GET  /v1/models/NAME           TF Serving's model status
  GET  /healthz                  {"status": "ok"} (no token needed: for load balancers)

Why these choices:
- http.server's ThreadingHTTPServer: one thread per connection, no new dependency.
  Requests parse their instances in their own thread and then meet in a micro-batcher:
  one model thread that merges whatever requests are waiting into one model call, so
  concurrent clients get batched throughput and a lone client no added latency.
- Loopback by default. Any other address needs a token, and then every route but
  /healthz needs `Authorization: Bearer TOKEN` (compared in constant time).
- Every request gets a JSON answer: a body over the size limit is 413, bad JSON or a
  request without an 'instances' list is 400, a request whose instances are all bad
  is 400 (with each one's error), a mix is 200 with errors inline for the bad ones, as
  the seed's clients expect keys to line up. A slow or silent client times out instead
  of holding a thread forever. `handle()` is a plain function of (method, path, headers,
  body) so the property tests can throw anything at it.
- SIGTERM (or Ctrl-C) stops accepting, lets requests in flight finish, then exits.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import re
import signal
import socket
import queue
import threading
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from core.errors import InvalidInput

MAX_BODY = 32 * 1024 * 1024
MAX_INSTANCES = 1024
READ_TIMEOUT_S = 30.0
PREDICT_RE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?:predict$")
MODEL_RE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?$")


def is_loopback(host: str) -> bool:
    """True if every address `host` resolves to is a loopback address."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise InvalidInput(f"Refusing to serve on {host!r} without a token: anyone who can reach it could use the model.",
                           "Serve on 127.0.0.1 (the default), or set a token: GENML_SERVE_TOKEN=SECRET or "
                           "--token-file FILE (clients then send 'Authorization: Bearer SECRET').")


class App:
    """Routing and validation, independent of sockets (so it can be property-tested)."""

    def __init__(self, predictor: Any, name: str, version: int | None = None, token: str | None = None,
                 max_body: int = MAX_BODY, max_instances: int = MAX_INSTANCES, parallel: int = 8) -> None:
        self.predictor = predictor
        self.name = name
        self.version = version
        self.token = token
        self.max_body = max_body
        self.max_instances = max_instances
        self._model_calls = threading.BoundedSemaphore(parallel)

    def _authorized(self, headers: Any) -> bool:
        if not self.token:
            return True
        got = headers.get("Authorization", "") or ""
        scheme, _, value = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def _version_ok(self, v: str | None) -> bool:
        return v is None or (self.version is not None and v.lstrip("vV") == str(self.version))

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        path = path.split("?", 1)[0]
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return 405, {"error": f"{method} is not allowed on {path}; use GET."}
            return 200, {"status": "ok", "model": self.name}
        if not self._authorized(headers):
            return 401, {"error": "Missing or wrong token: send 'Authorization: Bearer TOKEN'."}
        m = PREDICT_RE.match(path)
        if m:
            if method != "POST":
                return 405, {"error": f"{method} is not allowed on {path}; use POST."}
            if m["name"] != self.name or not self._version_ok(m["version"]):
                return 404, {"error": f"No model {m['name']!r} here; this server serves {self.name!r}."}
            return self.predict(body)
        m = MODEL_RE.match(path)
        if m:
            if method not in ("GET", "HEAD"):
                return 405, {"error": f"{method} is not allowed on {path}; use GET."}
            if m["name"] != self.name or not self._version_ok(m["version"]):
                return 404, {"error": f"No model {m['name']!r} here; this server serves {self.name!r}."}
            return 200, {"model_version_status": [{"version": str(self.version or 1), "state": "AVAILABLE",
                                                   "status": {"error_code": "OK", "error_message": ""}}]}
        return 404, {"error": f"No route {path}. Use POST /v1/models/{self.name}:predict or GET /healthz."}

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            req = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return 400, {"error": f"The body is not valid JSON: {str(exc)[:200]}"}
        if not isinstance(req, dict) or "instances" not in req:
            return 400, {"error": 'The body must be a JSON object with an "instances" list.'}
        instances = req["instances"]
        if not isinstance(instances, list) or not instances:
            return 400, {"error": '"instances" must be a non-empty list.'}
        if len(instances) > self.max_instances:
            return 400, {"error": f"{len(instances)} instances in one request; the limit is {self.max_instances}."}
        try:
            with self._model_calls:
                preds = self.predictor.predict(instances)
        except InvalidInput as exc:
            return 400, {"error": exc.message}
        if all("error" in p for p in preds):
            return 400, {"error": preds[0]["error"] if len(preds) == 1 else "Every instance was rejected; see predictions.",
                         "predictions": preds}
        return 200, {"predictions": preds}


class MicroBatcher:
    """One model thread that merges requests waiting at the same time into one model call.

    Opportunistic: the thread takes the first waiting request and whatever else queued up
    meanwhile (up to `max_batch` instances), so a lone request pays no added latency and
    concurrent clients share a batched call (a batch of 64 costs far less than 64 calls of
    one). Instances are parsed in the request threads; errors stay per instance, so merging
    requests cannot mix up their answers.
    """

    def __init__(self, predictor: Any, max_batch: int = 64) -> None:
        self.predictor = predictor
        self.embedding_size = predictor.embedding_size
        self.max_batch = max_batch
        self._q: queue.Queue[tuple[list[Any], Future[list[dict[str, Any]]]]] = queue.Queue()
        threading.Thread(target=self._loop, name="genml-model", daemon=True).start()

    def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        from core.predict import parse_instances
        parsed = parse_instances(instances, self.embedding_size)
        fut: Future[list[dict[str, Any]]] = Future()
        self._q.put((parsed, fut))
        return fut.result()

    def _loop(self) -> None:
        while True:
            batch = [self._q.get()]
            n = len(batch[0][0])
            while n < self.max_batch:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                n += len(item[0])
            flat = [p for parsed, _ in batch for p in parsed]
            try:
                preds = self.predictor.predict_parsed(flat)
            except BaseException as exc:  # noqa: BLE001 - hand the failure to every waiting request
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            i = 0
            for parsed, fut in batch:
                fut.set_result(preds[i:i + len(parsed)])
                i += len(parsed)


class _Handler(BaseHTTPRequestHandler):
    server_version = "genml"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True     # small JSON answers must not wait for a delayed ACK (~40 ms)
    app: App
    quiet: bool = True
    read_timeout: float = READ_TIMEOUT_S

    busy = False

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.read_timeout)
        self.server.track(self, True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.track(self, False)  # type: ignore[attr-defined]
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, obj: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        if self.request_version != "HTTP/0.9" and hasattr(self, "_headers_buffer"):
            self._headers_buffer.append(b"\r\n")      # end of headers, then the body: one write
            if self.command != "HEAD":
                self._headers_buffer.append(data)
            self.flush_headers()
        else:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    def _dispatch(self) -> None:
        self.busy = True
        try:
            self._answer()
        finally:
            self.busy = False
            if self.server.stopping:  # type: ignore[attr-defined]
                self.close_connection = True

    def _answer(self) -> None:
        try:
            body = b""
            if self.command == "POST":
                if self.headers.get("Transfer-Encoding"):
                    return self._send(411, {"error": "Send the body with Content-Length, not chunked."}, close=True)
                raw = self.headers.get("Content-Length")
                try:
                    length = int(raw) if raw is not None else -1
                except ValueError:
                    length = -1
                if length < 0:
                    return self._send(411, {"error": "A POST needs a Content-Length header."}, close=True)
                if length > self.app.max_body:
                    return self._send(413, {"error": f"The body is {length} bytes; the limit is {self.app.max_body}."},
                                      close=True)
                body = self.rfile.read(length)
                if len(body) < length:
                    return self._send(400, {"error": "The body ended before Content-Length bytes."}, close=True)
            status, obj = self.app.handle(self.command, self.path, self.headers, body)
            self._send(status, obj)
        except (TimeoutError, socket.timeout):
            self.close_connection = True
            try:
                self._send(408, {"error": "The request took too long to arrive."}, close=True)
            except OSError:
                pass
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug must still answer in JSON and keep serving
            self.log_error("internal error: %r", exc)
            try:
                self._send(500, {"error": f"internal error: {type(exc).__name__}"}, close=True)
            except OSError:
                pass

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _dispatch

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, headers too long) as JSON too."""
        try:
            self._send(code, {"error": message or HTTPStatus(code).phrase}, close=True)
        except (OSError, ValueError):
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = False            # shutdown waits for requests in flight
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], app: App, quiet: bool = True,
                 read_timeout: float = READ_TIMEOUT_S) -> None:
        self.stopping = False
        self._handlers: set[_Handler] = set()
        self._handlers_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"app": app, "quiet": quiet, "read_timeout": read_timeout})
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, handler)

    def track(self, handler: _Handler, add: bool) -> None:
        with self._handlers_lock:
            (self._handlers.add if add else self._handlers.discard)(handler)

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish, drop idle keep-alive connections.

        Without the last step, shutting down would wait for every idle keep-alive client
        to time out (block_on_close joins the connection threads).
        """
        self.stopping = True
        self.shutdown()
        with self._handlers_lock:
            idle = [h for h in self._handlers if not h.busy]
        for h in idle:
            try:
                h.connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        self.server_close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"


def make_server(predictor: Any, name: str, host: str = "127.0.0.1", port: int = 8080, *,
                token: str | None = None, version: int | None = None, quiet: bool = True,
                max_body: int = MAX_BODY, read_timeout: float = READ_TIMEOUT_S) -> Server:
    check_bind(host, token)
    app = App(MicroBatcher(predictor), name, version=version, token=token, max_body=max_body)
    try:
        return Server((host, port), app, quiet=quiet, read_timeout=read_timeout)
    except OSError as exc:
        raise InvalidInput(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
                           "Pick another --port (0 picks a free one) or stop whatever holds it.") from exc


def serve_until_signal(server: Server, on_ready: Callable[[Server], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; then finish requests in flight and close."""
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    try:
        if on_ready:
            on_ready(server)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()                # joins the request threads (block_on_close)
        t.join()
        for s, h in old.items():
            signal.signal(s, h)


__all__ = ["App", "Server", "make_server", "serve_until_signal", "check_bind", "is_loopback"]
