"""Reading a job dir: status, metrics, samples, model. Needs nothing but the dir.

The layout is written by trainer/ (see docs/contracts.md); this is the one reader the
CLI, the TUI and both backends share.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.store import Store, open_store
from trainer.contract import CONFIG, METRICS, MODEL, MODEL_INFO, SAMPLES, SAVED_MODEL, STATUS, TENSORBOARD


@dataclass
class Metrics:
    train: list[dict[str, Any]] = field(default_factory=list)
    eval: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str, kind: str = "train") -> tuple[list[int], list[float]]:
        rows = self.train if kind == "train" else self.eval
        pts = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
        return [p[0] for p in pts], [p[1] for p in pts]

    @property
    def last_eval(self) -> dict[str, Any]:
        return self.eval[-1] if self.eval else {}


class JobDir:
    def __init__(self, store: Store | str) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        self._metrics_offset = 0
        self._metrics = Metrics()
        self._partial = b""

    def _json(self, name: str) -> dict[str, Any]:
        """A JSON object of the dir; {} while it is missing, half-written or not an object."""
        try:
            data = json.loads(self.store.read_bytes(name))
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def status(self) -> dict[str, Any]:
        return self._json(STATUS)

    def config(self) -> dict[str, Any]:
        return self._json(CONFIG)

    def metrics(self) -> Metrics:
        """Incremental: only the bytes appended since the last call are read and parsed."""
        try:
            size = self.store.size(METRICS)
        except FileNotFoundError:
            return self._metrics
        if size < self._metrics_offset:          # rewritten (a resumed job truncates stale steps)
            self._metrics_offset, self._metrics, self._partial = 0, Metrics(), b""
        if size > self._metrics_offset:
            chunk = self._partial + self.store.read_range(METRICS, self._metrics_offset, size)
            self._metrics_offset = size
            lines = chunk.split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                (self._metrics.eval if row.get("kind") == "eval" else self._metrics.train).append(row)
        return self._metrics

    def progress(self) -> dict[str, Any]:
        """step, max_steps, images_per_sec and seconds_left from status.json, typed, and only those it
        holds: the one reader of a job's progress (local supervisor, local and Vertex refresh)."""
        status, out = self.status(), dict[str, Any]()
        try:
            if status.get("step") is not None:
                out["step"] = int(status["step"] or 0)
            if status.get("max_steps"):
                out["max_steps"] = int(status["max_steps"])
            if status.get("images_per_sec") is not None:
                out["images_per_sec"] = float(status["images_per_sec"])
            if status.get("seconds_left") is not None:
                out["seconds_left"] = float(status["seconds_left"])
        except (TypeError, ValueError):
            pass                 # a hand-edited or foreign file: what was read so far stands
        return out

    def sample_names(self) -> list[str]:
        return [n for n in self.store.list(SAMPLES) if n.endswith(".png")]

    def read_sample(self, name: str) -> bytes:
        """One grid of sample_names() (PNG)."""
        return self.store.read_bytes(f"{SAMPLES}/{name}")

    def has_model(self) -> bool:
        return self.store.exists(f"{MODEL}/{SAVED_MODEL}")

    def model_info(self) -> dict[str, Any]:
        return self._json(f"{MODEL}/{MODEL_INFO}")


def failure_message(headline: str, trainer_error: str = "", log_tail: str = "",
                    log_title: str = "Last log lines") -> str:
    """Why a job failed, in one shape whichever backend ran it: what was seen (an exit code,
    a vanished process, the cloud's own message), the trainer's reason from status.json,
    then the end of its log."""
    parts = [headline] if headline else []
    if trainer_error:
        parts.append(f"trainer: {trainer_error}")
    if log_tail:
        parts.append(f"{log_title}:\n{log_tail}")
    return "\n".join(parts)


def tensorboard_dir(job_dir: str) -> str:
    """Where a job's TensorBoard event files are: a folder, or a gs:// prefix."""
    return f"{job_dir.rstrip('/')}/{TENSORBOARD}"
