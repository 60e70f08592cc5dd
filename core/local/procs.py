"""Is this pid still the process we started? (Linux /proc, with a portable fallback.)

A pid alone is not an identity: after a reboot or a long time the number is reused by
some unrelated process. We record the kernel's start time of the process next to its pid
and compare both, and also look for a marker (the job id) in its command line, so a
reconcile never mistakes a stranger for one of our jobs — and cancel never signals one.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'
    rest = stat[stat.rfind(")") + 2:].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    rest = stat[stat.rfind(")") + 2:].split()
    return bool(rest) and rest[0] in ("Z", "X")


def alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def is_ours(pid: int | None, marker: str, started: int | None = None) -> bool:
    """True when `pid` runs, its command line mentions `marker` and (if known) it started at `started`."""
    if not alive(pid):
        return False
    assert pid is not None
    if Path("/proc").is_dir() and Path(f"/proc/{pid}").exists():
        if started is not None and start_time(pid) != started:
            return False
        args = cmdline(pid)
        # Empty while the kernel is still setting up a new program: Popen returns once exec
        # closed the child's close-on-exec pipe, a moment before its argv is in place, and a
        # reconcile in that moment failed a job it had just resumed (CI, twice). The matching
        # start time already says it is the process we started.
        if not args and started is not None:
            return True
        return any(marker in a for a in args)
    return True  # no /proc (macOS): the pid check is the best we can do


def signal_if_ours(pid: int | None, marker: str, sig: int = signal.SIGTERM, started: int | None = None) -> bool:
    if not is_ours(pid, marker, started):
        return False
    try:
        os.kill(pid, sig)  # type: ignore[arg-type]  # is_ours(None) is False
    except ProcessLookupError:
        return False
    return True
