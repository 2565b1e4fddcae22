"""The one error type of the ``ntkdyn`` command (its own module: the parser and the command
modules both raise it, and the parser imports the command modules)."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """Bad command-line input (reported as one line, exit 2)."""
