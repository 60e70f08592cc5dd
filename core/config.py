"""User configuration: one TOML file under the XDG config dir (GENML_CONFIG overrides).

```toml
backend = "local"            # or the name of a profile below
[local]
max_concurrent_jobs = 1
[profiles.cloud]
backend = "vertex"
project = "my-project"
region = "us-central1"
bucket = "my-bucket"
```

Read with the standard library's tomllib; written by a tiny emitter because the file
only ever holds flat tables of strings, numbers and booleans.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import atomic
from core.errors import InvalidInput
from core.workspace import config_path


def default_max_jobs() -> int:
    """One training job per two cores: TensorFlow uses every core it is given."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass
class Config:
    backend: str = "local"
    max_concurrent_jobs: int = field(default_factory=default_max_jobs)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    def profile(self, name: str | None = None) -> dict[str, Any]:
        """The settings of a backend by profile name; 'local' and 'vertex' always exist."""
        name = name or self.backend
        if name in self.profiles:
            prof = dict(self.profiles[name])
            prof.setdefault("backend", name if name in ("local", "vertex") else "local")
            prof["name"] = name
            return prof
        if name in ("local", "vertex"):
            return {"backend": name, "name": name}
        raise InvalidInput(f"No backend or profile named {name!r}.",
                           f"Use 'local', 'vertex', or add [profiles.{name}] to {self.path or config_path()}.")


def load(path: Path | None = None) -> Config:
    path = path or config_path()
    if not path.exists():
        return Config(path=path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The config file {path} is not valid TOML: {exc}.",
                           "Fix the line it names, or move the file away to start from the defaults.") from exc
    cfg = Config(path=path)
    cfg.backend = str(data.get("backend", cfg.backend))
    local = data.get("local", {})
    if "max_concurrent_jobs" in local:
        n = local["max_concurrent_jobs"]
        if not isinstance(n, int) or n < 1:
            raise InvalidInput(f"[local] max_concurrent_jobs in {path} must be a whole number of at least 1, "
                               f"not {n!r}.",
                               "Set it to 1 on a small machine.")
        cfg.max_concurrent_jobs = n
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise InvalidInput(f"'profiles' in {path} must be a table of tables.",
                           "See the README's configuration section.")
    cfg.profiles = {str(k): dict(v) for k, v in profiles.items()}
    return cfg


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def save(cfg: Config, path: Path | None = None) -> Path:
    path = path or cfg.path or config_path()
    lines = [f"backend = {_value(cfg.backend)}", "", "[local]",
             f"max_concurrent_jobs = {cfg.max_concurrent_jobs}"]
    for name, prof in cfg.profiles.items():
        lines += ["", f"[profiles.{name}]"]
        lines += [f"{k} = {_value(v)}" for k, v in prof.items() if k != "name" and v is not None]
    atomic.write_text(path, "\n".join(lines) + "\n")
    return path
