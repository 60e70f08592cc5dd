"""Reading a job's train.log without reading all of it.

A long run writes megabytes of log; the TUI polls it every second and `genml jobs logs`
may start on a huge file. So the first read seeks back from the end block by block for
the last N lines, and later reads continue from a byte offset (the cursor).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

BLOCK = 64 * 1024
MAX_READ = 4 * 1024 * 1024      # one forward read returns at most this many bytes


def _decode(lines: list[bytes]) -> list[str]:
    return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]


def _open(path: Path) -> BinaryIO | None:
    """The log for reading, or None before the job has written one."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def tail(path: Path, max_lines: int, include_partial: bool = True) -> tuple[list[str], int]:
    """The last `max_lines` lines and the byte offset just after the last complete line."""
    f = _open(path)
    if f is None:
        return [], 0
    with f:
        size = os.fstat(f.fileno()).st_size
        pos, buf = size, b""
        while pos > 0 and buf.count(b"\n") <= max_lines:
            step = min(BLOCK, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
    end = buf.rfind(b"\n") + 1          # offset of the end of the last complete line within buf
    complete, partial = buf[:end], buf[end:]
    lines = complete.split(b"\n")[:-1] if complete else []
    if pos > 0 and lines:
        lines = lines[1:]                # the first one is probably cut
    cursor = pos + end
    if include_partial and partial:
        lines.append(partial)
        cursor = size
    return _decode(lines[-max_lines:] if max_lines > 0 else []), cursor


def forward(path: Path, cursor: int, max_lines: int, include_partial: bool = False) -> tuple[list[str], int]:
    """Complete lines after byte offset `cursor` (a partial last line only when asked)."""
    f = _open(path)
    if f is None:
        return [], 0
    with f:
        size = os.fstat(f.fileno()).st_size
        if cursor > size:                # truncated or replaced: start again from the top
            cursor = 0
        f.seek(cursor)
        buf = f.read(min(MAX_READ, size - cursor))
    lines = buf.split(b"\n")
    partial = lines.pop()
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        partial = b""
    used = sum(len(ln) + 1 for ln in lines)
    if not lines and len(buf) >= MAX_READ:   # one enormous line: hand it over in pieces
        return _decode([partial]), cursor + len(partial)
    if include_partial and partial and not len(lines) >= max_lines and cursor + len(buf) == size:
        lines.append(partial)
        used += len(partial)
    return _decode(lines), cursor + used


def last_lines(path: Path, n: int = 10) -> str:
    """The end of a log as one string, for a FAILED job's reason."""
    lines, _ = tail(path, n)
    return "\n".join(ln for ln in lines if ln.strip())
