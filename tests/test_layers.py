"""The layer rules of README.md (core/ without UI, trainer/ without core/, no TensorFlow at the
TUI's import), checked on the source; import-linter checks them too, in `make test`."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(pkg: str, top_level_only: bool = False) -> list[tuple[str, str]]:
    found = []
    for path in (ROOT / pkg).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_core_has_no_ui_code() -> None:
    bad = [(f, m) for f, m in imports("core") if m in {"textual", "tui", "rich_pixels", "textual_image"}]
    assert bad == []


def test_trainer_ships_alone() -> None:
    bad = [(f, m) for f, m in imports("trainer") if m in {"core", "tui"}]
    assert bad == []


def test_tui_does_not_import_tensorflow_at_module_level() -> None:
    bad = [(f, m) for f, m in imports("tui", top_level_only=True) if m in {"tensorflow", "keras"}]
    assert bad == []


def test_importing_the_app_and_cli_does_not_load_tensorflow() -> None:
    code = ("import sys, tui.app, tui.cli, core.backends; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow loaded at import'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_no_import_cycles_in_core_trainer_or_tui() -> None:
    """Every import that runs counts, lazy ones inside functions too (grimp's graph, as import-linter
    builds it; `if TYPE_CHECKING:` imports, for annotations only, do not): a cycle means two modules
    each need the other, so neither has one clear job."""
    import grimp
    graph = grimp.build_graph("core", "trainer", "tui", exclude_type_checking_imports=True)
    cycles = sorted({tuple(sorted((m, n))) for m in graph.modules for n in graph.find_modules_directly_imported_by(m)
                     if graph.find_shortest_chain(importer=n, imported=m)})
    assert cycles == []


def test_every_type_ignore_and_noqa_says_why() -> None:
    """A suppression is a claim that the checker is wrong here; the comment after it says why
    (`# type: ignore[code]  # why`, `# noqa: CODE - why`), so the next reader can check the claim.
    After a type-ignore only a second `#` will do: mypy reads a reason in parentheses or after a
    dash as an invalid comment and ignores nothing (trainer/task.py had one, unnoticed while
    the module was left unchecked)."""
    import re
    ignore = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?(.*)$")
    noqa = re.compile(r"#\s*noqa(:\s*[A-Z0-9, ]+)?(.*)$")
    bare = []
    for path in sorted(p for d in ("core", "trainer", "tui", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = ignore.search(line)
            if m and not re.match(r"^#\s*\S", m.group(2).strip()):
                bare.append(f"{path.relative_to(ROOT)}:{n}")
            m = noqa.search(line)
            if m and not m.group(2).strip():
                bare.append(f"{path.relative_to(ROOT)}:{n}")
    assert bare == [], "say why after each of these suppressions"
