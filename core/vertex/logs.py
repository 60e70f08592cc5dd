"""A training job's log from Cloud Logging, read politely.

Cloud Logging allows 60 `entries.list` calls per minute per project, shared by every
genml window and by gcloud. Reads go through a token bucket per project; when it is
empty, or after a 429, `read` returns no lines and the same cursor instead of waiting,
so a UI polling it stays responsive and the quota is not burnt.

The cursor is the newest timestamp seen plus the insertIds seen within LATE_S before it.
Timestamps are compared parsed, as nanoseconds: the service writes 0, 3, 6 or 9
fractional digits, so "…:01Z" sorts after "…:01.500Z" as a string but is earlier in
time. The next read asks for `timestamp >= T - LATE_S` and drops the insertIds it has
shown, so nothing is shown twice, and an entry that reaches Cloud Logging up to LATE_S
after a later one is still shown (after it).
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from core.backend import LogChunk
from core.errors import CloudError
from core.vertex.clients import Clients

PAGE_SIZE = 1000
LATE_S = 60          # how late an entry may arrive (after later ones) and still be shown; a
                     # minute holds a few hundred ids at the trainer's log rate, one page of reads


@dataclass
class RateLimiter:
    """Token bucket: `per_minute` reads a minute with a small burst; 429s push the next read back."""

    per_minute: int = 60
    burst: int = 5
    tokens: float = 5.0
    updated: float = field(default_factory=time.monotonic)
    not_before: float = 0.0
    penalty_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def try_acquire(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if now < self.not_before:
                return False
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_minute / 60.0)
            self.updated = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True

    def throttled(self) -> None:
        """The server said 429: back off exponentially, up to a minute."""
        with self.lock:
            self.penalty_s = min(60.0, max(2.0, self.penalty_s * 2))
            self.not_before = time.monotonic() + self.penalty_s
            self.tokens = 0

    def ok(self) -> None:
        with self.lock:
            self.penalty_s = 0.0


_limiters: dict[tuple[str, int], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter(project: str, per_minute: int = 60) -> RateLimiter:
    """One bucket per project in this process (every window of one genml shares it)."""
    burst = max(1, min(per_minute, max(5, per_minute // 12)))
    with _limiters_lock:
        key = (project, per_minute)
        if key not in _limiters:
            _limiters[key] = RateLimiter(per_minute=per_minute, burst=burst, tokens=float(burst))
        return _limiters[key]


def job_filter(numeric_id: str, task: str | None = None) -> str:
    f = f'resource.type="ml_job" AND resource.labels.job_id="{numeric_id}"'
    if task:
        f += f' AND resource.labels.task_name="{task}"'
    return f


def entry_text(entry: dict[str, Any]) -> str:
    """One readable line: [task] message. Vertex logs stdout as INFO and stderr as ERROR."""
    payload = entry.get("jsonPayload") or {}
    text = entry.get("textPayload") or payload.get("message") or ""
    if not text and payload:
        text = str(payload)
    task = (entry.get("resource", {}).get("labels", {}) or {}).get("task_name", "")
    return (f"[{task}] " if task else "") + str(text).rstrip("\n")


def _list(clients: Clients, body: dict[str, Any], what: str) -> dict[str, Any] | None:
    """One entries.list call within the quota; None when throttled (locally or by the server)."""
    lim = limiter(clients.settings.project, clients.settings.log_reads_per_minute)
    if not lim.try_acquire():
        return None
    try:
        resp = clients.call(clients.logging.entries().list(body=body), what, retry=False)
    except CloudError as exc:
        if getattr(exc, "http_status", 0) == 429 or getattr(exc, "http_status", 0) >= 500:
            lim.throttled()
            return None
        raise
    lim.ok()
    return cast("dict[str, Any] | None", resp)     # the API's JSON object


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def rfc3339_ns(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_ns(value: str) -> int | None:
    """An RFC 3339 time with 0-9 fractional digits (and Z or an offset) -> ns since the epoch."""
    from datetime import datetime
    m = _TS.match(value or "")
    if not m:
        return None
    head, frac, zone = m.groups()
    try:
        secs = int(datetime.fromisoformat(head + ("+00:00" if zone in ("Z", "z") else zone)).timestamp())
    except ValueError:
        return None
    return secs * 1_000_000_000 + int(((frac or "") + "000000000")[:9])


_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$")


def read(clients: Clients, numeric_id: str, cursor: Any = None, max_lines: int = 5000,
         since: float | None = None) -> LogChunk:
    """The entries after `cursor` (or since the job was created), as lines.

    entries.list looks back only 24 hours unless the filter names a time, so the first
    read of an older job starts at `since`.
    """
    cur = dict(cursor or {})
    newest = cur.get("ns")
    seen: dict[str, int] = dict(cur.get("ids") or {})       # insertId -> its time, within LATE_S of newest
    flt = job_filter(numeric_id)
    if newest is not None:
        floor = rfc3339_ns(int(newest) - LATE_S * 1_000_000_000)
    else:
        floor = rfc3339(since - 60) if since else ""
    if floor:
        flt += f' AND timestamp>="{floor}"'
    body: dict[str, Any] = {"resourceNames": [f"projects/{clients.settings.project}"], "filter": flt,
                            "orderBy": "timestamp asc", "pageSize": min(PAGE_SIZE, max(1, max_lines))}
    lines: list[str] = []
    while len(lines) < max_lines:
        resp = _list(clients, body, "Reading the job's log")
        if resp is None:
            break
        for e in resp.get("entries", []) or []:
            iid = str(e.get("insertId", ""))
            ns = parse_ns(str(e.get("timestamp", "")))
            if ns is None or iid in seen:
                continue
            seen[iid] = ns
            newest = ns if newest is None else max(int(newest), ns)
            lines.append(entry_text(e))
        token = resp.get("nextPageToken")
        if not token:
            break
        body["pageToken"] = token
    if newest is not None:
        keep = int(newest) - LATE_S * 1_000_000_000
        seen = {k: v for k, v in seen.items() if v >= keep}
    out = dict(cur, ids=seen)
    out.pop("ts", None)
    out.pop("seen", None)
    if newest is not None:
        out["ns"] = int(newest)
    return LogChunk(lines=lines, cursor=out)


def last_errors(clients: Clients, numeric_id: str, count: int = 10, since: float | None = None) -> list[str]:
    """The last ERROR lines of a job (stderr in Vertex), oldest first: why it failed, in its own words."""
    flt = job_filter(numeric_id) + " AND severity>=ERROR"
    if since:
        flt += f' AND timestamp>="{rfc3339(since - 60)}"'
    body = {"resourceNames": [f"projects/{clients.settings.project}"], "filter": flt,
            "orderBy": "timestamp desc", "pageSize": count}
    try:
        resp = _list(clients, body, "Reading the job's errors")
    except CloudError:
        return []
    if not resp:
        return []
    return [entry_text(e) for e in reversed(resp.get("entries", []) or [])]
