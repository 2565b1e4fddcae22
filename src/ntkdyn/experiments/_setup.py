"""What a sweep checks and records before it trains: the out dir, the devices, provenance.

Used by :func:`ntkdyn.experiments.sweep.run_sweep` (docs/design.md, "Reliability rules").
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_out_dir", "environment", "now", "resolve_device"]


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """The out dir must be a writable directory, or creatable under a writable directory."""
    path = Path(out_dir).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"`--out` {str(path)!r} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"`--out` {str(path)!r} is not writable")
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(
            f"`--out` {str(path)!r} cannot be created: {str(parent)!r} is not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"`--out` {str(path)!r} cannot be created: {str(parent)!r} is not writable"
        )
    return path


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` must be available."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "`device` 'cuda' is requested but CUDA is not available here; use 'auto' or 'cpu'"
        )
    return requested


def environment(devices: dict[str, str]) -> dict[str, Any]:
    """Provenance stored in the meta: versions, platform, devices and the source revision.

    ``git_commit`` is ``HEAD`` of the checkout holding the ntkdyn package and ``git_dirty``
    whether the package tree has uncommitted (or untracked) changes; both are None when git is
    missing, fails, or the package is not tracked by a checkout (an installed wheel). Never
    raises: provenance must not fail a sweep.
    """
    import subprocess

    import torch

    from .._version import __version__

    package = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = dirty = None
    if git("ls-files", "--", "__init__.py"):  # the package itself is tracked here
        commit = git("rev-parse", "HEAD") or None
        status = git("status", "--porcelain", "--", ".") if commit else None
        dirty = None if status is None else bool(status)
    env = {
        "ntkdyn": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "devices": devices,
    }
    if "cuda" in devices.values():
        env["cuda_device"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


def now() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
