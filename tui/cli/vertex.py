"""genml vertex commands."""
from __future__ import annotations

COMMANDS: list = []
