"""Theory figures: networks against their kernel predictions (MATH.md 3-4), fitted rates,
the scheduled-Nesterov crossover, error vs width (MATH.md 6) and the kernel's drift.

Each function takes analysed runs and returns a matplotlib Figure; every curve comes from the
store (measured losses, the exact discrete kernel predictions with ``H(0)`` and ``H^inf`` and
the limiting ODE), nothing is trained. The bands and slopes are the claims' own
(:mod:`._evidence`).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from ._canvas import envelope, first_seed, log_widths, new_figure, positive, set_title, steps_of
from ._evidence import power_law_fit, rate_band, width_errors
from .claims import C6_SLOPE_BAND

__all__ = [
    "crossover_figure",
    "kernel_drift_figure",
    "overlay_figure",
    "rates_figure",
    "width_error_figure",
]


def overlay_figure(runs, title: str) -> Figure:
    """Measured loss vs the exact discrete prediction with ``H(0)`` and ``H^inf`` (MATH.md 3)
    and the limiting ODE (MATH.md 4), one panel per optimizer."""
    chosen = sorted(first_seed(runs), key=lambda a: (a.rule.name, a.rule.spec))
    ncols = 2 if len(chosen) == 4 else min(3, max(1, len(chosen)))
    nrows = max(1, math.ceil(len(chosen) / ncols))
    fig, axes = new_figure((4.0 * ncols, 3.0 * nrows), ncols, nrows)
    for ax in axes.flat[len(chosen) :]:
        ax.set_visible(False)
    for ax, a in zip(axes.flat, chosen):
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
        ax.set_title(a.label, fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    if chosen:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def crossover_figure(runs, title: str) -> Figure:
    """C7: ``L_k k^r`` of scheduled Nesterov (flat in the power-law window, then falling like
    ``(1 - h0)^k``), with the crossover ``k = r/h0`` marked and the predicted late slope."""
    chosen = [a for a in first_seed(runs) if a.rule.name in ("nesterov", "nesterov-torch")]
    chosen.sort(key=lambda a: a.rule.r)
    fig, ax = new_figure()
    ax = ax[0, 0]
    for a in chosen:
        k = steps_of(a).astype(float)
        L = positive(a.record.losses) / a.record.losses[0]
        y = envelope(L) * np.maximum(k, 1.0) ** a.rule.r
        line = ax.plot(k[1:], y[1:], lw=1.2, label=f"r = {a.rule.r:g}")[0]
        if a.record.h0:
            kx = a.rule.r / a.record.h0
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


def rates_figure(runs, title: str) -> Figure:
    """Fitted per-step decay rate of each network (y) vs the same fit on its exact kernel
    prediction with H(0) (x, MATH.md 3, 5); the horizontal bar spans the rates predicted for
    lambda_min(H(t)) over the fit window (the kernel's drift, as in claims C1-C5); open squares
    mark the predicted asymptotic ``-log q``. The diagonal is agreement."""
    fig, ax = new_figure()
    ax = ax[0, 0]
    pts = []
    for a in first_seed(runs):
        if a.fit is None or a.fit.kind != "linear":
            continue
        ref = a.fit_kernel.rate if a.fit_kernel and a.fit_kernel.kind == "linear" else None
        pred = a.predicted.rate_per_step if a.predicted else None
        if ref is not None:
            band = rate_band(a, ref, a.fit.window.t_first, a.fit.window.t_end)
            err = [[band.high - ref], [ref - band.low]]  # the band of -rates is [-high, -low]
            line = ax.errorbar([-ref], [-a.fit.rate], xerr=err, fmt="o", capsize=3, label=a.label)
            pts += [-ref, -a.fit.rate, -band.high, -band.low]
            if pred is not None and math.isfinite(pred):
                ax.plot(-pred, -a.fit.rate, "s", mfc="none", color=line[0].get_color())
                pts.append(-pred)
    if pts:
        lo, hi = min(pts) / 1.3, max(pts) * 1.3
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("kernel model: -d log L/dk (bar: kernel drift; square: -log q)", fontsize=8)
    ax.set_ylabel("network: -d log L/dk", fontsize=8)
    set_title(ax, title)
    ax.grid(True, alpha=0.3)
    return fig


def width_error_figure(runs, title: str) -> Figure:
    """C6: ``max|L_net - L_pred|/L_0`` (MATH.md 6, median over seeds) vs width on log-log axes,
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
    log_widths(ax, [m for errs in table.values() for m in errs])
    ax.set_yscale("log")
    ax.set_xlabel("width m")
    ax.set_ylabel("max_k |L_net - L_pred| / L_0")
    lo, hi = C6_SLOPE_BAND
    set_title(ax, f"{title} (slope band [{lo}, {hi}])")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def kernel_drift_figure(runs, title: str, lambda0: float | None = None) -> Figure:
    """lambda_min(H(t)) over training per width (left; dashed: lambda_0 of H^inf) and the
    final ``||W(t) - W(0)||_F`` and ``||H(t) - H(0)||_2`` vs width (right, log-log)."""
    fig, axes = new_figure((10.0, 4.0), 2, 1)
    left, right = axes[0, 0], axes[0, 1]
    chosen = sorted(
        [a for a in first_seed(runs) if a.record.diagnostics], key=lambda a: (a.rule.spec, a.width)
    )
    finals = defaultdict(lambda: defaultdict(list))
    shown = set()
    for a in [a for a in runs if a.record.diagnostics]:
        d = a.record.diagnostics
        for key in ("w_drift", "h_drift"):
            if key in d and len(d[key]):
                finals[(a.label, key)][a.width].append(float(np.asarray(d[key])[-1]))
    for a in chosen:
        d = a.record.diagnostics
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
