"""Claim C8: deep networks follow their kernel predictions (docs/verdicts.md §9).

A run of kind ``theory-depth`` trains ``models.DeepReLU`` with ``depth`` hidden layers; its
stored predictions are the exact discrete curves on its empirical NTK at initialisation
``H(0)`` and on the analytic deep NTK (``kernels.deep_relu_ntk``). The measured quantity is
``rel`` of docs/mathematics.md §6: ``max_k |L_net - L_pred| / E_pred,k`` down to the step where
the prediction reaches ``1e-2 L_0`` (``report.summary.prediction_error``). Per setting (rule,
depth): the median over seeds at the widest width against the band of
``verdicts.tolerances`` for that depth, and the log-log slope of the medians against the width.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from ..verdicts import WidthRow, combine
from ..verdicts.tolerances import (
    DEPTH_BAND_PER_LAYER,
    DEPTH_FLUCTUATION,
    DEPTH_MAX_SLOPE,
    DEPTH_MIN_DECADES,
    DEPTH_WIDTH,
    MIN_SEEDS,
)
from ._evidence import power_law_fit
from .summary import REL_HORIZON, RunAnalysis

__all__ = ["DEPTH", "c8_claim", "depth_band", "judge_depth_setting", "run_band_error"]

#: The experiment kind of the depth runs (``experiments.presets``).
DEPTH = "theory-depth"

C = TypeVar("C")


def depth_band(depth: int, *, limit: bool = False) -> float:
    """The C8 band for ``depth`` hidden layers: ``DEPTH_BAND_PER_LAYER * L`` against the
    ``H(0)`` prediction; ``limit``: plus ``DEPTH_FLUCTUATION * sqrt(L)`` against the analytic
    deep NTK (docs/verdicts.md §9)."""
    band = DEPTH_BAND_PER_LAYER * depth
    return band + DEPTH_FLUCTUATION * math.sqrt(depth) if limit else band


def run_band_error(a: RunAnalysis, *, limit: bool = False) -> float | None:
    """The run's ``rel`` error against its ``H(0)`` (``limit``: analytic) prediction; ``inf``
    for a diverged network (it left every band); None when the run has no such prediction or
    ends before the prediction reaches ``REL_HORIZON L_0`` (too short to be judged)."""
    pred = a.record.pred_discrete_inf if limit else a.record.pred_discrete
    if pred is None or pred.size == 0 or not pred[0] > 0:
        return None
    if not a.ok:
        return math.inf
    if not np.nanmin(pred) <= REL_HORIZON * pred[0]:
        return None
    err = a.rel_err_inf if limit else a.rel_err
    return None if err is None or not math.isfinite(err) else float(err)


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else math.nan


def judge_depth_setting(
    depth: int,
    errors: dict[int, list[float]],
    errors_inf: dict[int, list[float]] | None = None,
) -> tuple[str, str, float | None]:
    """The verdict of one setting from its per-width errors (``inf``: diverged), in order:
    inconclusive without ``MIN_SEEDS`` judged seeds at the widest width; refuted if the
    median there leaves the band (``H(0)``, then analytic) at a width >= ``DEPTH_WIDTH``;
    inconclusive below that width; refuted if the medians do not fall with width (log-log
    slope > ``DEPTH_MAX_SLOPE``) over >= ``DEPTH_MIN_DECADES`` decades, the ``H(0)`` errors
    and then the analytic ones; inconclusive with a narrower span; supported otherwise. Returns ``(verdict, reason, slope)``."""
    widths = sorted(m for m, v in errors.items() if v)
    if not widths:
        return "inconclusive", "no run reached 1e-2 L0 of its prediction", None
    widest = widths[-1]
    seeds = len(errors[widest])
    if seeds < MIN_SEEDS:
        return "inconclusive", f"{seeds} seeds at m = {widest} (needs {MIN_SEEDS})", None
    band, med = depth_band(depth), _median(errors[widest])
    at = f"median rel error {med:.3g} at m = {widest}"
    if widest >= DEPTH_WIDTH and not med <= band:
        return "refuted", f"{at} outside the band {band:.2g}", None
    inf = (errors_inf or {}).get(widest) or []
    band_inf, med_inf = depth_band(depth, limit=True), _median(inf)
    if inf and widest >= DEPTH_WIDTH and not med_inf <= band_inf:
        return "refuted", f"{at}; against the analytic NTK {med_inf:.3g} > {band_inf:.2g}", None
    limit = f"; analytic NTK {med_inf:.3g} (band {band_inf:.2g})" if inf else ""
    if widest < DEPTH_WIDTH:
        return "inconclusive", f"{at}: narrower than the claim's m = {DEPTH_WIDTH}", None
    decades = math.log10(widest / widths[0])
    if decades < DEPTH_MIN_DECADES - 1e-9:
        reason = f"{at} within the band {band:.2g}{limit}; widths span {decades:.2f} decades"
        return "inconclusive", reason + f" (trend needs {DEPTH_MIN_DECADES})", None
    meds = [_median(errors[m]) for m in widths]
    if not all(math.isfinite(x) and x > 0 for x in meds):
        return "refuted", f"{at}; a narrower width diverged or has no error", None
    slope = power_law_fit(widths, meds).slope
    trend = f"slope {slope:+.2f} in width (at most {DEPTH_MAX_SLOPE})"
    if slope > DEPTH_MAX_SLOPE:
        return "refuted", f"{at}; the error does not shrink with width: {trend}", slope
    # the analytic errors must shrink too (H(0) -> H^inf, the drift vanishes): an error against
    # a wrong kernel tends to a constant, which the band alone cannot tell at one width
    meds_inf = [_median((errors_inf or {}).get(m) or []) for m in widths]
    if inf and all(math.isfinite(x) and x > 0 for x in meds_inf):
        slope_inf = power_law_fit(widths, meds_inf).slope
        if slope_inf > DEPTH_MAX_SLOPE:
            why = f"slope {slope_inf:+.2f} (at most {DEPTH_MAX_SLOPE})"
            return "refuted", f"{at}; the analytic NTK's error does not shrink: {why}", slope
        trend += f"; analytic slope {slope_inf:+.2f}"
    return "supported", f"{at} within the band {band:.2g}{limit}; {trend}", slope


def c8_claim(
    runs: list[RunAnalysis],
    claim_type: Callable[..., C],
    hypothesis: tuple[str, str],
    statement: str,
) -> C:
    """C8 from the ``theory-depth`` runs (module docstring): one part per (rule, depth)."""
    table: dict = defaultdict(lambda: (defaultdict(list), defaultdict(list)))
    depths: dict[tuple[str, int], int] = {}
    rows, run_rows = [], []
    for a in runs:
        depth = a.config.get("depth")
        if depth is None:
            continue
        key = (a.label, int(depth))
        depths[key] = int(depth)
        err, err_inf = run_band_error(a), run_band_error(a, limit=True)
        if err is not None:
            table[key][0][a.width].append(err)
        if err_inf is not None:
            table[key][1][a.width].append(err_inf)
        band = depth_band(int(depth))
        run_rows.append(
            {
                "width": a.width,
                "seed": a.seed,
                "spec": f"{a.rule.spec} depth={depth}",
                "experiment": a.record.experiment,
                "measured": err,
                "reference": band,
                "deviation": err_inf,
                "verdict": "" if err is None else ("within" if err <= band else "outside"),
                "note": "deviation: rel error against the analytic deep NTK",
            }
        )
    verdicts, reasons = [], []
    for key in sorted(table):
        label, depth = key
        errors, errors_inf = table[key]
        verdict, reason, _ = judge_depth_setting(depth, dict(errors), dict(errors_inf))
        verdicts.append(verdict)
        reasons.append(f"{label} depth {depth}: {verdict} ({reason})")
        for m in sorted(errors):
            v = errors[m]
            finite = [x for x in v if math.isfinite(x)] or [math.inf]
            rows.append(
                {
                    "setting": f"{label} depth {depth}",
                    **WidthRow(m, len(v), _median(v), min(finite), max(v)).as_dict(),
                }
            )
    verdict = combine(verdicts)
    reason = next(
        (r for r in reasons if f": {verdict} (" in r),
        reasons[0] if reasons else "no depth runs with a prediction in the store",
    )
    tolerances = {
        "DEPTH_BAND_PER_LAYER": DEPTH_BAND_PER_LAYER,
        "DEPTH_FLUCTUATION": DEPTH_FLUCTUATION,
        "DEPTH_WIDTH": DEPTH_WIDTH,
        "DEPTH_MAX_SLOPE": DEPTH_MAX_SLOPE,
        "DEPTH_MIN_DECADES": DEPTH_MIN_DECADES,
        "MIN_SEEDS": MIN_SEEDS,
    }
    hyp, crit = hypothesis
    return claim_type(
        "C8",
        statement,
        verdict,
        "; ".join(reasons) or reason,
        hyp,
        crit,
        tolerances,
        reason,
        (),
        tuple(rows),
        tuple(run_rows),
        "max_k |L_net - L_pred| / E_pred,k down to 1e-2 L0 (H(0) prediction; deviation: "
        "against the analytic deep NTK)",
    )
