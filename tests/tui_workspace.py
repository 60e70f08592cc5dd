"""A small, fixed workspace for the TUI's tests, written through the real registry.

Timestamps, images and metrics are fixed so snapshot tests are deterministic. The
generator's snapshots use `NumpyPredictor`: a real TensorFlow model is not bit-exact
across thread counts, and a snapshot must be; the tmux test drives the real model.
"""
from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
from PIL import Image

from core.local.backend import LocalBackend
from core.registry import Registry
from core.types import Dataset, Job, JobState
from core.workspace import Workspace

T0 = 1764350000.0      # 2025-11-28 17:13:20 UTC


def png(rng: np.random.Generator, w: int, h: int, blocks: int = 8) -> bytes:
    small = rng.integers(0, 255, (blocks, blocks, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_dataset(ws: Workspace, reg: Registry, name: str, created: float, seed: int, skipped: int = 2) -> None:
    rng = np.random.default_rng(seed)
    folder = ws.dataset_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    from core.datasets import contact_sheet
    sheet = contact_sheet.render([png(rng, 86, 86, blocks=4) for _ in range(24)])
    assert sheet is not None
    (folder / "contact_sheet.png").write_bytes(sheet)
    manifest = {
        "format": "genml.dataset/1", "name": name, "created": created, "source": f"/photos/{name}",
        "options": {"crop": "random", "image_size": 64, "stored_size": 86, "crop_fraction": 0.75},
        "counts": {"scanned": 120 + skipped, "train": 108, "validation": 12, "skipped": skipped, "duplicates": 1},
        "shards": {"train": [], "validation": []},
        "skipped": [{"path": f"bad/{i}.jpg", "reason": "truncated or corrupt: image file is truncated"}
                    for i in range(skipped)],
        "duplicates": [{"path": "x.png", "duplicate_of": "y.png"}],
        "stats": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    reg.add_dataset(Dataset(name=name, path=str(folder), created=created, train_count=108,
                            validation_count=12, skipped_count=skipped, duplicate_count=1))


def write_job(ws: Workspace, reg: Registry, job_id: str, state: JobState, step: int, max_steps: int,
              seed: int, error: str = "", log_lines: int = 60, best_fields: bool = False) -> Job:
    """A job dir with metrics, a sample, a log. `best_fields`: eval rows carry the trainer's
    best_step/best_swd/evals_since_best/patience (newer trainers); without, the TUI works them out."""
    rng = np.random.default_rng(seed)
    d = ws.job_dir(job_id)
    (d / "samples").mkdir(parents=True, exist_ok=True)
    (d / "samples" / f"step-{step:06d}.png").write_bytes(png(rng, 64, 64, blocks=4))
    rows = []
    for s in range(10, step + 1, 10):
        rows.append({"kind": "train", "step": s, "wall_time": T0 + s, "elapsed": s, "images_per_sec": 90.0,
                     "loss_kl": 1.0 / s ** 0.5, "loss_recon": 0.5 + 2.0 / s, "loss_d": 1.3 + 0.1 * np.sin(s / 7),
                     "loss_g": 0.7 + 0.2 * np.cos(s / 9), "loss_e": 0.6 + 1.0 / s})
        if s % 50 == 0:
            rows.append({"kind": "eval", "step": s, "wall_time": T0 + s, "psnr": 12.0 + s / 100,
                         "ssim": 0.2 + s / 1000, "swd": 0.9 - s / 1000, "swd_floor": 0.05})
            if best_fields:
                rows[-1].update(best_step=s, best_swd=0.9 - s / 1000, evals_since_best=0, patience=4)
    (d / "config.json").write_text(json.dumps({"trainer": {"preset": "tiny", "image_size": 16, "sample_grid": 4}}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "train.log").write_text("".join(f"step {i * 10}: loss_g=0.{i % 10}{i % 7} loss_d=1.{i % 5}\n"
                                         for i in range(log_lines)) + ("ERROR out of memory\n" if error else ""))
    status = {"state": state.value, "step": step, "max_steps": max_steps, "error": error, "updated": T0,
              "pid": None, "images_per_sec": 90.0}
    (d / "status.json").write_text(json.dumps(status))
    job = Job(id=job_id, dataset="cats", state=state, created=T0, started=T0 + 1,
              ended=None if not state.terminal else T0 + 100, job_dir=str(d),
              options={"preset": "tiny", "batch_size": 16}, error=error, step=step, max_steps=max_steps,
              images_per_sec=90.0,
              # a running job with no process yet counts as "being spawned" for a while, so the
              # backend's reconcile-on-open leaves it running
              remote={"spawned_at": time.time()} if not state.terminal else {})
    reg.add_job(job)
    return job


def build(ws: Workspace, *, datasets: bool = True, jobs: bool = True, models: bool = True) -> Workspace:
    reg = Registry(ws.registry_path)
    if datasets:
        write_dataset(ws, reg, "cats", T0, seed=1)
        write_dataset(ws, reg, "dogs", T0 + 3600, seed=2, skipped=0)
    if jobs:
        write_job(ws, reg, "cats-20251128-171320", JobState.SUCCEEDED, 200, 200, seed=3)
        write_job(ws, reg, "cats-20251128-181320", JobState.RUNNING, 120, 400, seed=4, best_fields=True)
        write_job(ws, reg, "dogs-20251128-191320", JobState.FAILED, 30, 200, seed=5, error="out of memory")
    if models:
        mv = reg.add_model_version("cats", "cats-20251128-171320", str(ws.job_dir("cats-20251128-171320") / "model"),
                                   metrics={"swd": 0.7, "psnr": 14.0, "ssim": 0.4, "step": 200},
                                   info={"image_size": 64, "embedding_size": 100, "preset": "tiny"})
        reg.update_model(mv.name, mv.version, created=T0 + 200)
    reg.close()
    return ws


class NumpyPredictor:
    """A deterministic stand-in for a loaded model: z -> a colour pattern (snapshots only)."""

    image_size = 64
    embedding_size = 100

    def generate(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32)
        out = np.zeros((len(z), 64, 64, 3), dtype=np.uint8)
        for i, row in enumerate(z):
            grid = (np.tanh(row[:48].reshape(4, 4, 3)) * 127 + 128).astype(np.uint8)
            out[i] = np.kron(grid, np.ones((16, 16, 1), dtype=np.uint8))
        return out

    def encode(self, images: list[bytes]) -> np.ndarray:
        out = []
        for data in images:
            img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((4, 4)), dtype=np.float32)
            z = np.zeros(100, dtype=np.float32)
            z[:48] = np.arctanh(np.clip((img.reshape(-1) - 128) / 127, -0.99, 0.99))
            out.append(z)
        return np.stack(out)

    def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError


class FixedBackend(LocalBackend):
    """The real local backend over the test workspace; only `predictor` is the numpy stand-in."""

    def predictor(self, ref: str) -> NumpyPredictor:  # type: ignore[override]  # a stand-in
        self.get_model(ref)
        return NumpyPredictor()
