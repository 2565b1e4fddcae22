"""Shared evidence helpers of the claims and their figures: the kernel's drift, rate bands,
width-error tables, power-law slopes and the wording of evidence strings.

The claims (:mod:`.claims`) and the figures drawn for them (:mod:`.plots_theory`) use these
same functions, so a figure always shows the band or slope its claim was judged on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..rates import predicted_rate
from .summary import RunAnalysis

__all__ = [
    "PowerLaw",
    "RateBand",
    "combine",
    "drift_factors",
    "fmt_number",
    "lambda_min_path",
    "power_law_fit",
    "rate_band",
    "run_name",
    "width_errors",
]


# --------------------------------------------------------------------------------------------
# Evidence wording.


def fmt_number(x, digits: int = 3) -> str:
    """Short number for evidence strings (``n/a`` for None)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a" if x is None else repr(float(x))
    return f"{x:.{digits}g}"


def run_name(a: RunAnalysis) -> str:
    """``label (m=width, seed s)`` of a run for evidence strings."""
    return f"{a.label} (m={a.width}, seed {a.seed})"


def combine(verdicts: list[str]) -> str:
    """One verdict from several: any refuted -> refuted, else any inconclusive (or none at
    all) -> inconclusive, else supported."""
    if not verdicts:
        return "inconclusive"
    if "refuted" in verdicts:
        return "refuted"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "supported"


# --------------------------------------------------------------------------------------------
# Kernel drift from the diagnostics.


def lambda_min_path(a: RunAnalysis, lo: float, hi: float) -> np.ndarray | None:
    """lambda_min(H(t)) at the diagnostics checkpoints with lo <= step <= hi (None if absent)."""
    d = a.record.diagnostics
    if not d or "step" not in d or "lambda_min" not in d:
        return None
    steps, lam = np.asarray(d["step"], float), np.asarray(d["lambda_min"], float)
    sel = (steps >= lo) & (steps <= hi) & np.isfinite(lam)
    return lam[sel] if sel.any() else None


def _relative_drift(a: RunAnalysis, path: np.ndarray) -> float:
    """``max |lambda_min(H(t)) / lambda_min(H(0)) - 1|`` over the path (0 without a positive
    lambda_min(H(0)))."""
    lam0 = float(np.asarray(a.record.diagnostics["lambda_min"], float)[0])
    return float(np.max(np.abs(path / lam0 - 1.0))) if lam0 > 0 else 0.0


def drift_factors(a: RunAnalysis, lo: float, hi: float) -> tuple[list[float], float]:
    """Ratios ``log q(lambda) / log q(lambda_min(K(0)))`` of the predicted per-step rate over
    the range of ``c lambda_min(H(t))`` seen in the fit window, and that range's relative size.

    The rule's own mode matrices give ``log q`` (MATH.md 3), so the sensitivity is exact for
    every rule: ~1 for GD (rate proportional to h0), square-root-like near HB's critical
    damping, ~0 for complex roots.
    """
    path = lambda_min_path(a, lo, hi)
    p = a.predicted
    if path is None or p is None or not p.rate_per_step or a.record.lambda_max_k is None:
        return [1.0], 0.0
    c = a.c
    factors = [1.0]
    for lam in (float(path.min()), float(path.max())):
        if lam > 0:
            q = predicted_rate(a.rule, [c * lam, a.record.lambda_max_k]).rate_per_step
            factors.append(q / p.rate_per_step)
    return factors, _relative_drift(a, path)


@dataclass(frozen=True)
class RateBand:
    """The per-step rates ``ref * log q(lambda) / log q(lambda_min(K(0)))`` spanned by the
    kernel's drift in a fit window (:func:`drift_factors`): ``low <= high`` (rates are
    negative, so ``low`` is the fastest), and the relative drift of lambda_min(H(t))."""

    low: float
    high: float
    drift: float


def rate_band(a: RunAnalysis, ref: float, lo: float, hi: float) -> RateBand:
    """The band of per-step rates around the reference rate ``ref`` (e.g. the same fit on the
    exact kernel prediction with ``H(0)``, MATH.md 3, 5) over the steps ``lo..hi``."""
    factors, drift = drift_factors(a, lo, hi)
    band = sorted(ref * x for x in factors)
    return RateBand(band[0], band[-1], drift)


# --------------------------------------------------------------------------------------------
# Error vs width (MATH.md 6).


@dataclass(frozen=True)
class PowerLaw:
    """Least-squares line ``log y = slope log x + intercept``."""

    slope: float
    intercept: float


def power_law_fit(x, y) -> PowerLaw:
    """Fit ``y ~ exp(intercept) x^slope`` by least squares in log-log coordinates."""
    slope, intercept = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)
    return PowerLaw(float(slope), float(intercept))


def width_errors(runs: list[RunAnalysis], attr: str = "abs_err") -> dict[str, dict[int, float]]:
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
