"""Progress of a long sweep, at step level (no dependency): a bar on a terminal, a tqdm bar in
Jupyter when tqdm is installed (tqdm's ``auto`` mode, the notebook convention), plain lines in
logs.

On a TTY one line is redrawn in place (``\\r``), at most every :data:`REDRAW_S` seconds::

    [sweep] ########------------  12/39 runs  31%  batch 5/8 step 600/1000  eta 0:42

Elsewhere (logs, CI) a plain line is printed at most every ``interval`` seconds, plus the last::

    [sweep] 12/39 runs, 31%, batch 5/8 step 600/1000, eta 0:42

Runs count finished (stored) runs. The percentage and the ETA are measured in *work units*
(the sweep passes width x steps x n x (d + 1) of each run, about its flops) so that runs of
different sizes do not fool them; a batch in training counts for the fraction of its steps done (:meth:`Progress.step`), so the bar moves
inside long batches instead of sitting at 0% until the first one is stored. The ETA
extrapolates the rate of the work done since the reporter started (runs skipped on resume do
not count).

Only the thread that owns the reporter writes: a Dask client's event handler records steps
with ``step(..., draw=False)`` and the sweep's loop calls :meth:`Progress.tick`. No lock: a
``with lock`` interrupted by Ctrl-C between acquiring and entering can leave the lock held
(a known CPython race), and the interrupted sweep must still end cleanly with exit code 130.
"""

from __future__ import annotations

import importlib
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Progress", "format_eta"]

#: Seconds between plain (non-TTY) lines.
LINE_INTERVAL_S = 10.0
#: Seconds between redraws of the TTY bar on step updates (batch updates always redraw).
REDRAW_S = 0.1
#: Characters of the TTY bar.
BAR_WIDTH = 24
#: Resolution of the notebook bar (it shows the work fraction in per mille).
_NOTEBOOK_TOTAL = 1000


def format_eta(seconds: float | None) -> str:
    """``h:mm:ss`` / ``m:ss``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _notebook_bar(label: str) -> Any | None:
    """A ``tqdm.auto`` bar when running under a Jupyter kernel and tqdm is installed."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return None
    return tqdm(total=_NOTEBOOK_TOTAL, desc=label, bar_format="{desc} {bar} {postfix}")


class Progress:
    """Report ``done/total`` runs, the work fraction, the batch in training and an ETA.

    Args:
        total: number of runs.
        work: total work units (defaults to ``total``); ``update`` passes the units done.
        batches: engine batches to train (0: no batch detail).
        label: prefix shown in brackets.
        stream: where to write (default ``sys.stderr``).
        tty: force bar (True) or line (False) mode; None asks ``stream.isatty()`` (and uses a
            notebook bar under Jupyter when tqdm is installed).
        interval: seconds between plain lines (default :data:`LINE_INTERVAL_S`).
        clock: monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        total: int,
        *,
        work: float | None = None,
        batches: int = 0,
        label: str = "sweep",
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = int(total)
        self.work = float(work if work is not None else total)
        self.batches = int(batches)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self._notebook = _notebook_bar(label) if tty is None and not self.tty else None
        self.interval = LINE_INTERVAL_S if interval is None else interval
        self.clock = clock
        self._start = clock()
        self._last_line: float | None = None  # clock time of the last plain line
        self._last_draw = -math.inf
        self._printed = ""
        self._done, self._work_done, self._width = 0, 0.0, 0
        self._batches_done = 0
        # batch -> (step, steps, work); written by one thread, read as snapshots
        self._running: dict[int, tuple[int, int, float]] = {}

    # ----------------------------------------------------------------------------------------
    # What is shown.

    def _partial(self) -> float:
        running = list(self._running.values())  # a snapshot: another thread may add to it
        return sum(work * step / steps for step, steps, work in running if steps)

    def eta(self) -> float | None:
        """Seconds left, from the work rate so far; None before any work is done."""
        done = self._work_done + self._partial()
        if done <= 0:
            return None
        elapsed = self.clock() - self._start
        return elapsed * max(self.work - done, 0.0) / done

    def _fraction(self) -> float:
        if self.work <= 0:
            return 1.0
        return min(max((self._work_done + self._partial()) / self.work, 0.0), 1.0)

    def _detail(self) -> str:
        """``batch 5/8 step 600/1000`` for the most advanced batch in training."""
        running = list(self._running.items())
        if not running:
            return ""
        batch, (step, steps, _) = max(running, key=lambda kv: kv[1][0] / kv[1][1])
        more = f" (+{len(running) - 1} running)" if len(running) > 1 else ""
        of = f"/{self.batches}" if self.batches else ""
        return f"batch {batch + 1}{of} step {step}/{steps}{more}"

    def text(self) -> str:
        """The current line (without ``\\r``)."""
        frac = self._fraction() if self.work > 0 else (self._done / max(self.total, 1))
        pct = int(100 * frac)
        eta = format_eta(self.eta())
        detail = self._detail()
        if self.tty:
            filled = int(BAR_WIDTH * frac)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            extra = f"  {detail}" if detail else ""
            return (
                f"[{self.label}] {bar} {self._done}/{self.total} runs {pct:3d}%{extra}  eta {eta}"
            )
        extra = f", {detail}" if detail else ""
        return f"[{self.label}] {self._done}/{self.total} runs, {pct}%{extra}, eta {eta}"

    # ----------------------------------------------------------------------------------------
    # Updates.

    def update(
        self,
        done: int,
        work_done: float | None = None,
        *,
        batch: int | None = None,
        force: bool = False,
    ) -> None:
        """Record ``done`` runs (and ``work_done`` units) finished, ``batch`` (its index) among
        them; redraw or print if due."""
        self._done = int(done)
        self._work_done = float(work_done if work_done is not None else done)
        if batch is not None:
            self._running.pop(batch, None)
        self._show(force=force, redraw=True)

    def step(self, batch: int, step: int, steps: int, work: float, *, draw: bool = True) -> None:
        """Batch ``batch`` (index among the batches to train, ``work`` units) is at ``step`` of
        ``steps``; redraw when due (``draw=False``: only record it, from another thread)."""
        self._running[batch] = (int(step), max(int(steps), 1), float(work))
        if draw:
            self._show(force=False, redraw=False)

    def tick(self) -> None:
        """Redraw when due (the owner's loop, after steps recorded with ``draw=False``)."""
        self._show(force=False, redraw=False)

    def _show(self, *, force: bool, redraw: bool) -> None:
        now = self.clock()
        if self._notebook is not None:
            self._notebook.n = int(_NOTEBOOK_TOTAL * self._fraction())
            self._notebook.set_postfix_str(
                f"{self._done}/{self.total} runs {self._detail()} eta {format_eta(self.eta())}"
            )
            return
        if self.tty:
            if not (redraw or force) and now - self._last_draw < REDRAW_S:
                return
            line = self.text()
            pad = " " * max(0, self._width - len(line))
            self.stream.write("\r" + line + pad)
            self._width = len(line)
            self._last_draw = now
        elif force or self._last_line is None or now - self._last_line >= self.interval:
            self._printed = self.text()
            self.stream.write(self._printed + "\n")
            self._last_line = now
        self.stream.flush()

    def close(self) -> None:
        """Final state: ends the bar's line, or prints the last plain line."""
        self._running.clear()
        if self._notebook is not None:
            self._notebook.n = int(_NOTEBOOK_TOTAL * self._fraction())
            self._notebook.close()
            return
        if self.tty:
            if self._width:
                self.stream.write("\n")
                self._width = 0
        elif self.text() != self._printed:
            self.stream.write(self.text() + "\n")
        self.stream.flush()
