"""The ``ntkdyn`` command: a thin shell over the library.

Every bad input becomes one line on stderr and exit code 2; success exits 0; output cut short
by a closed pipe (``ntkdyn ... | head -1``) exits 141 after the work is done and stored, never 0
(the command's own output is then incomplete). The parser and
its checkers live in :mod:`.parser`; each command group in its own module
(:mod:`.theory_commands`: kernel, predict, rates; :mod:`._advise_command`: advise;
:mod:`.experiment_commands`: reproduce,
sweep, report, export). Each command parses, calls one library function and prints.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from ._errors import UsageError
from .parser import build_parser

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "UsageError",
    "build_parser",
    "main",
]

EXIT_BAD_INPUT = 2
#: Work that was asked for did not all finish (batches failed on Dask workers).
EXIT_FAILED = 1
#: How torch's CPU and CUDA allocators say they ran out of memory.
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory", re.I)
#: 128 + SIGPIPE, what a shell reports for a program killed by a closed pipe.
EXIT_BROKEN_PIPE = 141


class _PipeGuard:
    """A text stream that survives its reader going away: after the first broken pipe it
    discards output (so progress goes quiet and the work goes on) and remembers it."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._break()

    def _break(self) -> None:
        self.broken = True
        try:  # the interpreter flushes the stream again at exit: point it at /dev/null
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a real file (a test's capture): nothing to flush
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _failed_batches(exc: BaseException) -> bool:
    """Batches failed on workers (the others are stored): the library was loaded by then."""
    backends = sys.modules.get("ntkdyn.experiments._backends")
    return backends is not None and isinstance(exc, backends.BatchError)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # a user of the command needs the message, not the library line that raised it
    print(f"ntkdyn: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ntkdyn`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    out, err = _PipeGuard(sys.stdout), _PipeGuard(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        code = _run(argv)
    except SystemExit as exc:  # argparse's --help / --version / usage errors
        if out.broken and exc.code in (0, None):
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        raise
    finally:
        sys.stdout, sys.stderr = out._stream, err._stream
    return EXIT_BROKEN_PIPE if out.broken and code == 0 else code


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return args.func(args)
    except (UsageError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ntkdyn: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ntkdyn: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        if _failed_batches(exc):
            print(f"ntkdyn: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_FAILED
        text = str(exc)
        if not isinstance(exc, MemoryError) and not _OUT_OF_MEMORY.search(text):
            raise  # a bug: keep its traceback
        first = text.splitlines()[0] if text else type(exc).__name__
        print(
            f"ntkdyn: error: out of memory ({first}); what was finished is stored: use "
            "smaller widths or --n, and run again with --resume",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
