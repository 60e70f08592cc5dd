"""Batch prediction: sharded output, an errors file, and resuming after a crash without loss or duplicates."""
from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from core import batch
from core.errors import InvalidState
from core.predict import load_predictor


pytestmark = pytest.mark.slow   # the tiny_job_dir fixture trains a model
E = 8


@pytest.fixture(scope="module")
def predictor(tiny_job_dir: Path):
    return load_predictor(tiny_job_dir / "model")


def _png() -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _input(path: Path, n: int = 45) -> tuple[set[str], set[int]]:
    """n lines: mostly embeddings, some images, and bad lines at known line numbers."""
    good, bad = set(), set()
    png = _png()
    with open(path, "w") as f:
        for i in range(1, n + 1):
            if i % 11 == 0:
                f.write("{oops\n")
                bad.add(i)
            elif i % 7 == 0:
                f.write(json.dumps({"embeddings": [1.0] * (E - 1), "key": f"k{i}"}) + "\n")
                bad.add(i)
            elif i % 13 == 0:
                f.write("\n")                                   # blank lines are skipped
            elif i % 5 == 0:
                f.write(json.dumps({"image_bytes": {"b64": png}, "key": f"k{i}"}) + "\n")
                good.add(f"k{i}")
            else:
                f.write(json.dumps({"embeddings": [i / 50.0] * E, "key": f"k{i}"}) + "\n")
                good.add(f"k{i}")
    return good, bad


def _read(out: Path, kind: str) -> list[dict[str, Any]]:
    rows = []
    for p in sorted(out.glob(f"{kind}-*.jsonl")):
        rows += [json.loads(line) for line in p.read_text().splitlines()]
    return rows


def test_shards_predictions_and_errors(tmp_path: Path, predictor: Any) -> None:
    inp = tmp_path / "in.jsonl"
    good, bad = _input(inp)
    res = batch.run(predictor, inp, tmp_path / "out", shard_lines=10)
    names = sorted(p.name for p in (tmp_path / "out").glob("predictions-*"))
    assert names == [f"predictions-0000{i}-of-00005.jsonl" for i in range(5)]
    preds = _read(tmp_path / "out", "predictions")
    assert {p["key"] for p in preds} == good and len(preds) == len(good)
    errors = _read(tmp_path / "out", "errors")
    assert {e["line"] for e in errors} == bad
    assert all(e["error"].startswith(f"line {e['line']}") for e in errors)
    assert res.predictions == len(good) and res.errors == len(bad)


class Crashing:
    """The real predictor, but the process "dies" (raises) at the n-th model call."""

    def __init__(self, inner: Any, calls_before_crash: int) -> None:
        self.inner, self.left = inner, calls_before_crash
        self.embedding_size = inner.embedding_size

    def predict_parsed(self, parsed: list[Any]) -> list[dict[str, Any]]:
        if self.left == 0:
            raise KeyboardInterrupt("killed")
        self.left -= 1
        return self.inner.predict_parsed(parsed)


def test_resume_after_a_crash_neither_loses_nor_duplicates(tmp_path: Path, predictor: Any) -> None:
    inp = tmp_path / "in.jsonl"
    _input(inp, 60)
    batch.run(predictor, inp, tmp_path / "once", shard_lines=8)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        batch.run(Crashing(predictor, 3), inp, out, shard_lines=8)      # dies inside shard 3
    assert len(list(out.glob("predictions-*"))) == 3                    # whole shards only
    with pytest.raises(KeyboardInterrupt):
        batch.run(Crashing(predictor, 1), inp, out, shard_lines=8)      # dies again, one shard later
    res = batch.run(predictor, inp, out, shard_lines=8)
    for kind in ("predictions", "errors"):
        once = {p.name: p.read_bytes() for p in (tmp_path / "once").glob(f"{kind}-*")}
        resumed = {p.name: p.read_bytes() for p in out.glob(f"{kind}-*")}
        assert once == resumed
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert res.predictions == len(_read(out, "predictions"))


def test_a_changed_input_is_not_mixed_into_old_output(tmp_path: Path, predictor: Any) -> None:
    inp = tmp_path / "in.jsonl"
    _input(inp, 5)
    batch.run(predictor, inp, tmp_path / "out")
    with open(inp, "a") as f:
        f.write(json.dumps({"embeddings": [0.0] * E, "key": "late"}) + "\n")
    with pytest.raises(InvalidState, match="another batch run"):
        batch.run(predictor, inp, tmp_path / "out")


def test_empty_input_gives_one_empty_shard(tmp_path: Path, predictor: Any) -> None:
    inp = tmp_path / "empty.jsonl"
    inp.write_text("")
    res = batch.run(predictor, inp, tmp_path / "out")
    assert res.predictions == 0 and (tmp_path / "out" / "predictions-00000-of-00001.jsonl").exists()


def test_an_enormous_line_is_an_error_not_a_memory_blowup(tmp_path: Path, predictor: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "MAX_LINE", 1000)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"embeddings": [0.0] * E, "key": "a"}) + "\n" + "x" * 5000 + "\n"
                   + json.dumps({"embeddings": [0.0] * E, "key": "b"}) + "\n")
    res = batch.run(predictor, inp, tmp_path / "out")
    assert (res.predictions, res.errors) == (2, 1)
    assert "longer than" in _read(tmp_path / "out", "errors")[0]["error"]


def test_a_planted_temp_symlink_does_not_redirect_the_output(predictor: Any, tmp_path: Path) -> None:
    """In a shared output folder, a symlink at the temp name a run used to use must not
    make the run write through it (issue 12, item 12)."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"embeddings": [0.5] * E, "key": "a"}) + "\n{oops\n")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for kind in ("predictions", "errors"):
        (out / f".{kind}-00000-of-00001.jsonl.tmp").symlink_to(victim)
    res = batch.run(predictor, src, out)
    assert victim.read_text() == "precious\n"
    assert res.predictions == 1 and res.errors == 1
    assert not any(p.name.endswith(".tmp") for p in out.iterdir() if not p.is_symlink())
