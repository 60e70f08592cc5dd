"""The one failure the trainer expects: wrong input. It ends the run with exit code 2."""
from __future__ import annotations


class InputError(Exception):
    """Bad input a person can fix (missing dataset, sizes that do not fit, full disk).

    The message goes to status.json's "error" and to stderr; the process exits 2.
    """
