"""A REST server in the Vertex AI / TF Serving shape, on the standard library.

  POST /v1/models/NAME:predict   {"instances": [...]} -> {"predictions": [...]}
       (also /v1/models/NAME/versions/N:predict, N being the served version)
  GET  /v1/models/NAME           TF Serving's model status
  GET  /healthz                  {"status": "ok"} (no token needed: for load balancers)

Why these choices:
- One asyncio event loop owns every socket; only whole requests reach a thread. A slow,
  silent or hostile client costs a coroutine and a small buffer, not a thread: the old
  thread-per-connection server let 400 slow sockets (a header line every 10 s) use up
  file descriptors and starve everyone. Parsing and prediction run in a small thread pool,
  then meet in a micro-batcher: one model thread that merges whatever requests are waiting
  into one model call, so concurrent clients get batched throughput and a lone client no
  added latency.
- Limits (`Limits`), each answered at once rather than by a slow death:
  * a deadline for the whole request, headers and body together (408), not per recv;
  * at most `max_connections` open sockets; the next one gets a 503 and is closed;
  * the token is checked as soon as the headers are in, before any body is read;
  * a budget of body bytes in flight across all requests (503 with Retry-After when spent),
    and a decoded-pixel budget per request (core/predict.py), so no one request can take
    all the memory or the CPU and stall the small ones;
  * a listen backlog of 1024, so a burst of clients waits in the kernel's queue instead of
    overflowing it and retrying after seconds.
- Strict HTTP/1.1 framing, so nothing can be smuggled past a proxy: Content-Length is
  digits only, duplicates must agree, Transfer-Encoding is refused, and a body is read (or
  the connection closed) on every method, so its bytes never run as a second request.
- Loopback by default. Any other address needs a token, and then every route but
  /healthz needs `Authorization: Bearer TOKEN` (compared in constant time).
- Every request gets a JSON answer: a body over the size limit is 413, bad JSON or a
  request without an 'instances' list is 400, a request whose instances are all bad
  is 400 (with each one's error), a mix is 200 with errors inline for the bad ones, as
  the seed's clients expect keys to line up. `handle()` is a plain function of (method,
  path, headers, body) so the property tests can throw anything at it.
- SIGTERM (or Ctrl-C) stops accepting, closes connections that have no request in
  flight (a client trickling its body cannot hold shutdown), lets predictions in flight
  finish for up to `grace_s`, then closes the rest.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import queue
import re
import resource
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable

from core.errors import InvalidInput

MAX_BODY = 32 * 1024 * 1024
MAX_INSTANCES = 1024
READ_TIMEOUT_S = 30.0
PREDICT_RE = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?:predict")
MODEL_RE = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?")
DIGITS_RE = re.compile(rb"[0-9]{1,15}")
TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")     # RFC 9110 token: a header name or method


@dataclass
class Limits:
    """What one server will take on; the defaults suit a small model on one machine."""

    request_timeout_s: float = READ_TIMEOUT_S   # whole request: request line, headers and body
    header_timeout_s: float = 10.0              # request line and headers (idle keep-alive too)
    max_connections: int = 1024                 # open sockets; the next gets 503 and is closed
    max_header_bytes: int = 16 * 1024
    max_body: int = MAX_BODY
    max_inflight_bytes: int = 64 * 1024 * 1024  # bodies being read or handled, all clients together
    workers: int = 16                           # threads that parse and wait on the model
    grace_s: float = 10.0                       # shutdown: how long predictions in flight may finish
    backlog: int = 1024


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
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise InvalidInput(f"Refusing to serve on {host!r} without a token: anyone who can reach it could use "
                           "the model.",
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

    def precheck(self, method: str, path: str, headers: Any) -> tuple[int, dict[str, Any]] | None:
        """The answer a request gets whatever its body (token, route, method), or None.

        Runs as soon as the headers are in: a request without the token is refused before
        a byte of its body is read."""
        path = path.split("?", 1)[0]
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return 405, {"error": f"{method} is not allowed on {path}; use GET."}
            return None
        if not self._authorized(headers):
            return 401, {"error": "Missing or wrong token: send 'Authorization: Bearer TOKEN'."}
        m = PREDICT_RE.fullmatch(path)
        if m:
            if method != "POST":
                return 405, {"error": f"{method} is not allowed on {path}; use POST."}
        else:
            m = MODEL_RE.fullmatch(path)
            if not m:
                return 404, {"error": f"No route {path}. Use POST /v1/models/{self.name}:predict or GET /healthz."}
            if method not in ("GET", "HEAD"):
                return 405, {"error": f"{method} is not allowed on {path}; use GET."}
        if m["name"] != self.name or not self._version_ok(m["version"]):
            return 404, {"error": f"No model {m['name']!r} here; this server serves {self.name!r}."}
        return None

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        early = self.precheck(method, path, headers)
        if early:
            return early
        path = path.split("?", 1)[0]
        if path == "/healthz":
            return 200, {"status": "ok", "model": self.name}
        if PREDICT_RE.fullmatch(path):
            return self.predict(body)
        return 200, {"model_version_status": [{"version": str(self.version or 1), "state": "AVAILABLE",
                                               "status": {"error_code": "OK", "error_message": ""}}]}

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
            return 400, {"error": preds[0]["error"] if len(preds) == 1
                         else "Every instance was rejected; see predictions.",
                         "predictions": preds}
        return 200, {"predictions": preds}


class _Pending:
    """One request's instances in the model thread: how far it got, what came back."""

    def __init__(self, parsed: list[Any], fut: Future[list[dict[str, Any]]]) -> None:
        self.parsed, self.fut = parsed, fut
        self.done = 0
        self.preds: list[dict[str, Any]] = []


class MicroBatcher:
    """One model thread that merges requests waiting at the same time into model calls.

    Opportunistic: each call takes what is waiting (up to `max_batch` instances), so a lone
    request pays no added latency and concurrent clients share a batched call (a batch of
    64 costs far less than 64 calls of one). Fair: when several requests wait, each call
    takes an equal share of every one of them, round robin, so a request of 1024 instances
    is spread over many calls and the one-instance requests that arrive meanwhile ride along
    in the next call instead of waiting for all of it. Instances are parsed in the request
    threads; errors stay per instance, so merging requests cannot mix up their answers.
    """

    def __init__(self, predictor: Any, max_batch: int = 64) -> None:
        self.predictor = predictor
        self.embedding_size = predictor.embedding_size
        self.max_batch = max_batch
        self._q: queue.Queue[_Pending] = queue.Queue()
        threading.Thread(target=self._loop, name="genml-model", daemon=True).start()

    def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        from core.predict import MAX_REQUEST_PIXELS, parse_instances
        parsed = parse_instances(instances, self.embedding_size, pixel_budget=MAX_REQUEST_PIXELS)
        fut: Future[list[dict[str, Any]]] = Future()
        self._q.put(_Pending(parsed, fut))
        return fut.result()

    def _take(self, active: list[_Pending]) -> list[tuple[_Pending, int]]:
        """(request, how many of its next instances) for one call: equal shares, round robin."""
        plan: dict[int, int] = {}
        room = self.max_batch
        while room > 0:
            waiting = [i for i, r in enumerate(active) if len(r.parsed) - r.done - plan.get(i, 0) > 0]
            if not waiting:
                break
            share = max(1, room // len(waiting))
            for i in waiting:
                n = min(share, room, len(active[i].parsed) - active[i].done - plan.get(i, 0))
                plan[i] = plan.get(i, 0) + n
                room -= n
                if room == 0:
                    break
        return [(active[i], n) for i, n in sorted(plan.items())]

    def _loop(self) -> None:
        active: list[_Pending] = []
        while True:
            if not active:
                active.append(self._q.get())
            while True:
                try:
                    active.append(self._q.get_nowait())
                except queue.Empty:
                    break
            plan = self._take(active)
            flat = [p for r, n in plan for p in r.parsed[r.done:r.done + n]]
            try:
                preds = self.predictor.predict_parsed(flat) if flat else []
            except BaseException as exc:  # noqa: BLE001 - hand the failure to every request in the call
                for r, _ in plan:
                    r.fut.set_exception(exc)
                    active.remove(r)
                continue
            i = 0
            for r, n in plan:
                r.preds += preds[i:i + n]
                r.done += n
                i += n
            for r in [r for r in active if r.done >= len(r.parsed)]:
                r.fut.set_result(r.preds)
                active.remove(r)


class _Reject(Exception):
    """Answer this request with `status` and close the connection."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class Headers:
    """Case-insensitive header lookup (what App needs of http.client's message objects)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._map: dict[str, str] = {}
        for k, v in items:
            self._map.setdefault(k.lower(), v)

    def get(self, name: str, default: Any = None) -> Any:
        return self._map.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._items if k.lower() == name.lower()]


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: Headers
    keep_alive: bool


def parse_head(head: bytes) -> _Request:
    """Request line and headers, strictly (RFC 9112): anything ambiguous is a 400."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not TOKEN_RE.fullmatch(parts[0]) or not parts[1].startswith(b"/") \
            or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _Reject(400, "Malformed request line; expected 'METHOD /path HTTP/1.1'.")
    items: list[tuple[str, str]] = []
    for raw in lines[1:]:
        if not raw:
            continue
        name, sep, value = raw.partition(b":")
        if not sep or not TOKEN_RE.fullmatch(name):        # also refuses obs-fold and "Name : value"
            raise _Reject(400, "Malformed header line.")
        try:
            items.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
        except UnicodeDecodeError:
            raise _Reject(400, "Malformed header line.") from None
    headers = Headers(items)
    version = parts[2].decode()
    conn = (headers.get("Connection") or "").lower()
    keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
    try:
        target = parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise _Reject(400, "The request target must be ASCII.") from None
    return _Request(parts[0].decode(), target, version, headers, keep_alive)


def body_length(headers: Headers) -> int:
    """Content-Length, strictly: digits only, duplicates must agree, no Transfer-Encoding."""
    if headers.get_all("Transfer-Encoding"):
        raise _Reject(411, "Send the body with Content-Length, not Transfer-Encoding.")
    values = [v.strip() for h in headers.get_all("Content-Length") for v in h.split(",")]
    if not values:
        return 0
    if any(not DIGITS_RE.fullmatch(v.encode()) for v in values):
        raise _Reject(400, "Content-Length must be a number of bytes (digits only).")
    if len(set(int(v) for v in values)) != 1:
        raise _Reject(400, "Conflicting Content-Length headers.")
    return int(values[0])


class _Budget:
    """Bytes of request bodies in flight, all connections together (event-loop thread only)."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0

    def take(self, n: int) -> bool:
        if self.used and self.used + n > self.total:
            return False         # a lone request may use it all: max_body bounds it anyway
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


def _response(status: int, obj: dict[str, Any] | None, *, head_only: bool = False, close: bool = False,
              retry_after: int | None = None) -> bytes:
    data = json.dumps(obj).encode() if obj is not None else b""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", "Server: genml", "Content-Type: application/json",
             f"Content-Length: {len(data)}"]
    if close:
        lines.append("Connection: close")
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else data)


class _Conn:
    """One client connection's state, for shutdown: is a prediction in flight?"""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.busy = False


class Server:
    """The listening socket and the event loop that serves it (see the module docstring)."""

    def __init__(self, addr: tuple[str, int], app: App, quiet: bool = True, limits: Limits | None = None) -> None:
        self.app = app
        self.quiet = quiet
        self.limits = limits or Limits()
        _raise_fd_limit(self.limits.max_connections + 64)
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(addr)
            self.socket.listen(self.limits.backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.stopping = False
        self.refused = 0                  # connections turned away at the connection cap
        self._conns: set[_Conn] = set()
        self._budget = _Budget(self.limits.max_inflight_bytes)
        self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="genml-request")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._done = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    @property
    def connections(self) -> int:
        return len(self._conns)

    # ---- running ---------------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until stop() (from any thread). `poll_interval` is accepted for
        compatibility with socketserver and not needed: stop() wakes the loop at once."""
        try:
            asyncio.run(self._main())
        finally:
            self._done.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        server = await asyncio.start_server(self._client, sock=self.socket, backlog=self.limits.backlog,
                                            limit=self.limits.max_header_bytes + 1024)
        self._started.set()
        if self.stopping:
            self._stop_requested.set()
        await self._stop_requested.wait()
        server.close()                                  # no new connections
        for c in list(self._conns):                     # nothing in flight: close now
            if not c.busy:
                c.writer.transport.abort()
        deadline = time.monotonic() + self.limits.grace_s
        while any(c.busy for c in self._conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self._conns):
            c.writer.transport.abort()
        await asyncio.sleep(0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        """Stop accepting, close idle and half-sent connections, let predictions in flight
        finish (up to limits.grace_s), then close the rest; returns when done."""
        self.stopping = True
        if self._loop is not None and self._stop_requested is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop_requested.set)
            except RuntimeError:          # the loop already ended
                pass
            if self._started.is_set():
                self._done.wait(self.limits.grace_s + 5)
        self.server_close()

    shutdown = stop

    def server_close(self) -> None:
        try:
            self.socket.close()
        except OSError:
            pass

    # ---- one connection --------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK wait on small answers
        if len(self._conns) >= self.limits.max_connections or self.stopping:
            self.refused += 1
            writer.write(_response(503, {"error": "The server is at its connection limit; try again shortly."},
                                   close=True, retry_after=1))
            writer.transport.abort() if self.stopping else writer.close()
            return
        conn = _Conn(writer)
        self._conns.add(conn)
        try:
            while not self.stopping:
                if not await self._one_request(reader, conn):
                    break
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # asyncio.run cancels a prediction that outlived the shutdown grace; end quietly,
            # since Python 3.11's start_server reports a cancelled handler as an unhandled error
            pass
        finally:
            self._conns.discard(conn)
            writer.transport.abort() if self.stopping else writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, conn: _Conn) -> bool:
        """Read, answer; True to keep the connection for another request."""
        limits = self.limits
        start = time.monotonic()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limits.header_timeout_s)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                await self._reply(conn, 400, {"error": "The request ended before its headers did."}, close=True)
            return False
        except asyncio.LimitOverrunError:
            await self._reply(conn, 431, {"error": f"The request line and headers are over {limits.max_header_bytes} "
                                                   "bytes."}, close=True)
            return False
        except (TimeoutError, asyncio.TimeoutError):
            if reader._buffer:                          # type: ignore[attr-defined]  # something came: say why
                await self._reply(conn, 408, {"error": "The request headers took too long to arrive."}, close=True)
            return False                                 # an idle keep-alive connection: just close
        if len(head) > limits.max_header_bytes:
            await self._reply(conn, 431, {"error": f"The request line and headers are over {limits.max_header_bytes} "
                                                   "bytes."}, close=True)
            return False
        try:
            req = parse_head(head[:-4])
            length = body_length(req.headers)
        except _Reject as rej:
            await self._reply(conn, rej.status, {"error": rej.message}, close=True)
            return False
        head_only = req.method == "HEAD"
        early = self.app.precheck(req.method, req.target, req.headers)
        if early is None and req.method == "POST" and not req.headers.get_all("Content-Length"):
            early = (411, {"error": "A POST needs a Content-Length header."})
        if early is None and length > limits.max_body:
            early = (413, {"error": f"The body is {length} bytes; the limit is {limits.max_body}."})
        if early is not None:
            # the body (if any) is not read: close, so its bytes can never run as a request
            await self._reply(conn, *early, head_only=head_only, close=bool(length) or not req.keep_alive)
            return bool(not length and req.keep_alive)
        if not self._budget.take(length):
            await self._reply(conn, 503, {"error": "The server is busy with other large requests; retry shortly."},
                              close=True, retry_after=1)
            return False
        try:
            if length and (req.headers.get("Expect") or "").lower() == "100-continue":
                conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            left = limits.request_timeout_s - (time.monotonic() - start)
            try:
                body = await asyncio.wait_for(reader.readexactly(length), max(0.001, left)) if length else b""
            except asyncio.IncompleteReadError:
                await self._reply(conn, 400, {"error": "The body ended before Content-Length bytes."}, close=True)
                return False
            except (TimeoutError, asyncio.TimeoutError):
                await self._reply(conn, 408, {"error": "The request took too long to arrive "
                                                       f"(the limit is {limits.request_timeout_s:g} s)."}, close=True)
                return False
            conn.busy = True
            try:
                loop = asyncio.get_running_loop()
                status, obj = await loop.run_in_executor(self._pool, self._handle, req.method, req.target,
                                                         req.headers, body)
                del body
                await self._reply(conn, status, obj, head_only=head_only, close=not req.keep_alive or self.stopping)
            finally:
                conn.busy = False
        finally:
            self._budget.give(length)
        if not self.quiet:
            print(f"{req.method} {req.target} {status} {time.monotonic() - start:.3f}s", file=sys.stderr, flush=True)
        return req.keep_alive

    def _handle(self, method: str, target: str, headers: Headers, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            return self.app.handle(method, target, headers, body)
        except Exception as exc:  # noqa: BLE001 - a bug must still answer in JSON and keep serving
            if not self.quiet:
                print(f"internal error: {exc!r}", file=sys.stderr, flush=True)
            return 500, {"error": f"internal error: {type(exc).__name__}"}

    async def _reply(self, conn: _Conn, status: int, obj: dict[str, Any], *, head_only: bool = False,
                     close: bool = False, retry_after: int | None = None) -> None:
        conn.writer.write(_response(status, obj, head_only=head_only, close=close, retry_after=retry_after))
        try:
            await asyncio.wait_for(conn.writer.drain(), self.limits.request_timeout_s)
        except (TimeoutError, asyncio.TimeoutError):      # a client that does not read its answer
            conn.writer.transport.abort()


def _raise_fd_limit(want: int) -> None:
    """Lift the soft open-files limit towards `want` (up to the hard limit): the connection
    cap, not the fd limit, must be what turns clients away."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError):
        pass


def make_server(predictor: Any, name: str, host: str = "127.0.0.1", port: int = 8080, *,
                token: str | None = None, version: int | None = None, quiet: bool = True,
                max_body: int = MAX_BODY, read_timeout: float = READ_TIMEOUT_S,
                limits: Limits | None = None) -> Server:
    check_bind(host, token)
    limits = limits or Limits(request_timeout_s=read_timeout, header_timeout_s=min(10.0, read_timeout),
                              max_body=max_body)
    app = App(MicroBatcher(predictor), name, version=version, token=token, max_body=limits.max_body)
    try:
        return Server((host, port), app, quiet=quiet, limits=limits)
    except OSError as exc:
        raise InvalidInput(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
                           "Pick another --port (0 picks a free one) or stop whatever holds it.") from exc


def serve_until_signal(server: Server, on_ready: Callable[[Server], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; then finish predictions in flight (a short grace) and close."""
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        if on_ready:
            on_ready(server)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        t.join(server.limits.grace_s + 10)
        for s, h in old.items():
            signal.signal(s, h)


__all__ = ["App", "Server", "Limits", "make_server", "serve_until_signal", "check_bind", "is_loopback"]
