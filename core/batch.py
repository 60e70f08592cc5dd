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
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from core import atomic
from core.backend import BatchResult, Predictor, Progress, ProgressFn
from core.errors import InvalidInput, InvalidState, NotFound
from core.predict import CHUNK, BadInstance, parse_instance

SHARD_LINES = 1000
MAX_LINE = 32 * 1024 * 1024        # one instance line; a 16 MB base64 image fits
MAX_SKIP = 256 * 1024 * 1024       # past this, an over-long line is not a line: stop reading
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
    """(1-based number, line) for each line; None for a line over MAX_LINE.

    The rest of an over-long line is skipped in 1 MB reads, so one enormous line cannot
    take all the memory; a "line" that runs on past MAX_SKIP (say /dev/zero, or a binary
    file given by mistake) ends the input with an error instead of reading forever.
    """
    n = 0
    while True:
        raw = f.readline(MAX_LINE + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            skipped = len(raw)
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                skipped += len(rest)
                if skipped > MAX_SKIP:
                    raise InvalidInput(f"Line {n} of the input runs on for over {MAX_SKIP // (1 << 20)} MB "
                                       "without a line break: it is not JSON Lines.",
                                       "Give a text file with one JSON instance per line.")
            yield n, None
        else:
            yield n, raw


def read_instances(f: BinaryIO) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line of a JSON Lines stream, in bounded
    memory; a line that is too long or not JSON comes back as a BadInstance naming the line.
    Shared by batch prediction and `genml predict`, so both read any input the same way."""
    for line, raw in _read_lines(f):
        if raw is None:
            yield line, BadInstance(line, None, f"line {line}: longer than {MAX_LINE // (1024 * 1024)} MB")
        elif raw.strip():
            try:
                yield line, json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                yield line, BadInstance(line, None, f"line {line}: not valid JSON ({str(exc)[:120]})")


def _temp(path: Path) -> tuple[BinaryIO, Path]:
    """A new temp file next to `path`: a random name created with O_EXCL (mkstemp), so a
    file or symlink planted in a shared output folder is never opened or followed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~atomic.UMASK)
    return os.fdopen(fd, "wb"), Path(tmp)


def _clear_temps(out: Path) -> None:
    """Temp files a killed run left behind (unlink removes a symlink, never its target)."""
    for p in out.glob(".*-of-*.jsonl.*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass


class ShardWriter:
    """One shard's outputs: predictions streamed to a temp file (bounded memory), errors
    collected; `commit` renames them into place, errors first, predictions last."""

    def __init__(self, out: Path, i: int, n: int) -> None:
        self.pred_path = out / shard_name("predictions", i, n)
        self.err_path = out / shard_name("errors", i, n)
        self.pred, self.pred_tmp = _temp(self.pred_path)
        self.errors: list[bytes] = []
        self.count = 0

    def prediction(self, obj: dict[str, Any]) -> None:
        self.pred.write(json.dumps(obj).encode() + b"\n")
        self.count += 1

    def error(self, line: int | None, key: Any, message: str) -> None:
        self.errors.append(json.dumps({"line": line, "key": key, "error": message}).encode() + b"\n")

    def commit(self) -> list[str]:
        """Rename into place; returns the paths written."""
        written = []
        if self.errors:
            f, tmp = _temp(self.err_path)
            with f:
                f.writelines(self.errors)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.err_path)
            written.append(str(self.err_path))
        elif self.err_path.exists():
            self.err_path.unlink()
        self.pred.flush()
        os.fsync(self.pred.fileno())
        self.pred.close()
        os.replace(self.pred_tmp, self.pred_path)   # last: its presence means "shard done"
        atomic.fsync_dir(self.pred_path.parent)
        return [str(self.pred_path), *written]

    def abort(self) -> None:
        self.pred.close()
        self.pred_tmp.unlink(missing_ok=True)


def run(predictor: Predictor, input_path: Path, output_dir: Path, *, model_ref: str = "",
        shard_lines: int = SHARD_LINES, progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None) -> BatchResult:
    input_path, output_dir = Path(input_path), Path(output_dir)
    if not input_path.is_file():
        raise NotFound(f"No input file {input_path}.", "Give a JSON Lines file: one instance per line.")
    if shard_lines < 1:
        raise InvalidInput("Shard size must be at least 1 line.", "")
    output_dir.mkdir(parents=True, exist_ok=True)
    _clear_temps(output_dir)
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
            raise InvalidState(f"{output_dir} holds the output of another batch run "
                               "(different input, model or shard size).",
                               "Use a new --output folder, or delete that one to start over.")
        total = int(old["lines"])
    else:
        total = count_lines(input_path)
        atomic.write_json(state_path, dict(ident, lines=total))
    n = max(1, -(-total // shard_lines))
    with open(input_path, "rb") as f:
        _shards(predictor, read_instances(f), output_dir, n, total, shard_lines, progress, should_stop)
    return summarize(output_dir, n)


def _shards(predictor: Predictor, lines: Iterator[tuple[int, Any]], output_dir: Path, n: int, total: int,
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
        w = ShardWriter(output_dir, i, n)
        pending: list[tuple[int, Any]] = []

        def flush() -> None:
            parsed = [parse_instance(obj, line, predictor.embedding_size) for line, obj in pending]
            preds = predictor.predict_parsed(parsed)
            for (line, _), pred in zip(pending, preds):
                if "error" in pred:
                    w.error(line, pred.get("key"), pred["error"].replace("instance ", "line ", 1))
                else:
                    w.prediction(pred)
            pending.clear()

        try:
            for line, obj in shard:
                pending.append((line, obj))
                if len(pending) >= CHUNK:
                    flush()
            if pending:
                flush()
        except BaseException:
            w.abort()
            raise
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
