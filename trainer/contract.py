"""The facts every part of genml agrees on, written once (docs/contracts.md explains them).

core/, tui/ and trainer/ import these names instead of spelling the values. This module
lives in trainer/ because the trainer ships alone (a Vertex AI package holds trainer/
only), and it imports nothing at all -- an import-linter contract in pyproject.toml and
tests/test_contract.py keep it so -- so any part can import it without cost or cycles.
"""
from __future__ import annotations

# ---- training presets and options -------------------------------------------------------
PRESETS = ("tiny", "quick", "seed")          # trainer/presets.py holds what each one sets
DEFAULT_PRESET = "seed"
PRESET_SUMMARIES: dict[str, str] = {         # what --help and the TUI say about each
    "tiny": "seconds, for trying things",
    "quick": "a CPU half-hour at most; stops once it stops improving",
    "seed": "the full 2017 recipe",
}
# The presets that exist for speed train at a small size of their own; the seed recipe has
# none and trains at its dataset's size. Never larger than the dataset (see train_image_size).
PRESET_IMAGE_SIZES: dict[str, int] = {"tiny": 16, "quick": 32}
LOSS_GAN, LOSS_VAEGAN, LOSS_SEED = "gan", "vaegan", "seed"
LOSSES = (LOSS_GAN, LOSS_VAEGAN, LOSS_SEED)
DEFAULT_LOSS = LOSS_GAN
LOSS_SUMMARIES: dict[str, str] = {           # what --help says about each
    LOSS_GAN: "the decoder learns as a GAN generator from prior samples; the encoder learns to "
           "invert it (reconstructs real images, recovers z from generated ones)",
    LOSS_VAEGAN: "Larsen et al.'s joint VAE-GAN: the decoder also learns to reconstruct",
    LOSS_SEED: "the 2017 seed's formulation, kept as a baseline",
}
CLOCKS = ("wall", "cpu")                     # what --max-minutes counts: wall, or CPU time / cores
MBSTD_MIXES = ("conv", "dense")              # --mbstd-mix: how D mixes the --mbstd channel in
IMAGE_SIZES = (16, 32, 64, 128)              # square sizes the trainer builds and datasets store
DEFAULT_IMAGE_SIZE = 64                      # a new dataset's size unless one is chosen

# ---- datasets and the crop rule ---------------------------------------------------------
CROP_CENTER, CROP_RANDOM = "center", "random"  # random: training only; evaluation is centred
CROPS = (CROP_CENTER, CROP_RANDOM)
# Centre by default: random crops are an augmentation the generator learns to reproduce
# (off-centre, cut-off subjects in its samples) while evaluation and serving see the
# centre; horizontal flips stay on in training either way.
DEFAULT_CROP = CROP_CENTER
CROP_SUMMARIES: dict[str, str] = {            # what the TUI says about each, default first
    CROP_CENTER: "always the centre square (samples framed like your images)",
    CROP_RANDOM: "a random square each step (more variety, off-centre samples)",
}
# The crop box is a square of floor(CROP_FRACTION * short side): training, evaluation,
# serving and the TUI's reconstruction view all cut the same box.
CROP_FRACTION = 0.75
DATASET_MANIFEST = "manifest.json"           # a dataset folder without it is incomplete

# ---- the job dir ------------------------------------------------------------------------
STATUS = "status.json"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
SAMPLES = "samples"                          # samples/step-000100.png (SAMPLE_NAME)
SAMPLE_NAME = "step-{step:06d}.png"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "logs"
MODEL = "model"                              # the exported SavedModel folder
SAVED_MODEL = "saved_model.pb"               # model/saved_model.pb: a complete model
MODEL_INFO = "genml.json"                    # model/genml.json, written after the SavedModel
TRAIN_LOG = "train.log"                      # the trainer's output (written by the local backend)

# ---- job states: Vertex AI's names, so one vocabulary everywhere ------------------------
QUEUED = "JOB_STATE_QUEUED"
PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLING = "JOB_STATE_CANCELLING"
CANCELLED = "JOB_STATE_CANCELLED"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE_STATES = frozenset({QUEUED, PENDING, RUNNING, CANCELLING})

# ---- trainer exit codes (trainer/task.py) -----------------------------------------------
EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_TERM = 0, 1, 2, 143


def train_image_size(preset: str, requested: int | None, dataset_size: int) -> int:
    """The size a job trains at: a flag if given, else the dataset's own size, except that a
    speed preset (tiny, quick) trains at its small size when the dataset is at least that big.

    One rule, used by the trainer and by both backends before they start anything.
    """
    if requested is not None:
        return requested
    own = PRESET_IMAGE_SIZES.get(preset)
    return min(own, dataset_size) if own else dataset_size
