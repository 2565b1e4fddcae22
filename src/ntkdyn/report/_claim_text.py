"""The words of claims C1-C8 (statement, hypothesis, one-line criterion) and claim C6.

The statements say exactly what is tested; the hypotheses name the measured quantity and its
window; the criteria name the tolerances of ``ntkdyn.verdicts.tolerances``. All of it was
written down before any run (docs/verdicts.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from ..verdicts import WidthRow, combine
from ..verdicts.tolerances import (
    C6_SLOPE_BAND,
    MIN_DECADES,
    MIN_SEEDS,
    MIN_WIDTHS,
    POINT_MAX_SENSITIVITY,
)
from ._evidence import power_law_fit
from .summary import RunAnalysis

__all__ = ["HYPOTHESES", "POINT_MAX_SENSITIVITY", "STATEMENTS", "c6_claim"]

_KERNEL = "at the rate of its H(0) kernel model in the wide limit"
STATEMENTS = {
    "C1": f"Gradient descent converges linearly, {_KERNEL}.",
    "C2": f"Heavy Ball converges linearly, {_KERNEL}; when underdamped its rate is the "
    "lambda-free log beta at any width.",
    "C3": "Scheduled Nesterov (momentum (k-1)/(k+r-1)) follows a power law before its "
    "crossover k = r/h0, with the exponent of its kernel model; the exponent tends to the "
    "ODE's r as the step shrinks.",
    "C4": f"Constant-momentum Nesterov (NAG-SC) converges linearly, {_KERNEL}; when "
    "underdamped its rate barely depends on lambda.",
    "C5": f"Higher-order momentum converges linearly, {_KERNEL}; with complex roots its rate "
    "barely depends on lambda.",
    "C6": "Finite networks follow the kernel prediction, the error shrinking like width^-1/2.",
    "C7": "(Beyond the paper) at a fixed step, scheduled Nesterov turns linear after the "
    f"crossover k = r/h0, {_KERNEL}.",
    "C8": "(Beyond the paper) deep ReLU networks (1-4 hidden layers, every layer trained) follow "
    "the kernel prediction of their NTK at initialisation and of the analytic deep NTK, "
    "within a band that grows with the depth and an error that shrinks with the width.",
}

_RATE_HYP = (
    "On the window [K/4, K], K = the last step before the H(0) kernel model of the "
    "judged rule falls to the dtype's floor (1e-20 L0 in float64), the least-squares "
    "slope of the network's log envelope against the kernel model's; the network must "
    "be classified linear there wherever its kernel model is (a run too short for that is "
    "inconclusive). Width ladder: >= 4 widths over >= 1.5 decades, >= 3 seeds each."
)
_RATE_CRIT = (
    "supported: median |s_net/s_kernel - 1| at the widest width <= KERNEL_MODEL_RTOL "
    "and its log-log slope in width inside WIDTH_SLOPE_BAND; refuted: above the "
    "tolerance, not shrinking, unstable kernel model, or not linear"
)
_POINT = (
    " Point test (underdamped settings, rate sensitivity to lambda_min <= "
    "POINT_MAX_SENSITIVITY): the same deviation at one modest width within POINT_RTOL."
)
HYPOTHESES = {
    "C1": (_RATE_HYP, _RATE_CRIT),
    "C2": (_RATE_HYP + _POINT, _RATE_CRIT + "; and the point test within POINT_RTOL"),
    "C3": (
        (
            "On [K/4, K], K = min(r/h0, run end, floor), the network's window exponent p "
            "(E_k ~ k^-p) against the kernel model's on each half of the window in log k "
            "([K/4, K/2] and [K/2, K]; the larger deviation counts), at the widest width "
            "(>= 3 seeds); and the kernel model at lr x SMALL_STEP_FACTOR on K = "
            "SMALL_STEP_WINDOW r/h0 against the limiting ODE's exponent on the same window "
            "plus the finite-step correction (docs/verdicts.md §5)."
        ),
        (
            "supported: median |p_net/p_kernel - 1| <= KERNEL_MODEL_RTOL, the network "
            "classified sublinear, and the small-step exponent within POWER_LAW_RTOL r of the "
            "ODE reference; refuted otherwise or when the kernel model is unstable"
        ),
    ),
    "C4": (_RATE_HYP + _POINT, _RATE_CRIT + "; and the point test within POINT_RTOL"),
    "C5": (_RATE_HYP + _POINT, _RATE_CRIT + "; and the point test within POINT_RTOL"),
    "C6": (
        (
            "max_k |L_net - L_pred| / L0 up to the step where the H(0) prediction reaches "
            "1e-4 L0 (docs/mathematics.md §6), median over seeds per width; log-log slope "
            "against the width."
        ),
        "supported: slope inside C6_SLOPE_BAND for every optimizer; refuted: outside",
    ),
    "C7": (
        (
            "Where the kernel model stays above the floor until CROSSOVER_REACH r/h0: on "
            "[K/4, K] the network's per-step slope against the kernel model's; the kernel "
            "model's slope against the late law log(1 - h0) - r cov(k, log k)/var(k)."
        ),
        _RATE_CRIT + "; the kernel model within POWER_LAW_RTOL of the late law",
    ),
    "C8": (
        (
            "Per rule and depth L: rel = max_k |L_net - L_pred| / E_pred,k (E: the "
            "prediction's envelope) down to the step where the prediction reaches 1e-2 L0, "
            "against the H(0) prediction and against the analytic deep NTK's "
            "(docs/mathematics.md §6, §1.5); median over >= 3 seeds per width; its log-log "
            "slope against the width (docs/verdicts.md §9)."
        ),
        (
            "supported: at the widest width (>= DEPTH_WIDTH) the median within "
            "DEPTH_BAND_PER_LAYER x L (H(0)) and DEPTH_BAND_PER_LAYER x L + DEPTH_FLUCTUATION "
            "x sqrt(L) (analytic NTK), and the slope <= DEPTH_MAX_SLOPE over >= "
            "DEPTH_MIN_DECADES decades; refuted: outside a band, a diverged network, or not "
            "shrinking; inconclusive: narrower, fewer seeds or widths, or a run too short"
        ),
    ),
}


C = TypeVar("C")


def c6_claim(runs: list[RunAnalysis], claim_type: Callable[..., C]) -> C:
    """C6 from the width-ladder runs: per optimizer, the median abs error per width and its
    log-log slope against the width inside ``C6_SLOPE_BAND``."""
    table: dict = defaultdict(lambda: defaultdict(list))
    labels = {}
    for a in runs:
        if a.abs_err is not None and np.isfinite(a.abs_err) and a.abs_err > 0:
            table[a.rule.spec][a.width].append(a.abs_err)
            labels[a.rule.spec] = a.label
    lo, hi = C6_SLOPE_BAND
    verdicts, reasons, rows, run_rows = [], [], [], []
    for spec, per_width in sorted(table.items()):
        widths = sorted(per_width)
        meds = [float(np.median(per_width[m])) for m in widths]
        seeds = min(len(v) for v in per_width.values())
        decades = np.log10(widths[-1] / widths[0]) if len(widths) > 1 else 0.0
        rows += [
            {
                "setting": labels[spec],
                **WidthRow(
                    m, len(per_width[m]), med, min(per_width[m]), max(per_width[m])
                ).as_dict(),
            }
            for m, med in zip(widths, meds, strict=True)
        ]
        if len(widths) < MIN_WIDTHS or decades < MIN_DECADES - 1e-9 or seeds < MIN_SEEDS:
            verdicts.append("inconclusive")
            reasons.append(
                f"{labels[spec]}: inconclusive ({len(widths)} widths over "
                f"{decades:.2f} decades, >= {seeds} seeds)"
            )
            continue
        slope = power_law_fit(widths, meds).slope
        ok = lo <= slope <= hi
        verdicts.append("supported" if ok else "refuted")
        reasons.append(
            f"{labels[spec]}: {'supported' if ok else 'refuted'} (slope {slope:+.2f} "
            f"{'inside' if ok else 'outside'} [{lo}, {hi}]; median error "
            f"{meds[0]:.2g} at m = {widths[0]} -> {meds[-1]:.2g} at m = {widths[-1]})"
        )
    for a in runs:
        run_rows.append(
            {
                "width": a.width,
                "seed": a.seed,
                "spec": a.rule.spec,
                "experiment": a.record.experiment,
                "measured": a.abs_err,
                "reference": None,
                "deviation": None,
                "verdict": "",
                "note": "",
            }
        )
    verdict = combine(verdicts)
    reason = next(
        (r for r in reasons if f": {verdict}" in r),
        reasons[0] if reasons else "no width-ladder runs with a kernel prediction in the store",
    )
    hyp, crit = HYPOTHESES["C6"]
    tol = {
        "C6_SLOPE_BAND": list(C6_SLOPE_BAND),
        "MIN_WIDTHS": MIN_WIDTHS,
        "MIN_DECADES": MIN_DECADES,
        "MIN_SEEDS": MIN_SEEDS,
    }
    return claim_type(
        "C6",
        STATEMENTS["C6"],
        verdict,
        "; ".join(reasons) or reason,
        hyp,
        crit,
        tol,
        reason,
        ("C6_error_vs_width",),
        tuple(rows),
        tuple(run_rows),
        "max_k |L_net - L_pred| / L0 against the H(0) prediction",
    )
