"""A training job's log from Cloud Logging, read politely.

Cloud Logging allows 60 `entries.list` calls per minute per project, shared by every
genml window and by gcloud. Reads go through a token bucket per project; when it is
empty, or after a 429, `read` returns no lines and the same cursor instead of waiting,
so a UI polling it stays responsive and the quota is not burnt. The cursor is the
timestamp of the last entry seen plus the insertIds seen at that timestamp: the next
read asks for `timestamp >= T` and drops those, so nothing is shown twice or skipped.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from core.backend import LogChunk
from core.errors import CloudError
from core.vertex.clients import Clients

PAGE_SIZE = 1000


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
    return resp


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def read(clients: Clients, numeric_id: str, cursor: Any = None, max_lines: int = 5000,
         since: float | None = None) -> LogChunk:
    """The entries after `cursor` (or since the job was created), oldest first, as lines.

    entries.list looks back only 24 hours unless the filter names a time, so the first
    read of an older job starts at `since`.
    """
    cur = dict(cursor or {})
    ts, seen = cur.get("ts", ""), set(cur.get("seen", []))
    flt = job_filter(numeric_id)
    floor = ts or (rfc3339(since - 60) if since else "")
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
            ets, iid = str(e.get("timestamp", "")), str(e.get("insertId", ""))
            if ets < ts or (ets == ts and iid in seen):
                continue
            if ets != ts:
                ts, seen = ets, set()
            seen.add(iid)
            lines.append(entry_text(e))
        token = resp.get("nextPageToken")
        if not token:
            break
        body["pageToken"] = token
    return LogChunk(lines=lines, cursor=dict(cur, ts=ts, seen=sorted(seen)))


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
