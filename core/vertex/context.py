"""What every part of the Vertex AI backend shares: the workspace, the registry, the
profile's settings, the API clients and where notices go.

The facade (core/vertex/backend.py) builds one Context and hands it to the modules
(preflight, datasets, jobs, operations, models, batch), so none of them imports the
facade and none needs the others' state.
"""
from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from core import config as config_mod
from core.registry import Registry
from core.vertex.clients import Clients
from core.vertex.settings import Settings
from core.workspace import Workspace


def _stderr_notice(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


@dataclass
class Context:
    ws: Workspace
    cfg: config_mod.Config
    registry: Registry
    settings: Settings
    clients: Clients
    sleep: Callable[[float], None] = time.sleep
    on_notice: Callable[[str], None] = _stderr_notice
    bucket_checked: bool = False
    refreshed: dict[str, float] = field(default_factory=dict)   # job id -> monotonic time of the last read
    today: Callable[[], dt.date] = dt.date.today                 # for image end-of-availability dates
    last_refresh_error: str = ""          # why the last list_jobs could not ask Vertex AI ("" if it could)
    models_refresh_error: str = ""        # the same for list_models (core/vertex/sync.py)
    models_synced: float = -1e9           # monotonic time of the last list_models that reached Vertex AI
    models_checked: dict[str, float] = field(default_factory=dict)   # model ref -> monotonic time of its last check

    @property
    def state_dir(self) -> Path:
        return self.ws.root / "vertex"

    def dataset_uri(self, name: str) -> str:
        return self.settings.gs("datasets", name)


def label(value: str) -> str:
    """A valid label value: lowercase letters, digits, - and _, at most 63 characters."""
    out = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in value.lower())
    return out[:63] or "x"


def last(name: str) -> str:
    """projects/P/locations/L/customJobs/123 -> 123"""
    return name.rsplit("/", 1)[-1]


def timestamp(value: str | None) -> float | None:
    """An RFC 3339 time from the API (any number of fractional digits) as epoch seconds."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def profile_name(profile: dict[str, Any]) -> str:
    return str(profile.get("name", "vertex"))
