"""trainer/contract.py is the one home of the facts the parts share (issue 11).

These tests keep it so: it imports nothing, its values agree with the code built on
them, and the distinctive values are not spelled again anywhere in core/, tui/ or trainer/.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from trainer import contract

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("core", "tui", "trainer") for p in (ROOT / d).rglob("*.py"))

# Values distinctive enough that a literal anywhere else means the fact was written twice.
SPELLED_ONCE = {
    contract.CROP_FRACTION, contract.STATUS, contract.METRICS, contract.CONFIG, contract.MODEL_INFO,
    contract.SAVED_MODEL, contract.TRAIN_LOG, contract.DATASET_MANIFEST, contract.SAMPLE_NAME,
    *contract.TERMINAL_STATES, *contract.ACTIVE_STATES, contract.PRESETS, contract.LOSSES,
    contract.IMAGE_SIZES, contract.CROPS,
}


def _literals(tree: ast.AST) -> list[tuple[int, object]]:
    """Constants and tuples/lists of constants, docstrings left out (prose may name a value)."""
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found: list[tuple[int, object]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
        elif isinstance(node, (ast.Tuple, ast.List)) and node.elts \
                and all(isinstance(e, ast.Constant) for e in node.elts):
            found.append((node.lineno, tuple(e.value for e in node.elts)))  # type: ignore[attr-defined]  # all Constant
    return found


def test_contract_imports_nothing() -> None:
    tree = ast.parse((ROOT / "trainer" / "contract.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_part_spells_a_contract_value(path: Path) -> None:
    if path.name == "contract.py":
        return
    spelled = [(line, value) for line, value in _literals(ast.parse(path.read_text()))
               if isinstance(value, (str, float, tuple)) and value in SPELLED_ONCE]
    assert not spelled, f"{path.relative_to(ROOT)} spells {spelled}: import it from trainer/contract.py"


def test_values_agree_with_the_code_built_on_them() -> None:
    from core.types import JobState
    from trainer import presets

    assert tuple(presets.PRESETS) == contract.PRESETS
    assert set(contract.PRESET_SUMMARIES) == set(contract.PRESETS)
    assert set(contract.CROP_SUMMARIES) == set(contract.CROPS)
    assert {s.value for s in JobState} == contract.TERMINAL_STATES | contract.ACTIVE_STATES
    assert not contract.TERMINAL_STATES & contract.ACTIVE_STATES
    assert [s for s in JobState if s.terminal] == [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]
    for name, size in contract.PRESET_IMAGE_SIZES.items():
        assert presets.resolve(name, {}).image_size == size
    assert presets.resolve("seed", {}).image_size == contract.DEFAULT_IMAGE_SIZE


@pytest.mark.parametrize(("preset", "flag", "dataset", "want"), [
    ("seed", None, 128, 128),       # the dataset decides
    ("seed", None, 32, 32),
    ("seed", 64, 128, 64),          # a flag overrides it
    ("tiny", None, 64, 16),         # speed presets keep their small size...
    ("quick", None, 128, 32),
    ("quick", None, 16, 16),        # ...but never more than the dataset holds
])
def test_train_image_size(preset: str, flag: int | None, dataset: int, want: int) -> None:
    assert contract.train_image_size(preset, flag, dataset) == want
