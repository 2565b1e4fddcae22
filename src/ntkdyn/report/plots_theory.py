"""Theory figures: networks against their kernel predictions (docs/mathematics.md §3-4), fitted rates,
the scheduled-Nesterov crossover, error vs width (docs/mathematics.md §6) and the kernel's drift.

Each function takes analysed runs and returns a matplotlib Figure; every curve comes from the
store (measured losses, the exact discrete kernel predictions with ``H(0)`` and ``H^inf`` and
the limiting ODE), nothing is trained. The bands and slopes are the claims' own
(:mod:`._evidence`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..optim import Family
from ..verdicts import judge_rate
from ..verdicts.tolerances import C6_SLOPE_BAND, KERNEL_MODEL_RTOL, WIDTH_SLOPE_BAND
from ._canvas import envelope, first_seed, log_widths, new_figure, positive, set_title, steps_of
from ._evidence import power_law_fit, width_errors
from ._grid import AXES, axis_values, label, sort_key
from .claims import Claim, kernel_model
from .summary import RunAnalysis

__all__ = [
    "crossover_figure",
    "deviation_figure",
    "kernel_drift_figure",
    "overlay_figure",
    "rates_figure",
    "width_error_figure",
]

#: The optimizer and its hyperparameters: what names an overlay panel.
_RULE_AXES = AXES[: AXES.index("data")]


def overlay_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """Measured loss vs the exact discrete prediction with ``H(0)`` and ``H^inf`` (docs/mathematics.md §3)
    and the limiting ODE (docs/mathematics.md §4), one panel per optimizer (its widest width, first seed)."""
    widest = max(a.width for a in runs)
    chosen = [a for a in first_seed(runs) if a.width == widest] or first_seed(runs)
    chosen = sorted(chosen, key=lambda a: sort_key(axis_values(a), _RULE_AXES))
    ncols = 2 if len(chosen) == 4 else min(3, max(1, len(chosen)))
    nrows = max(1, math.ceil(len(chosen) / ncols))
    fig, axes = new_figure((4.0 * ncols, 3.0 * nrows), ncols, nrows)
    for ax in axes.flat[len(chosen) :]:
        ax.set_visible(False)
    for ax, a in zip(axes.flat, chosen, strict=False):  # spare axes stay hidden
        k = steps_of(a)
        ax.plot(k, positive(a.record.losses), color="k", lw=1.6, label="network")
        for curve, style, name in (
            (a.record.pred_discrete, "--", "kernel H(0)"),
            (a.record.pred_discrete_inf, ":", "kernel H^inf"),
            (a.record.pred_ode, "-.", "ODE (H^inf)"),
        ):
            if curve is not None:
                ax.plot(k[: curve.size], positive(curve), style, lw=1.1, label=name)
        ax.set_yscale("log")
        ax.set_title(label(axis_values(a), (*_RULE_AXES, "width")), fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    if chosen:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def crossover_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """C7: ``L_k k^r`` of scheduled Nesterov (flat in the power-law window, then falling like
    ``(1 - h0)^k``), with the crossover ``k = r/h0`` marked and the predicted late slope."""
    chosen = [a for a in first_seed(runs) if a.rule.family is Family.NESTEROV_SCHEDULED]
    chosen.sort(key=lambda a: a.rule.params["r"])
    fig, ax = new_figure()
    ax = ax[0, 0]
    for a in chosen:
        r = a.rule.params["r"]  # the damping exponent of scheduled Nesterov
        k = steps_of(a).astype(float)
        L = positive(a.record.losses) / a.record.losses[0]
        y = envelope(L) * np.maximum(k, 1.0) ** r
        line = ax.plot(k[1:], y[1:], lw=1.2, label=f"r = {r:g}")[0]
        if a.record.h0:
            kx = r / a.record.h0
            ax.axvline(kx, color=line.get_color(), ls=":", lw=1)
            if kx < k[-1]:  # predicted (1 - h0)^k after the crossover, through the envelope
                kk = np.linspace(kx, k[-1], 50)
                anchor = float(np.interp(kx, k, np.nan_to_num(y, nan=0.0)))
                if anchor > 0:
                    ax.plot(kk, anchor * (1 - a.record.h0) ** (kk - kx), "--", color="k", lw=0.9)
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("step k")
    ax.set_ylabel("k^r E_k / L_0   (E: envelope of L)")
    set_title(ax, title + " (dotted: k = r/h0; dashed: (1-h0)^k)")
    ax.grid(True, alpha=0.3)
    if chosen:
        ax.legend(fontsize=8)
    return fig


def rates_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """Point tests: each network's per-step rate (y) against its H(0) kernel model's on the
    same window (x, ``ntkdyn.verdicts.judge_rate``), open squares at the rule's asymptotic
    ``-log q``; the diagonal is agreement, the grey band the point tolerance."""
    from ..verdicts.tolerances import POINT_RTOL

    fig, ax = new_figure()
    ax = ax[0, 0]
    pts: list[float] = []  # every plotted coordinate (the axis limits)
    colors: dict[str, str] = {}  # rule spec -> its marker colour
    for a in sorted(runs, key=lambda a: (a.rule.spec, a.seed)):
        model = kernel_model(a)
        if model is None or not a.rule.is_linear:
            continue
        j = judge_rate(a.record.losses, model, a.rule, floor_rel=a.floor_rel)
        if j.measured is None or j.reference is None:
            continue
        x, y = -j.reference, -j.measured
        first = a.rule.spec not in colors
        line = ax.plot(
            [x], [y], "o", color=colors.get(a.rule.spec), label=a.label if first else None
        )[0]
        colors.setdefault(a.rule.spec, line.get_color())
        ax.plot([-j.details["log_q"]], [y], "s", mfc="none", color=colors[a.rule.spec])
        pts += [x, y, -j.details["log_q"]]
    if pts:
        lo, hi = min(pts) / 1.3, max(pts) * 1.3
        xs = np.array([lo, hi])
        ax.plot(xs, xs, "k-", lw=0.8)
        ax.fill_between(xs, xs * (1 - POINT_RTOL), xs * (1 + POINT_RTOL), color="0.85")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("kernel model H(0): -slope of log L on the window (square: -log q)", fontsize=8)
    ax.set_ylabel("network: -slope of log L on the same window", fontsize=8)
    set_title(ax, title)
    ax.grid(True, alpha=0.3)
    return fig


def deviation_figure(claim: Claim) -> Figure:
    """A kernel claim as a limit in width: ``|deviation|`` of every run (dots) and the median
    over seeds (line) against the width, with the tolerance (dashed) and ``m^-1/2``,
    ``m^-1/4`` guides through the narrowest median (dotted): the numbers of the verdict."""
    fig, ax = new_figure()
    ax = ax[0, 0]
    by_spec: defaultdict[str, defaultdict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in claim.runs:
        if r.get("deviation") is not None:
            by_spec[r["spec"]][int(r["width"])].append(abs(float(r["deviation"])))
    widths_all = []
    for spec, per_width in sorted(by_spec.items()):
        m = np.array(sorted(per_width), float)
        med = np.array([np.median(per_width[w]) for w in sorted(per_width)])
        line = ax.plot(m, positive(med), "o-", label=spec.split(",")[0] + ", ...")[0]
        for w in sorted(per_width):
            ax.plot(
                [w] * len(per_width[w]),
                positive(np.array(per_width[w])),
                ".",
                color=line.get_color(),
                alpha=0.5,
            )
        if m.size >= 2 and med[0] > 0:
            for slope, style in ((-0.5, ":"), (-0.25, (0, (1, 3)))):
                ax.plot(m, med[0] * (m / m[0]) ** slope, linestyle=style, color="0.4", lw=0.8)
        widths_all += list(m)
    ax.axhline(KERNEL_MODEL_RTOL, color="k", ls="--", lw=0.9, label="tolerance")
    lo, hi = WIDTH_SLOPE_BAND
    _width_axes(
        ax,
        widths_all or [1],
        "|deviation| from the H(0) kernel model",
        f"{claim.id}: {claim.verdict} (guides m^-1/2, m^-1/4; band [{lo}, {hi}])",
    )
    ax.legend(fontsize=7)
    return fig


def width_error_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """C6: ``max|L_net - L_pred|/L_0`` (docs/mathematics.md §6, median over seeds) vs width on log-log axes,
    with each optimizer's fitted slope and a ``width^-1/2`` guide."""
    table = width_errors(runs, "abs_err")
    label = {a.rule.spec: a.label for a in runs}
    fig, ax = new_figure()
    ax = ax[0, 0]
    for spec, errs in table.items():
        m, e = np.array(list(errs), float), np.array(list(errs.values()))
        text = label[spec]
        if m.size >= 2:
            fit = power_law_fit(m, e)
            ax.plot(m, np.exp(fit.intercept) * m**fit.slope, "--", lw=0.8)
            text += f" (slope {fit.slope:.2f})"
        ax.plot(m, e, "o-", label=text)
    if table:
        m_all = sorted({m for errs in table.values() for m in errs})
        e0 = float(np.exp(np.mean([np.log(v) for errs in table.values() for v in errs.values()])))
        mm = np.array([m_all[0], m_all[-1]], float)
        ax.plot(mm, e0 * (mm / np.sqrt(m_all[0] * m_all[-1])) ** -0.5, "k:", label="width^-1/2")
        ax.legend(fontsize=7)
    lo, hi = C6_SLOPE_BAND
    _width_axes(
        ax,
        [m for errs in table.values() for m in errs],
        "max_k |L_net - L_pred| / L_0",
        f"{title} (slope band [{lo}, {hi}])",
    )
    return fig


def _width_axes(ax: Axes, widths: Sequence[float], ylabel: str, title: str) -> None:
    """Log-log axes over width, labelled and titled, with a grid."""
    log_widths(ax, widths)
    ax.set_yscale("log")
    ax.set_xlabel("width m")
    ax.set_ylabel(ylabel)
    set_title(ax, title)
    ax.grid(True, which="both", alpha=0.3)


def kernel_drift_figure(
    runs: Sequence[RunAnalysis], title: str, lambda0: float | None = None
) -> Figure:
    """lambda_min(H(t)) over training per width (left; dashed: lambda_0 of H^inf) and the
    final ``||W(t) - W(0)||_F`` and ``||H(t) - H(0)||_2`` vs width (right, log-log)."""
    fig, axes = new_figure((10.0, 4.0), 2, 1)
    left, right = axes[0, 0], axes[0, 1]
    chosen = sorted(
        [a for a in first_seed(runs) if a.record.diagnostics], key=lambda a: (a.rule.spec, a.width)
    )
    finals: defaultdict[tuple[str, str], defaultdict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    shown: set[str] = set()
    for a in runs:
        d = a.record.diagnostics
        if not d:
            continue
        for key in ("w_drift", "h_drift"):
            if key in d and len(d[key]):
                finals[(a.label, key)][a.width].append(float(np.asarray(d[key])[-1]))
    for a in chosen:
        d = a.record.diagnostics
        assert d is not None  # chosen has diagnostics
        if a.rule.name not in shown and len(shown) >= 1:
            continue  # one optimizer on the left keeps the panel readable
        shown.add(a.rule.name)
        left.plot(d["step"], d["lambda_min"], label=f"{a.label}, m = {a.width}")
    if lambda0 is not None:
        left.axhline(lambda0, color="k", ls="--", lw=0.8, label="lambda_0 (H^inf)")
    left.set_xlabel("step")
    left.set_ylabel("lambda_min(H(t))")
    left.legend(fontsize=7)
    left.grid(True, alpha=0.3)
    for (name, key), per_width in sorted(finals.items()):
        m = sorted(per_width)
        v = [float(np.median(per_width[w])) for w in m]
        what = "||W(t)-W(0)||_F" if key == "w_drift" else "||H(t)-H(0)||_2"
        right.plot(m, v, "o-" if key == "w_drift" else "s--", label=f"{what}, {name}")
    log_widths(right, [w for pw in finals.values() for w in pw])
    right.set_yscale("log")
    right.set_xlabel("width m")
    right.set_ylabel("at the last step")
    right.legend(fontsize=6)
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig
