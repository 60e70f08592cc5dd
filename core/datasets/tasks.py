"""What the dataset workers run: a batch of tasks, each a source file or a demo picture.

The dispatcher lives here, above both images.py (files) and demo.py (which builds on
images.py), so neither imports the other back. Workers import only Pillow through these.
"""
from __future__ import annotations

from typing import Any

from core.datasets import demo, images
from core.datasets.images import Options, Processed

Task = tuple[Any, ...]  # ("file", root, rel, bytes) or ("demo", seed, index, render size)


def process_batch(options: Options, tasks: list[Task]) -> list[Processed]:
    """The worker entry point: a small batch per call keeps inter-process overhead low."""
    out = []
    for task in tasks:
        if task[0] == "demo":
            out.append(demo.process_demo(task[1], task[2], task[3], options))
        else:
            out.append(images.process_file(task[1], task[2], options))  # by module: tests patch it
    return out
