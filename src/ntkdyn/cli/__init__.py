"""The ``ntkdyn`` command: a thin shell over the library.

Every bad input becomes one line on stderr and exit code 2; success exits 0. The parser and
its checkers live in :mod:`.parser`; each command group in its own module
(:mod:`.theory_commands`: kernel, predict, rates; :mod:`.experiment_commands`: reproduce,
sweep, report, export). Each command parses, calls one library function and prints.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from ._errors import UsageError
from .parser import build_parser

__all__ = ["EXIT_BAD_INPUT", "UsageError", "build_parser", "main"]

EXIT_BAD_INPUT = 2


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # a user of the command needs the message, not the library line that raised it
    print(f"ntkdyn: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ntkdyn`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return args.func(args)
    except BrokenPipeError:  # e.g. `ntkdyn kernel --json | head`
        sys.stderr.close()
        return 0
    except (UsageError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ntkdyn: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ntkdyn: interrupted", file=sys.stderr)
        return 130
