"""Two operating-system chores trainer/ and core/ both need, standard library only.

Here, in trainer/, because the trainer ships alone; core/ imports them from here.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any


def import_tensorflow() -> Any:
    """`import tensorflow` with its start-up lines kept off fd 2.

    TensorFlow writes absl's "log messages before InitializeLog" preamble and "oneDNN
    custom operations are on" straight to fd 2 while it imports, whatever
    TF_CPP_MIN_LOG_LEVEL says: into train.log, or four lines before every `genml
    generate`. fd 2 goes to a temporary file for the import only; if the import fails,
    what it wrote is shown (it is the real error).
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved, imported = os.dup(2), False
    with tempfile.TemporaryFile() as chatter:
        os.dup2(chatter.fileno(), 2)
        try:
            import tensorflow as tf
            imported = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not imported:
                chatter.seek(0)
                sys.stderr.write(chatter.read().decode("utf-8", "replace"))
                sys.stderr.flush()
    return tf


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a folder (a folder: so a rename or a new entry in it survives a crash).
    Best effort: a file system that cannot (or a path that is gone) is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
