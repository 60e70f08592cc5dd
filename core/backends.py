"""Choose a backend by name or profile. Imports the cloud code only when asked for."""
from __future__ import annotations

from core import config as config_mod
from core.backend import Backend
from core.workspace import Workspace


def open_backend(name: str | None = None, workspace: Workspace | None = None,
                 cfg: config_mod.Config | None = None) -> Backend:
    cfg = cfg or config_mod.load()
    ws = workspace or Workspace.open()
    profile = cfg.profile(name)
    if profile["backend"] == "vertex":
        from core.vertex.backend import VertexBackend
        return VertexBackend(profile, ws, cfg)
    from core.local.backend import LocalBackend
    return LocalBackend(ws, cfg)
