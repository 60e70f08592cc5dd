"""One error family for expected failures.

Each carries a message for a person and a hint for what to do next; the CLI and the
TUI show both and never a traceback. Anything else that escapes is a bug.
"""
from __future__ import annotations


class GenmlError(Exception):
    """An expected failure: something a person can understand and act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\nhint: {self.hint}" if self.hint else self.message


class NotFound(GenmlError):
    """A dataset, job or model that does not exist."""

    exit_code = 2


class AlreadyExists(GenmlError):
    """A name already taken."""


class InvalidInput(GenmlError):
    """Input that cannot be used as given (arguments, files, JSON, instances)."""


class InvalidState(GenmlError):
    """The right thing at the wrong time: deploying a running job, resuming a finished one."""


class StorageError(GenmlError):
    """The disk or the bucket said no: full disk, permissions, a corrupt file."""


class CloudError(GenmlError):
    """Google Cloud said no, and the hint says what to change."""
