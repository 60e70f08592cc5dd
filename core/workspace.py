"""Where genml keeps things on this machine.

The workspace holds datasets, job dirs, models and the registry. It defaults to the
user's XDG data dir (platformdirs) so it survives reinstalls; GENML_HOME overrides it,
which is what tests and people with a bigger disk use.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "genml"


def default_home() -> Path:
    env = os.environ.get("GENML_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_path() -> Path:
    """The TOML config file: GENML_CONFIG, else the XDG config dir."""
    env = os.environ.get("GENML_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Workspace:
    """The folder layout of one local workspace; creating it is idempotent."""

    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> "Workspace":
        ws = cls(Path(root).expanduser().resolve() if root else default_home())
        ws.ensure()
        return ws

    def ensure(self) -> None:
        """Create the folders, private to this user (0700).

        The workspace holds people's photos and models, so a new one is not readable by
        other users whatever the umask says. An existing root keeps its mode (someone may
        have opened it up on purpose); `genml doctor` reports one that others can read.
        """
        for d in (self.root, self.datasets_dir, self.jobs_dir, self.tmp_dir):
            if not d.is_dir():
                d.parent.mkdir(parents=True, exist_ok=True)
                try:
                    d.mkdir(mode=0o700)
                except FileExistsError:
                    pass
                else:
                    os.chmod(d, 0o700)          # mkdir's mode is filtered by the umask; 0700 is the point

    def open_to_others(self) -> bool:
        """True if users other than the owner can list or enter the workspace root."""
        return bool(self.root.stat().st_mode & 0o077)

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / name

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id
