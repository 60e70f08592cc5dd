"""The one failure the trainer expects: wrong input. It ends the run with exit code 2."""
from __future__ import annotations

import errno


class InputError(Exception):
    """Bad input a person can fix (missing dataset, sizes that do not fit, full disk).

    The message goes to status.json's "error" and to stderr; the process exits 2.
    """


def is_disk_full(exc: BaseException) -> bool:
    """The one test for "the disk (or quota) is full", whoever raised it: the os module,
    or TensorFlow's file and checkpoint ops, which only say it in their message."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    text = str(exc)
    if any(s in text for s in ("No space left", "File too large", "Disk quota", "quota", "ENOSPC")):
        return True
    return type(exc).__name__ == "ResourceExhaustedError"      # tf.errors, without importing TF
