"""One writer per results directory: an advisory lock held for the whole sweep.

The lock is ``fcntl.flock`` on ``DIR/.ntkdyn-lock``: the OS releases it when the process ends,
however it ends, so a killed sweep never leaves a stale lock. The file keeps the holder's pid
and start time for the message a second sweep gets. Platforms without ``fcntl`` (Windows) run
unlocked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "out_dir_lock"]

LOCK_NAME = ".ntkdyn-lock"


@contextmanager
def out_dir_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock, or raise ValueError naming ``--out`` and the holder."""
    if fcntl is None:
        yield
        return
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise ValueError(
                f"`--out` {str(out)!r} is in use by another sweep ({holder}); wait for it to "
                "finish or use another --out directory"
            ) from None
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
