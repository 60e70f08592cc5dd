"""`genml serve` under load and under a slowloris, on 127.0.0.1 only (issue 12).

    .venv/bin/python benchmarks/serve_load.py [--model-dir DIR] [--clients 200] [--rounds 3]
                                              [--slow 400] [--slow-interval 10] [--duration 20]

Two scenarios against the real server code in a child process (a model exported
UNTRAINED at the tiny preset's sizes unless --model-dir: speed does not depend on the
weights):

  burst     --clients clients start together (a barrier), each opens a new connection and
            sends one predict request (1 embedding); repeated --rounds times.
            Target (issue 12): max latency < 1 s at 200 clients.
  slowloris --slow sockets are opened and each sends half a request, then one more
            header line every --slow-interval s (reconnecting when the server drops it),
            while 16 ordinary clients send predict requests for --duration s.
            Target: p99 < 1 s with 400 slow sockets open.

Each reports p50/p99/max latency and refused connections (connect errors, resets, 503s).
Baseline, measured first in the same run: one client alone on the idle server (p50), so
the figures under load show as a ratio of it. Everything is bounded: the number of sockets
by the options, the time by --duration and a 30 s client timeout.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import selectors
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from serving import export_untrained, pct, run_threads, served   # benchmarks/serving.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

class Client:
    def __init__(self, port: int, body: bytes) -> None:
        self.port, self.body = port, body

    def one(self, conn: http.client.HTTPConnection | None = None
            ) -> tuple[float | None, http.client.HTTPConnection | None]:
        """(seconds, connection to reuse) for one request; (None, None) if refused."""
        started = time.perf_counter()
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("POST", "/v1/models/bench:predict", self.body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                c.close()
                return None, None
            return time.perf_counter() - started, c
        except (OSError, http.client.HTTPException):
            c.close()
            return None, None


def burst(client: Client, n: int, rounds: int) -> tuple[list[float], int]:
    times: list[float] = []
    refused = 0
    lock = threading.Lock()
    for _ in range(rounds):
        barrier = threading.Barrier(n)

        def go() -> None:
            nonlocal refused
            barrier.wait()
            t, c = client.one()
            if c:
                c.close()
            with lock:
                if t is None:
                    refused += 1
                else:
                    times.append(t)

        run_threads(go, n, timeout=60)
    return times, refused


class Slowloris:
    """N sockets, each sending half a request and then a header line every `interval` s."""

    def __init__(self, port: int, n: int, interval: float) -> None:
        self.port, self.n, self.interval = port, n, interval
        self.stop = threading.Event()
        self.open = 0
        self.reconnects = 0
        self.refused = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.sendall(b"POST /v1/models/bench:predict HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
            return s
        except OSError:
            self.refused += 1
            return None

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        socks: dict[socket.socket, float] = {}

        def add() -> None:
            s = self._connect()
            if s is not None:
                socks[s] = time.monotonic() + self.interval
                sel.register(s, selectors.EVENT_READ)
            self.open = len(socks)

        for _ in range(self.n):
            add()
        while not self.stop.is_set():
            self.open = len(socks)
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    data = s.recv(65536)                 # type: ignore[union-attr]  # fileobj: a socket here
                except OSError:
                    data = b""
                if not data or b"HTTP/1.1 " in data:     # answered (408/503) or closed: come back
                    sel.unregister(s)
                    s.close()                            # type: ignore[union-attr]  # as above
                    del socks[s]                         # type: ignore[arg-type]  # as above
                    self.reconnects += 1
                    add()
            now = time.monotonic()
            for s, due in list(socks.items()):
                if now >= due:
                    try:
                        s.send(b"X-Slow: x\r\n")
                    except OSError:
                        pass
                    socks[s] = now + self.interval
        for s in socks:
            s.close()


def steady(client: Client, workers: int, duration: float) -> tuple[list[float], int]:
    times: list[float] = []
    refused = 0
    lock = threading.Lock()
    end = time.monotonic() + duration

    def go() -> None:
        nonlocal refused
        conn = None
        while time.monotonic() < end:
            t, conn = client.one(conn)
            with lock:
                if t is None:
                    refused += 1
                else:
                    times.append(t)

    run_threads(go, workers, timeout=duration + 60)
    return times, refused


def report(name: str, times: list[float], refused: int, base: float, target: str) -> None:
    print(f"{name:9s} {len(times):5d} ok, {refused:4d} refused   p50 {pct(times, 50) * 1000:7.1f} ms   "
          f"p99 {pct(times, 99) * 1000:7.1f} ms   max {max(times, default=float('nan')) * 1000:7.1f} ms   "
          f"(p99 {pct(times, 99) / base:5.1f}x baseline)   {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--preset", default="tiny", help="sizes of the untrained model exported without --model-dir")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="bursts of --clients (0: skip the burst)")
    ap.add_argument("--slow", type=int, default=400)
    ap.add_argument("--slow-interval", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=20.0)
    args = ap.parse_args()
    if not (1 <= args.clients <= 1000 and 0 <= args.slow <= 2000 and 1 <= args.duration <= 120):
        ap.error("bounded on purpose: --clients 1..1000, --slow 0..2000, --duration 1..120")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.clients + args.slow + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))

    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model_dir or export_untrained(Path(tmp.name), args.preset)
    info = json.loads((Path(model_dir) / "genml.json").read_text())
    body = json.dumps({"instances": [{"embeddings": [0.1] * int(info["embedding_size"]), "key": "0"}]}).encode()
    with tmp, served(model_dir) as port:
        measure(args, model_dir, port, body, info)


def measure(args: argparse.Namespace, model_dir: Path, port: int, body: bytes, info: dict[str, Any]) -> None:
    """The baseline, then the burst and the slowloris, against the server on `port`."""
    client = Client(port, body)
    print(f"model {model_dir} ({info['image_size']} px, embedding {info['embedding_size']}); "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    conn = None
    alone = []
    for _ in range(60):
        t, conn = client.one(conn)
        if t is not None:
            alone.append(t)
    if conn:
        conn.close()
    base = pct(alone[10:], 50)
    print(f"baseline  one client alone, keep-alive: p50 {base * 1000:.1f} ms")

    if args.rounds:
        times, refused = burst(client, args.clients, args.rounds)
        report("burst", times, refused, base,
               f"{args.clients} clients x {args.rounds}; target max < 1000 ms: "
               f"{'met' if times and max(times) < 1 and not refused else 'MISSED'}")

    loris = Slowloris(port, args.slow, args.slow_interval)
    loris.thread.start()
    deadline = time.monotonic() + 30
    while loris.open < args.slow * 0.95 and time.monotonic() < deadline:
        time.sleep(0.05)
    opened = loris.open
    times, refused = steady(client, 16, args.duration)
    opened = max(opened, loris.open)
    loris.stop.set()
    loris.thread.join(30)
    report("slowloris", times, refused, base,
           f"{opened} slow sockets open (re-opened {loris.reconnects}, refused {loris.refused}), 16 clients "
           f"for {args.duration:g} s; target p99 < 1000 ms: "
           f"{'met' if times and pct(times, 99) < 1 and not refused else 'MISSED'}")


if __name__ == "__main__":
    main()
