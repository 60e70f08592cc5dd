"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""
from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.workspace",
    "tests.fixtures.datasets",
    "tests.fixtures.models",
]
