"""genml-tui: placeholder until issue 5 lands."""
from __future__ import annotations


def main() -> None:
    raise SystemExit("genml-tui is being built")
