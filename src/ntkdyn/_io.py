"""Atomic file writes: the one way ntkdyn writes a file that a reader may see.

A temporary file in the same folder (``.NAME.PID.tmp``) is written and then renamed over the
target, so a crash or a kill never leaves a half-written file behind (docs/design.md,
"Reliability rules"); the temporary file is removed whatever happens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, line endings as given; return the path."""
    with atomic_path(path) as tmp, tmp.open("w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)
