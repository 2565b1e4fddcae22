"""A tiny progress reporter for long sweeps (no dependency): a bar on a terminal, lines otherwise.

On a TTY one line is redrawn in place (``\\r``)::

    [sweep] ########------------  12/39 runs  31%  eta 0:42

Elsewhere (logs, CI) a plain line is printed at most every ``interval`` seconds, plus the last::

    [sweep] 12/39 runs, 31%, eta 0:42

The bar and percentage count runs; the ETA is measured in *work units* (e.g. width x steps of
each run, passed to ``update``) so it is not fooled by runs of different sizes: it extrapolates
the rate of the work done since the reporter started (runs skipped on resume do not count).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_eta"]

#: Seconds between plain (non-TTY) lines.
LINE_INTERVAL_S = 10.0
#: Characters of the TTY bar.
BAR_WIDTH = 24


def format_eta(seconds: float | None) -> str:
    """``h:mm:ss`` / ``m:ss``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Report ``done/total`` runs with a percentage and an ETA on ``stream`` (stderr).

    Args:
        total: number of runs.
        work: total work units (defaults to ``total``); ``update`` passes the units done.
        label: prefix shown in brackets.
        stream: where to write (default ``sys.stderr``).
        tty: force bar (True) or line (False) mode; None asks ``stream.isatty()``.
        interval: seconds between plain lines.
        clock: monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        total: int,
        *,
        work: float | None = None,
        label: str = "sweep",
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = int(total)
        self.work = float(work if work is not None else total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self.interval = interval
        self.clock = clock
        self._start = clock()
        self._last_line: float | None = None  # clock time of the last plain line
        self._printed = ""
        self._done, self._work_done, self._width = 0, 0.0, 0

    def eta(self) -> float | None:
        """Seconds left, from the work rate so far; None before any work is done."""
        if self._work_done <= 0:
            return None
        elapsed = self.clock() - self._start
        return elapsed * (self.work - self._work_done) / self._work_done

    def text(self) -> str:
        frac = self._done / self.total if self.total > 0 else 1.0
        pct = int(100 * min(max(frac, 0.0), 1.0))
        eta = format_eta(self.eta())
        if self.tty:
            filled = int(BAR_WIDTH * min(max(frac, 0.0), 1.0))
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            return f"[{self.label}] {bar} {self._done}/{self.total} runs {pct:3d}%  eta {eta}"
        return f"[{self.label}] {self._done}/{self.total} runs, {pct}%, eta {eta}"

    def update(self, done: int, work_done: float | None = None, *, force: bool = False) -> None:
        """Record ``done`` runs (and ``work_done`` units) finished; redraw or print if due."""
        self._done = int(done)
        self._work_done = float(work_done if work_done is not None else done)
        now = self.clock()
        if self.tty:
            line = self.text()
            pad = " " * max(0, self._width - len(line))
            self.stream.write("\r" + line + pad)
            self._width = len(line)
        elif force or self._last_line is None or now - self._last_line >= self.interval:
            self._printed = self.text()
            self.stream.write(self._printed + "\n")
            self._last_line = now
        self.stream.flush()

    def close(self) -> None:
        """Final state: ends the bar's line, or prints the last plain line."""
        if self.tty:
            if self._width:
                self.stream.write("\n")
                self._width = 0
        elif self.text() != self._printed:
            self.stream.write(self.text() + "\n")
        self.stream.flush()
