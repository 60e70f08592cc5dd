"""Batch prediction: JSON Lines in, sharded JSON Lines out, resumable after a kill.

The input is read twice, streaming: once to count its lines (which fixes the shard count
and so every output name), then once more, shard by shard. Shard i holds the predictions for input
lines [i*S, (i+1)*S). Each shard is written to a temporary name and renamed into place
(core/atomic), errors file first and predictions file last, so a shard is either complete
or absent: a rerun after a kill skips the shards that exist and redoes the rest, and no
line is lost or written twice. Memory is bounded by one model chunk, whatever the input
size. A small batch.json records the input's size and mtime so a rerun refuses to mix
outputs of two different inputs.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from core import atomic
from core.backend import BatchResult, Progress, ProgressFn
from core.errors import InvalidInput, InvalidState, NotFound
from core.predict import CHUNK, BadInstance, parse_instance

SHARD_LINES = 1000
MAX_LINE = 32 * 1024 * 1024        # one instance line; a 16 MB base64 image fits
STATE = "batch.json"


def shard_name(kind: str, i: int, n: int) -> str:
    return f"{kind}-{i:05d}-of-{n:05d}.jsonl"


def count_lines(path: Path) -> int:
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (0 if last == b"\n" else 1)


def _read_lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(1-based number, line) for each line; None for a line over MAX_LINE (skipped in chunks,
    so one enormous line cannot take all the memory)."""
    n = 0
    while True:
        raw = f.readline(MAX_LINE + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield n, None
        else:
            yield n, raw


def _write_lines(path: Path, rows: list[bytes]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        for r in rows:
            f.write(r)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _ShardWriter:
    """Collect one shard's outputs in a temp file (bounded memory), rename at the end."""

    def __init__(self, out: Path, i: int, n: int) -> None:
        self.pred_path = out / shard_name("predictions", i, n)
        self.err_path = out / shard_name("errors", i, n)
        self.pred_tmp = out / f".{self.pred_path.name}.tmp"
        self.pred = open(self.pred_tmp, "wb")
        self.errors: list[bytes] = []
        self.count = 0

    def prediction(self, obj: dict[str, Any]) -> None:
        self.pred.write(json.dumps(obj).encode() + b"\n")
        self.count += 1

    def error(self, line: int, key: Any, message: str) -> None:
        self.errors.append(json.dumps({"line": line, "key": key, "error": message}).encode() + b"\n")

    def commit(self) -> None:
        if self.errors:
            _write_lines(self.err_path, self.errors)
        elif self.err_path.exists():
            self.err_path.unlink()
        self.pred.flush()
        os.fsync(self.pred.fileno())
        self.pred.close()
        os.replace(self.pred_tmp, self.pred_path)   # last: its presence means "shard done"
        atomic.fsync_dir(self.pred_path.parent)


def run(predictor: Any, input_path: Path, output_dir: Path, *, model_ref: str = "",
        shard_lines: int = SHARD_LINES, progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None) -> BatchResult:
    input_path, output_dir = Path(input_path), Path(output_dir)
    if not input_path.is_file():
        raise NotFound(f"No input file {input_path}.", "Give a JSON Lines file: one instance per line.")
    if shard_lines < 1:
        raise InvalidInput("Shard size must be at least 1 line.", "")
    output_dir.mkdir(parents=True, exist_ok=True)
    st = input_path.stat()
    state_path = output_dir / STATE
    ident = {"input": str(input_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "shard_lines": shard_lines, "model": model_ref}
    if state_path.exists():
        try:
            old = json.loads(state_path.read_text())
        except ValueError:
            old = {}
        if {k: old.get(k) for k in ident} != ident:
            raise InvalidState(f"{output_dir} holds the output of another batch run (different input, model or shard size).",
                               "Use a new --output folder, or delete that one to start over.")
        total = int(old["lines"])
    else:
        total = count_lines(input_path)
        atomic.write_json(state_path, dict(ident, lines=total))
    n = max(1, -(-total // shard_lines))
    with open(input_path, "rb") as f:
        _shards(predictor, _read_lines(f), output_dir, n, total, shard_lines, progress, should_stop)
    return summarize(output_dir, n)


def _shards(predictor: Any, lines: Iterator[tuple[int, bytes | None]], output_dir: Path, n: int, total: int,
            shard_lines: int, progress: ProgressFn | None, should_stop: Callable[[], bool] | None) -> None:
    """One pass over the input: finished shards' lines are skipped, the others predicted."""
    done_lines = 0
    for i in range(n):
        lo, hi = i * shard_lines, min(total, (i + 1) * shard_lines)
        shard = itertools.islice(lines, hi - lo)
        if (output_dir / shard_name("predictions", i, n)).exists():
            for _ in shard:
                pass
            done_lines += hi - lo
            continue
        if should_stop and should_stop():
            return
        w = _ShardWriter(output_dir, i, n)
        pending: list[tuple[int, Any]] = []

        def flush() -> None:
            parsed = [obj if isinstance(obj, BadInstance) else parse_instance(obj, line, predictor.embedding_size)
                      for line, obj in pending]
            preds = predictor.predict_parsed(parsed)
            for (line, _), pred in zip(pending, preds):
                if "error" in pred:
                    w.error(line, pred.get("key"), pred["error"].replace("instance ", "line ", 1))
                else:
                    w.prediction(pred)
            pending.clear()

        for line, raw in shard:
            obj: Any
            if raw is None:
                obj = BadInstance(line, None, f"line {line}: longer than {MAX_LINE // (1024 * 1024)} MB")
            elif not raw.strip():
                continue
            else:
                try:
                    obj = json.loads(raw)
                except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                    obj = BadInstance(line, None, f"line {line}: not valid JSON ({str(exc)[:120]})")
            pending.append((line, obj))
            if len(pending) >= CHUNK:
                flush()
        if pending:
            flush()
        w.commit()
        done_lines += hi - lo
        if progress:
            progress(Progress("predict", done_lines, total, f"shard {i + 1} of {n}"))


def summarize(output_dir: Path, n: int) -> BatchResult:
    files, preds, errs = [], 0, 0
    for i in range(n):
        for kind in ("predictions", "errors"):
            p = output_dir / shard_name(kind, i, n)
            if p.exists():
                files.append(str(p))
                c = count_lines(p)
                if kind == "predictions":
                    preds += c
                else:
                    errs += c
    return BatchResult(output_dir=str(output_dir), predictions=preds, errors=errs, files=files)
