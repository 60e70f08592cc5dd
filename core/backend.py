"""The one interface both backends implement (local = default, vertex = Google Cloud).

The CLI and the TUI only ever talk to a `Backend`; which one is chosen by
`--backend`/profile in the config (see core/backends.py). Long calls take an optional
progress callback and an optional cancel event so a UI can show and stop them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:   # numpy costs ~0.2 s to import: keep it off the TUI's first paint
    import numpy as np

    from core.predict import Parsed

from core.types import Dataset, Job, ModelVersion
from trainer.contract import DEFAULT_CROP, DEFAULT_IMAGE_SIZE, DEFAULT_PRESET


@dataclass
class Progress:
    """One progress report: `done` of `total` units (total 0 when unknown)."""

    stage: str
    done: int
    total: int = 0
    message: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class TrainOptions:
    """What a person chooses for a training run; everything else comes from the preset."""

    preset: str = DEFAULT_PRESET
    max_steps: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    loss: str | None = None              # one of contract.LOSSES; None: the trainer's default
    image_size: int | None = None        # None: the dataset decides (contract.train_image_size)
    embedding_size: int | None = None
    extra_args: list[str] = field(default_factory=list)   # passed through to trainer.task
    replicas: int | None = None          # vertex only: number of machines (None: the profile's)
    machine_type: str | None = None      # vertex only

    def trainer_args(self) -> list[str]:
        args = ["--preset", self.preset]
        for flag, value in (("--max-steps", self.max_steps), ("--batch-size", self.batch_size),
                            ("--seed", self.seed), ("--loss", self.loss), ("--image-size", self.image_size),
                            ("--embedding-size", self.embedding_size)):
            if value is not None:
                args += [flag, str(value)]
        return args + list(self.extra_args)

    def check(self) -> None:
        """The trainer's own option checks (trainer.task.check_args), run by every backend's
        submit before a job is queued: a typo or `--checkpoint-every 0` fails here, not
        minutes into the run, and --job-dir/--data-dir cannot point the trainer elsewhere."""
        from core.errors import InvalidInput
        from trainer.task import check_args
        try:
            check_args(self.trainer_args())
        except ValueError as exc:
            raise InvalidInput(f"Trainer options: {exc}.",
                               "See `python -m trainer.task --help` for the options and docs/trainer.md "
                               "for what they do; genml sets --data-dir and --job-dir itself.") from exc


@dataclass
class LogChunk:
    lines: list[str]
    cursor: Any            # opaque: pass back to read_log to get what came after


@dataclass
class BatchResult:
    output_dir: str
    predictions: int
    errors: int
    files: list[str]


class Predictor(Protocol):
    """A loaded model: generation and encoding without serialising through JSON."""

    image_size: int
    embedding_size: int

    def generate(self, z: np.ndarray) -> np.ndarray:
        """(N, E) float32 -> (N, H, W, 3) uint8."""
        ...

    def encode(self, images: list[bytes]) -> np.ndarray:
        """Encoded JPEG/PNG files -> (N, E) float32 means."""
        ...

    def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        """The seed's instance formats in, one prediction or {"error", "key"} per instance out."""
        ...

    def predict_parsed(self, parsed: list[Parsed]) -> list[dict[str, Any]]:
        """Instances already checked by core.predict.parse_instance (the one parser), one
        prediction per instance; a BadInstance comes back as its error. Serve, batch and
        `genml predict` call this, whatever the backend, so errors read the same everywhere."""
        ...


class Backend(Protocol):
    name: str

    # datasets
    def list_datasets(self) -> list[Dataset]: ...
    def get_dataset(self, name: str) -> Dataset: ...
    def dataset_manifest(self, name: str) -> dict[str, Any]: ...
    def contact_sheet(self, name: str) -> bytes | None: ...
    def add_dataset(self, source: Path, name: str, *, crop: str = DEFAULT_CROP,
                    image_size: int = DEFAULT_IMAGE_SIZE,
                    progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                    replace: bool = False, force: bool = False) -> Dataset: ...
    def make_demo_dataset(self, name: str = "demo", count: int = 2000, *, progress: ProgressFn | None = None,
                          cancel: threading.Event | None = None, replace: bool = False,
                          force: bool = False) -> Dataset: ...
    # `force`: go ahead although an unfinished job reads the dataset (refused otherwise)
    def remove_dataset(self, name: str, force: bool = False) -> None: ...

    # jobs
    def submit_job(self, dataset: str, options: TrainOptions) -> Job: ...
    def list_jobs(self) -> list[Job]: ...
    def get_job(self, job_id: str) -> Job: ...
    def cancel_job(self, job_id: str) -> Job: ...
    def resume_job(self, job_id: str) -> Job: ...
    def read_log(self, job_id: str, cursor: Any = None, max_lines: int = 5000) -> LogChunk: ...

    # models
    def deploy(self, job_id: str, name: str | None = None) -> ModelVersion: ...
    def list_models(self) -> list[ModelVersion]: ...
    def get_model(self, ref: str) -> ModelVersion: ...
    def undeploy(self, ref: str) -> ModelVersion: ...
    def remove_model(self, ref: str) -> None: ...

    # prediction
    def predictor(self, ref: str) -> Predictor: ...
    def batch_predict(self, ref: str, input_path: Path, output_dir: Path, *,
                      progress: ProgressFn | None = None) -> BatchResult: ...
