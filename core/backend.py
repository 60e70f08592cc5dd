"""The one interface both backends implement (local = default, vertex = Google Cloud).

The CLI and the TUI only ever talk to a `Backend`; which one is chosen by
`--backend`/profile in the config (see core/backends.py). Long calls take an optional
progress callback and an optional cancel event so a UI can show and stop them.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:   # numpy costs ~0.2 s to import: keep it off the TUI's first paint
    import numpy as np

    from core.predict import Parsed

from core.errors import InvalidInput
from core.jobdir import JobDir
from core.types import Dataset, Job, ModelVersion
from core.types import Progress as Progress  # re-exported: callers import both from here
from core.types import ProgressFn as ProgressFn
from trainer.contract import (DEFAULT_CROP, DEFAULT_IMAGE_SIZE, DEFAULT_PRESET, IMAGE_SIZES, LOSSES, PRESETS,
                              train_image_size)


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

    def for_dataset(self, ds: Dataset) -> TrainOptions:
        """These options checked against the dataset, with the training size decided
        (contract.train_image_size: a flag, else the dataset's own size).

        Both backends call this in submit_job before any process or cloud job starts, so a
        job that cannot train on its dataset is refused at once instead of failing in the
        trainer after it was queued. It ends with check(), the trainer's own parser.
        """
        if self.preset not in PRESETS:
            raise InvalidInput(f"Unknown preset {self.preset!r}.", f"Use one of {', '.join(PRESETS)}.")
        if self.loss is not None and self.loss not in LOSSES:
            raise InvalidInput(f"Unknown loss {self.loss!r}.", f"Use one of {', '.join(LOSSES)}.")
        if self.image_size is not None and self.image_size not in IMAGE_SIZES:
            raise InvalidInput(f"Image size {self.image_size} is not supported.",
                               f"Use one of {', '.join(map(str, IMAGE_SIZES))}, or leave it out: the dataset decides.")
        size = train_image_size(self.preset, self.image_size, ds.image_size)
        if size > ds.image_size:
            raise InvalidInput(
                f"Image size {size} is larger than dataset {ds.name!r} holds ({ds.image_size}).",
                f"Train with --image-size {ds.image_size} or less (or leave it out: the dataset decides), "
                f"or rebuild it: genml dataset add PATH --name {ds.name} --image-size {size} --replace.")
        decided = dataclasses.replace(self, image_size=size, extra_args=list(self.extra_args))
        decided.check()
        return decided

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


class CloudConsole(Protocol):
    """What `genml vertex check|resources` needs: a backend that runs in a cloud account."""

    def check(self) -> list[tuple[str, bool, str]]:
        """(check, ok, detail) for each precondition: profile, credentials, APIs, bucket."""
        ...

    def billable_resources(self) -> dict[str, list[dict[str, Any]]]:
        """What genml started that may still be billing: {"training", "batch", "endpoints"}."""
        ...

    def smoke_check(self, say: Callable[[str], None], confirm: Callable[[], bool]) -> bool | None:
        """`genml vertex smoke`: the opt-in, billable live round trip. Says the expected cost
        first; None when skipped (no credentials) or not confirmed, else whether it passed."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers beyond the common interface. Commands that only make sense on
    some backends ask for these, instead of checking the backend's type or name."""

    machines: bool = False               # --replicas / --machine-type choose what a job runs on
    cloud: CloudConsole | None = None    # `genml vertex check` and `genml vertex resources`


class Backend(Protocol):
    """Every backend subclasses this, so the methods with bodies below are its defaults
    for what a backend has nothing to do about; the others it must implement."""

    name: str

    # what this backend offers beyond the common interface (default: nothing)
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def set_notice_handler(self, fn: Callable[[str], None]) -> None:
        """Where the backend's notes for the person go (billing, permissions); the TUI shows
        them, since its stderr is hidden. Default: a backend with nothing to say ignores it."""
        return None

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

    def reconcile(self) -> list[str]:
        """Settle jobs whose processes ended without recording it; returns the ids changed.
        Callers that wait on a job call it between polls. Default: nothing to settle (a
        backend whose jobs are read from where they run)."""
        return []

    def job_dir(self, job: Job) -> JobDir:
        """The reader of a job's dir (status, metrics, samples, model) wherever it lives."""
        return JobDir(job.job_dir)

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
