"""The records both backends speak: datasets, jobs and model versions.

Job states use Vertex AI's names so the TUI and CLI show one vocabulary everywhere.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Callable

from trainer import contract


class JobState(str, enum.Enum):
    QUEUED = contract.QUEUED
    PENDING = contract.PENDING
    RUNNING = contract.RUNNING
    SUCCEEDED = contract.SUCCEEDED
    FAILED = contract.FAILED
    CANCELLING = contract.CANCELLING
    CANCELLED = contract.CANCELLED

    @property
    def terminal(self) -> bool:
        """Ended for good (succeeded, failed, cancelled): the one test every caller uses."""
        return self.value in contract.TERMINAL_STATES

    @property
    def active(self) -> bool:
        """Queued, starting, running or being cancelled: a process or cloud job may be at work."""
        return self.value in contract.ACTIVE_STATES

    @classmethod
    def actives(cls) -> list[JobState]:
        return [s for s in cls if s.active]

    @property
    def short(self) -> str:
        return self.value.removeprefix("JOB_STATE_")

    @classmethod
    def parse(cls, value: str) -> "JobState":
        """Accept Vertex's extra states by mapping them onto ours."""
        extra = {"JOB_STATE_PAUSED": cls.PENDING, "JOB_STATE_UPDATING": cls.RUNNING,
                 "JOB_STATE_EXPIRED": cls.FAILED, "JOB_STATE_PARTIALLY_SUCCEEDED": cls.FAILED,
                 "JOB_STATE_UNSPECIFIED": cls.PENDING}
        if value in extra:
            return extra[value]
        if not value.startswith("JOB_STATE_"):
            value = "JOB_STATE_" + value.upper()
        return cls(value)


class _Record:
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dataclasses.asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass
        for k, v in d.items():
            if isinstance(v, enum.Enum):
                d[k] = v.value
        return d


@dataclass
class Progress:
    """One progress report: `done` of `total` units (total 0 when unknown). (Re-exported by
    core/backend.py; here so storage code can report progress without importing the protocol.)"""

    stage: str
    done: int
    total: int = 0
    message: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class Dataset(_Record):
    name: str
    path: str                      # local folder, or gs:// URI for a cloud copy
    created: float
    train_count: int = 0
    validation_count: int = 0
    skipped_count: int = 0
    duplicate_count: int = 0
    crop: str = contract.DEFAULT_CROP
    image_size: int = contract.DEFAULT_IMAGE_SIZE
    backend: str = "local"


@dataclass
class Job(_Record):
    id: str
    dataset: str
    state: JobState
    backend: str = "local"
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    job_dir: str = ""              # local folder or gs:// URI: the self-describing job dir
    options: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    step: int = 0
    max_steps: int = 0
    images_per_sec: float | None = None
    seconds_left: float | None = None  # the trainer's own estimate of the training time left
    pid: int | None = None
    remote: dict[str, Any] = field(default_factory=dict)   # backend-specific (Vertex resource name ...)

    @property
    def eta_seconds(self) -> float | None:
        if self.state is not JobState.RUNNING:
            return None
        if self.seconds_left is not None:       # trainers since --batch-double report it
            return self.seconds_left
        if not self.images_per_sec or not self.max_steps:
            return None
        batch = int(self.options.get("batch_size", 64) or 64)
        return max(0, self.max_steps - self.step) * batch / self.images_per_sec


REMOTE_MISSING = "missing"     # remote["stage"] of a cloud model whose Model was deleted outside genml


@dataclass
class ModelVersion(_Record):
    name: str
    version: int
    job_id: str
    path: str                      # the SavedModel folder (local) or gs:// URI
    created: float
    deployed: bool = True
    backend: str = "local"
    metrics: dict[str, Any] = field(default_factory=dict)   # swd, psnr, ssim, step
    info: dict[str, Any] = field(default_factory=dict)      # image_size, embedding_size, preset...
    remote: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def missing(self) -> bool:
        """Its cloud Model was deleted outside genml (the console, gcloud): the Vertex AI
        backend's list found it gone and kept the row, so the person can deploy again or forget it."""
        return self.remote.get("stage") == REMOTE_MISSING

    @property
    def deployed_label(self) -> str:
        """What the lists' deployed column says: yes, no, or that the cloud Model is gone."""
        if self.missing:
            return "missing in Vertex AI"
        return "yes" if self.deployed else "no"
