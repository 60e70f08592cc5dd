"""manifest.json of a dataset folder (docs/contracts.md): what is in it and what was left out.

The manifest is written last and atomically; a folder without one is incomplete and no
reader may use it.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.datasets.images import Options, Processed
from trainer.contract import DATASET_MANIFEST

FORMAT = "genml.dataset/1"
MANIFEST = DATASET_MANIFEST
CONTACT_SHEET = "contact_sheet.png"


def split_of(sha256: str) -> str:
    """validation iff int(sha256[:8], 16) % 10 == 0: depends on the content alone, so adding
    images never moves existing ones between splits."""
    return "validation" if int(sha256[:8], 16) % 10 == 0 else "train"


@dataclass
class Stats:
    """Running statistics in bounded memory: the median size comes from a fixed-size
    deterministic reservoir sample, min and max are exact."""

    mean_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    count: int = 0
    sample: list[tuple[int, int]] = field(default_factory=list)
    smallest: tuple[int, int] | None = None
    largest: tuple[int, int] | None = None
    upsampled: int = 0
    limit: int = 10_000
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, p: Processed) -> None:
        self.count += 1
        for i in range(3):
            self.mean_sum[i] += p.mean_rgb[i]
        size = (int(p.source_size[0]), int(p.source_size[1]))

        def key(s: tuple[int, int]) -> tuple[int, tuple[int, int]]:
            return s[0] * s[1], s

        if self.smallest is None or key(size) < key(self.smallest):
            self.smallest = size
        if self.largest is None or key(size) > key(self.largest):
            self.largest = size
        if len(self.sample) < self.limit:
            self.sample.append(size)
        else:
            j = self._rng.randrange(self.count)
            if j < self.limit:
                self.sample[j] = size
        self.upsampled += int(p.upsampled)

    def to_dict(self) -> dict[str, Any]:
        if not self.count:
            return {"mean_rgb": [0.0, 0.0, 0.0], "sizes": {}, "upsampled": 0}
        by_area = sorted(self.sample, key=lambda s: (s[0] * s[1], s))
        return {
            "mean_rgb": [round(v / self.count, 2) for v in self.mean_sum],
            "sizes": {"min": list(self.smallest or ()), "max": list(self.largest or ()),
                      "median": list(by_area[len(by_area) // 2])},
            "upsampled": self.upsampled,
        }


def make(name: str, source: str, options: Options, *, scanned: int, ignored: int,
         shards: dict[str, list[str]], counts: dict[str, int], skipped: list[dict[str, str]],
         duplicates: list[dict[str, str]], stats: Stats) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": name,
        "created": time.time(),
        "source": source,
        "options": options.to_dict(),
        "counts": {"scanned": scanned, "train": counts.get("train", 0),
                   "validation": counts.get("validation", 0), "skipped": len(skipped),
                   "duplicates": len(duplicates), "ignored": ignored},
        "shards": shards,
        "skipped": sorted(skipped, key=lambda s: s["path"]),
        "duplicates": duplicates,
        "stats": stats.to_dict(),
    }


def read(folder: Path) -> dict[str, Any]:
    """The manifest of a dataset folder; raises FileNotFoundError if the folder is incomplete."""
    data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown dataset format {data.get('format')!r}")
    return dict(data)
