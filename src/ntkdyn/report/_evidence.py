"""Shared evidence helpers of the claims and their figures: width-error tables, power-law
slopes and the wording of evidence strings.

The claims (:mod:`.claims`) and the figures drawn for them (:mod:`.plots_theory`) use these
same functions, so a figure always shows the slope its claim was judged on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .summary import RunAnalysis

__all__ = ["PowerLaw", "fmt_number", "power_law_fit", "run_name", "width_errors"]


# --------------------------------------------------------------------------------------------
# Evidence wording.


def fmt_number(x: float | None, digits: int = 3) -> str:
    """Short number for evidence strings (``n/a`` for None)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a" if x is None else repr(float(x))
    return f"{x:.{digits}g}"


def run_name(a: RunAnalysis) -> str:
    """``label (m=width, seed s)`` of a run for evidence strings."""
    return f"{a.label} (m={a.width}, seed {a.seed})"


# --------------------------------------------------------------------------------------------
# Error vs width (docs/mathematics.md §6).


@dataclass(frozen=True)
class PowerLaw:
    """Least-squares line ``log y = slope log x + intercept``."""

    slope: float
    intercept: float


def power_law_fit(x: ArrayLike, y: ArrayLike) -> PowerLaw:
    """Fit ``y ~ exp(intercept) x^slope`` by least squares in log-log coordinates."""
    slope, intercept = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)
    return PowerLaw(float(slope), float(intercept))


def width_errors(runs: Sequence[RunAnalysis], attr: str = "abs_err") -> dict[str, dict[int, float]]:
    """Rule spec -> {width: median over seeds of the error ``attr``} (finite values only)."""
    table: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in runs:
        v = getattr(a, attr)
        if v is not None and math.isfinite(v) and v > 0:
            table[a.rule.spec][a.width].append(v)
    return {
        spec: {m: float(np.median(v)) for m, v in sorted(ws.items())}
        for spec, ws in sorted(table.items())
    }
