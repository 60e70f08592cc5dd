"""manifest.json of a dataset folder (docs/contracts.md): what is in it and what was left out.

The manifest is written last and atomically; a folder without one is incomplete and no
reader may use it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.datasets.images import Options, Processed

FORMAT = "genml.dataset/1"
MANIFEST = "manifest.json"
CONTACT_SHEET = "contact_sheet.png"


def split_of(sha256: str) -> str:
    """validation iff int(sha256[:8], 16) % 10 == 0: depends on the content alone, so adding
    images never moves existing ones between splits."""
    return "validation" if int(sha256[:8], 16) % 10 == 0 else "train"


@dataclass
class Stats:
    """Running statistics; only the source sizes are kept per image (two ints each)."""

    mean_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    count: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    upsampled: int = 0

    def add(self, p: Processed) -> None:
        self.count += 1
        for i in range(3):
            self.mean_sum[i] += p.mean_rgb[i]
        self.sizes.append(p.source_size)
        self.upsampled += int(p.upsampled)

    def to_dict(self) -> dict[str, Any]:
        if not self.sizes:
            return {"mean_rgb": [0.0, 0.0, 0.0], "sizes": {}, "upsampled": 0}
        by_area = sorted(self.sizes, key=lambda s: (s[0] * s[1], s))
        return {
            "mean_rgb": [round(v / self.count, 2) for v in self.mean_sum],
            "sizes": {"min": list(by_area[0]), "max": list(by_area[-1]),
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
    return data
