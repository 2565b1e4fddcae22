"""From per-run judgments to one verdict: seeds by their distribution, widths as a limit.

Seeds are summarised per width by the median of ``|deviation|`` and its range (never one
run). Two aggregates (docs/verdicts.md §3, §4):

* :func:`width_limit` (a kernel claim as a limit in width): refuted when a run at the widest
  width is decisively wrong (unstable kernel model, divergence, the other kind of
  convergence); otherwise inconclusive when the design is too small (widths, decades,
  seeds); refuted when the widest median exceeds ``tol`` or the deviation does not shrink
  (slope >= 0); inconclusive when the slope is negative but outside ``band``; else supported.
* :func:`at_one_width` (point tests, power laws): the widest width's median within ``tol``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .judge import RunJudgment
from .tolerances import MIN_DECADES, MIN_SEEDS, MIN_WIDTHS

__all__ = ["Aggregate", "WidthRow", "at_one_width", "combine", "width_limit"]


@dataclass(frozen=True)
class WidthRow:
    """The seeds of one width: how many, and the median and range of ``|deviation|``."""

    width: int
    n: int
    median: float | None
    low: float | None
    high: float | None
    decisive: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "width": self.width,
            "n": self.n,
            "median": self.median,
            "low": self.low,
            "high": self.high,
        }


@dataclass(frozen=True)
class Aggregate:
    """A verdict with its one-line reason, per-width rows and (for limits) the slope."""

    verdict: str
    reason: str
    rows: tuple[WidthRow, ...]
    slope: float | None = None


def combine(verdicts: Iterable[str]) -> str:
    """Several claim parts: any refuted -> refuted; else any inconclusive (or none) ->
    inconclusive; else supported."""
    verdicts = list(verdicts)
    if not verdicts:
        return "inconclusive"
    for v in ("refuted", "inconclusive"):
        if v in verdicts:
            return v
    return "supported"


def _rows(judged: list[tuple[int, RunJudgment]]) -> tuple[WidthRow, ...]:
    by_width: dict[int, list[RunJudgment]] = defaultdict(list)
    for width, j in judged:
        by_width[int(width)].append(j)
    rows = []
    for width in sorted(by_width):
        js = by_width[width]
        devs = [abs(j.deviation) for j in js if j.deviation is not None]
        notes = tuple(j.note for j in js if j.verdict in ("refuted", "inconclusive") and j.note)
        if devs:
            rows.append(
                WidthRow(width, len(js), float(np.median(devs)), min(devs), max(devs), notes)
            )
        else:
            rows.append(WidthRow(width, len(js), None, None, None, notes))
    return tuple(rows)


def _widest_problem(judged, widest: int) -> tuple[str, str] | None:
    """Decisive per-run verdicts at the widest width: refuted when most seeds are refuted
    (seeds by their distribution, never one run), inconclusive when any is undecided."""
    at = [j for w, j in judged if w == widest]
    bad = [j for j in at if j.verdict in ("refuted", "inconclusive")]
    if not bad:
        return None
    refuted = [j for j in at if j.verdict == "refuted"]
    verdict = "refuted" if 2 * len(refuted) > len(at) else "inconclusive"
    first = (refuted or bad)[0]
    return verdict, f"{len(bad)} of {len(at)} seeds at m = {widest}: {first.note}"


def _slope(rows: tuple[WidthRow, ...]) -> float | None:
    pts = [(r.width, r.median) for r in rows if r.median is not None and r.median > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def _start(
    judged: list[tuple[int, RunJudgment]], *, with_slope: bool
) -> Aggregate | tuple[tuple[WidthRow, ...], WidthRow, tuple[str, str] | None]:
    """The rows by width, the widest one and its seeds' problem; or the verdict that needs no
    more (no runs, or most seeds at the widest width refuted)."""
    rows = _rows(judged)
    if not rows:
        return Aggregate("inconclusive", "no runs", rows)
    widest = rows[-1]
    problem = _widest_problem(judged, widest.width)
    if problem is not None and problem[0] == "refuted":
        return Aggregate("refuted", problem[1], rows, _slope(rows) if with_slope else None)
    return rows, widest, problem


def width_limit(
    judged: list[tuple[int, RunJudgment]], *, tol: float, band: tuple[float, float]
) -> Aggregate:
    """The width-limit verdict of per-run ``(width, judgment)`` pairs (module docstring)."""
    start = _start(judged, with_slope=True)
    if isinstance(start, Aggregate):
        return start
    rows, widest, problem = start
    decades = math.log10(widest.width / rows[0].width)
    seeds = min(r.n for r in rows)
    slope = _slope(rows)
    if not (len(rows) >= MIN_WIDTHS and decades >= MIN_DECADES - 1e-9 and seeds >= MIN_SEEDS):
        return Aggregate(
            "inconclusive",
            f"{len(rows)} widths over {decades:.2f} decades with "
            f">= {seeds} seeds; a width limit needs >= {MIN_WIDTHS} widths over >= "
            f"{MIN_DECADES:g} decades with >= {MIN_SEEDS} seeds each",
            rows,
            slope,
        )
    med = widest.median
    if med is not None and med > tol:
        return Aggregate(
            "refuted",
            f"median deviation {med:.1%} at the widest width m = {widest.width} exceeds {tol:.0%}",
            rows,
            slope,
        )
    if problem is not None:
        return Aggregate("inconclusive", problem[1], rows, slope)
    if slope is not None and slope >= 0:
        return Aggregate(
            "refuted", f"the deviation does not shrink with width (slope {slope:+.2f})", rows, slope
        )
    if slope is None or not band[0] <= slope <= band[1]:
        shown = "n/a" if slope is None else f"{slope:+.2f}"
        return Aggregate(
            "inconclusive",
            f"slope {shown} outside [{band[0]:g}, {band[1]:g}]: "
            "the deviation does not shrink like first-order kernel drift",
            rows,
            slope,
        )
    return Aggregate(
        "supported",
        f"median deviation {med:.1%} at m = {widest.width} <= "
        f"{tol:.0%}, shrinking with slope {slope:+.2f} in [{band[0]:g}, "
        f"{band[1]:g}]",
        rows,
        slope,
    )


def at_one_width(judged: list[tuple[int, RunJudgment]], *, tol: float) -> Aggregate:
    """The widest width's seeds: supported when their median ``|deviation|`` is within ``tol``
    and none is decisively wrong; refuted when one is, or the median exceeds ``tol``."""
    start = _start(judged, with_slope=False)
    if isinstance(start, Aggregate):
        return start
    rows, widest, problem = start
    med = widest.median
    if widest.n < MIN_SEEDS:
        return Aggregate(
            "inconclusive",
            f"{widest.n} seed(s) at m = {widest.width}; a verdict needs >= {MIN_SEEDS}",
            rows,
        )
    if med is not None and med > tol:
        return Aggregate(
            "refuted", f"median deviation {med:.1%} at m = {widest.width} exceeds {tol:.0%}", rows
        )
    if problem is not None:
        return Aggregate("inconclusive", problem[1], rows)
    if med is None:
        return Aggregate("inconclusive", "no deviation could be measured", rows)
    return Aggregate(
        "supported",
        f"median deviation {med:.1%} at m = {widest.width} <= {tol:.0%} ({widest.n} seeds)",
        rows,
    )
