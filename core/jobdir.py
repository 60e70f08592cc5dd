"""Reading a job dir: status, metrics, samples, model. Needs nothing but the dir.

The layout is written by trainer/ (see docs/contracts.md); this is the one reader the
CLI, the TUI and both backends share.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.store import Store, open_store
from trainer.contract import CONFIG, METRICS, MODEL, MODEL_INFO, SAMPLES, SAVED_MODEL, STATUS


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

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.store.read_bytes(STATUS))
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return {}

    def config(self) -> dict[str, Any]:
        try:
            return json.loads(self.store.read_bytes(CONFIG))
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return {}

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

    def sample_names(self) -> list[str]:
        return [n for n in self.store.list(SAMPLES) if n.endswith(".png")]

    def latest_sample(self) -> bytes | None:
        names = self.sample_names()
        return self.store.read_bytes(f"{SAMPLES}/{names[-1]}") if names else None

    def has_model(self) -> bool:
        return self.store.exists(f"{MODEL}/{SAVED_MODEL}")

    def model_info(self) -> dict[str, Any]:
        try:
            return json.loads(self.store.read_bytes(f"{MODEL}/{MODEL_INFO}"))
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return {}
