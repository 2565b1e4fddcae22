"""Report figures: each function takes analysed runs and returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas, no pyplot), so no
global backend is switched, nothing is ever shown and nothing is trained: every curve comes from
the store (measured losses, the exact discrete kernel predictions with ``H(0)`` and ``H^inf``,
MATH.md 3, and the limiting ODE, MATH.md 4). :func:`figures_for` picks the figures of each
experiment from its ``kind`` tag and names them after the experiment.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..experiments.config import data_key
from .claims import C6_SLOPE_BAND, drift_factors, width_errors
from .summary import RunAnalysis

__all__ = [
    "NamedFigure",
    "crossover_figure",
    "curves_figure",
    "figures_for",
    "hb_semilog_figure",
    "hom_figure",
    "kernel_drift_figure",
    "loss_vs_width_figure",
    "nag_loglog_figure",
    "overlay_figure",
    "rates_figure",
    "width_error_figure",
]

_DPI = 100
_SIZE = (6.4, 4.2)


@dataclass(frozen=True, eq=False)
class NamedFigure:
    """A figure with the file stem it is saved under and its caption."""

    name: str
    figure: Figure
    caption: str


def _fig(size=_SIZE, ncols: int = 1, nrows: int = 1):
    # fixed margins instead of a layout engine: constrained layout measured every tick label
    # several times per save and cost ~40% of the report's time
    fig = Figure(figsize=size, dpi=_DPI)
    top = 0.87 if nrows == 1 else 1.0 - 0.45 / size[1]
    fig.subplots_adjust(
        left=0.13, right=0.97, bottom=0.12 if nrows == 1 else 0.08, top=top, wspace=0.3, hspace=0.5
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _title(ax, text: str, width: int = 72) -> None:
    ax.set_title("\n".join(textwrap.wrap(text, width)), fontsize=9)


def _log_widths(ax, widths) -> None:
    """Log x axis labelled at the widths themselves (minor labels would overlap)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    widths = sorted({int(w) for w in widths})
    ax.set_xticks(widths, [str(w) for w in widths], fontsize=7)


def _envelope(y: np.ndarray) -> np.ndarray:
    """Suffix maximum (MATH.md 5's envelope), NaN-safe: removes the oscillation troughs."""
    y = np.nan_to_num(np.asarray(y, float), nan=-np.inf)
    env = np.maximum.accumulate(y[::-1])[::-1]
    return np.where(np.isfinite(env), env, np.nan)


def _steps(a: RunAnalysis) -> np.ndarray:
    return np.arange(a.record.losses.size)


def _positive(y) -> np.ndarray:
    y = np.asarray(y, dtype=float).copy()
    y[~(y > 0)] = np.nan  # log axes: hide zeros, NaN after a divergence stays NaN
    return y


def _plot_runs(ax, runs, *, loglog: bool = False, label=lambda a: a.label):
    for a in runs:
        k = _steps(a)
        y = _positive(a.record.losses)
        sel = k > 0 if loglog else slice(None)
        ax.plot(k[sel], y[sel], lw=1.3, label=label(a))
    ax.set_yscale("log")
    if loglog:
        ax.set_xscale("log")
    ax.set_xlabel("epoch (optimizer step)")
    ax.set_ylabel("training loss")
    ax.grid(True, which="major", alpha=0.3)
    if runs:
        ax.legend(fontsize=7)


def _first_seed(runs):
    """One run per (rule, width): the smallest seed (curve figures show one network)."""
    best = {}
    for a in runs:
        key = (a.rule.spec, a.width)
        if key not in best or a.seed < best[key].seed:
            best[key] = a
    return list(best.values())


# --------------------------------------------------------------------------------------------
# Paper figures.


def curves_figure(runs, title: str) -> Figure:
    """Loss vs epoch (semilog) of every run, e.g. E1's GD curve."""
    fig, ax = _fig()
    _plot_runs(ax[0, 0], _first_seed(runs))
    _title(ax[0, 0], title)
    return fig


def hb_semilog_figure(runs, title: str) -> Figure:
    """PAPER.md HB_Epoch: Heavy Ball loss vs epoch (semilog), GD for reference."""
    chosen = [a for a in _first_seed(runs) if a.rule.name in ("hb", "gd")]
    chosen.sort(key=lambda a: (a.rule.name != "gd", a.rule.params.get("beta", 0.0)))
    fig, ax = _fig()
    _plot_runs(ax[0, 0], chosen)
    _title(ax[0, 0], title)
    return fig


def nag_loglog_figure(runs, title: str) -> Figure:
    """PAPER.md NAG_Epoch: scheduled Nesterov loss vs epoch on log-log axes with GD, plus
    ``k^-r`` guides through each curve's value at 10% of the run."""
    chosen = [a for a in _first_seed(runs) if a.rule.name in ("gd", "nesterov", "nesterov-torch")]
    chosen.sort(key=lambda a: (a.rule.name != "gd", a.rule.params.get("r", 0.0)))
    fig, ax = _fig()
    _plot_runs(ax[0, 0], chosen, loglog=True)
    for a in chosen:
        if a.rule.name == "gd" or not a.ok:
            continue
        k0 = max(1, a.record.steps // 10)
        k = np.array([k0, a.record.steps], float)
        ax[0, 0].plot(k, a.record.losses[k0] * (k / k0) ** -a.rule.r, ":", lw=0.8, color="0.5")
    _title(ax[0, 0], title + " (dotted: k^-r guides)")
    return fig


def hom_figure(runs, title: str) -> Figure:
    """PAPER.md HM: higher-order momentum curves with GD and HB."""
    chosen = [a for a in _first_seed(runs) if a.rule.name in ("gd", "hb", "hom", "hom-notebook")]
    fig, ax = _fig()
    _plot_runs(ax[0, 0], chosen)
    _title(ax[0, 0], title)
    return fig


def loss_vs_width_figure(runs, title: str, key: str) -> Figure:
    """PAPER.md HB_Width / NAG_Width: loss at the last epoch vs width, one line per ``key``
    value (beta or r), the mean over seeds with the seeds as dots; diverged runs as x at top."""
    groups = defaultdict(lambda: defaultdict(list))
    for a in runs:
        if key in a.rule.params:
            final = a.record.final_loss if a.ok and a.record.final_loss is not None else math.inf
            groups[a.rule.params[key]][a.width].append(final)
    fig, ax = _fig()
    ax = ax[0, 0]
    finite = [v for g in groups.values() for vs in g.values() for v in vs if math.isfinite(v)]
    top = max(finite) * 3 if finite else 1.0
    for value, per_width in sorted(groups.items()):
        widths = sorted(per_width)
        means = [float(np.mean(per_width[m])) for m in widths]
        line = ax.plot(
            widths,
            [m if math.isfinite(m) else np.nan for m in means],
            "o-",
            label=f"{key} = {value:g}",
        )[0]
        for m in widths:
            vals = np.asarray(per_width[m])
            ax.plot(
                [m] * int(np.isfinite(vals).sum()),
                vals[np.isfinite(vals)],
                ".",
                color=line.get_color(),
                alpha=0.4,
            )
            if not np.isfinite(vals).all():
                ax.plot([m], [top], "x", color=line.get_color())
    steps = runs[0].record.steps if runs else 0
    ax.set_yscale("log")
    ax.set_xlabel("width m")
    ax.set_ylabel(f"training loss at epoch {steps}")
    _title(ax, title + " (x: diverged)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------
# Theory figures.


def overlay_figure(runs, title: str) -> Figure:
    """Measured loss vs the exact discrete prediction with ``H(0)`` and ``H^inf`` (MATH.md 3)
    and the limiting ODE (MATH.md 4), one panel per optimizer."""
    chosen = sorted(_first_seed(runs), key=lambda a: (a.rule.name, a.rule.spec))
    ncols = 2 if len(chosen) == 4 else min(3, max(1, len(chosen)))
    nrows = max(1, math.ceil(len(chosen) / ncols))
    fig, axes = _fig((4.0 * ncols, 3.0 * nrows), ncols, nrows)
    for ax in axes.flat[len(chosen) :]:
        ax.set_visible(False)
    for ax, a in zip(axes.flat, chosen):
        k = _steps(a)
        ax.plot(k, _positive(a.record.losses), color="k", lw=1.6, label="network")
        for curve, style, name in (
            (a.record.pred_discrete, "--", "kernel H(0)"),
            (a.record.pred_discrete_inf, ":", "kernel H^inf"),
            (a.record.pred_ode, "-.", "ODE (H^inf)"),
        ):
            if curve is not None:
                ax.plot(k[: curve.size], _positive(curve), style, lw=1.1, label=name)
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
    chosen = [a for a in _first_seed(runs) if a.rule.name in ("nesterov", "nesterov-torch")]
    chosen.sort(key=lambda a: a.rule.r)
    fig, ax = _fig()
    ax = ax[0, 0]
    for a in chosen:
        k = _steps(a).astype(float)
        L = _positive(a.record.losses) / a.record.losses[0]
        y = _envelope(L) * np.maximum(k, 1.0) ** a.rule.r
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
    _title(ax, title + " (dotted: k = r/h0; dashed: (1-h0)^k)")
    ax.grid(True, alpha=0.3)
    if chosen:
        ax.legend(fontsize=8)
    return fig


def rates_figure(runs, title: str) -> Figure:
    """Fitted per-step decay rate of each network (y) vs the same fit on its exact kernel
    prediction with H(0) (x, MATH.md 3, 5); the horizontal bar spans the rates predicted for
    lambda_min(H(t)) over the fit window (the kernel's drift, as in claims C1-C5); open squares
    mark the predicted asymptotic ``-log q``. The diagonal is agreement."""
    fig, ax = _fig()
    ax = ax[0, 0]
    pts = []
    for a in _first_seed(runs):
        if a.fit is None or a.fit.kind != "linear":
            continue
        ref = a.fit_kernel.rate if a.fit_kernel and a.fit_kernel.kind == "linear" else None
        pred = a.predicted.rate_per_step if a.predicted else None
        if ref is not None:
            factors, _ = drift_factors(a, a.fit.window.t_first, a.fit.window.t_end)
            band = sorted(-ref * x for x in factors)
            err = [[-ref - band[0]], [band[-1] + ref]]
            line = ax.errorbar([-ref], [-a.fit.rate], xerr=err, fmt="o", capsize=3, label=a.label)
            pts += [-ref, -a.fit.rate, *band]
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
    _title(ax, title)
    ax.grid(True, alpha=0.3)
    return fig


def width_error_figure(runs, title: str) -> Figure:
    """C6: ``max|L_net - L_pred|/L_0`` (MATH.md 6, median over seeds) vs width on log-log axes,
    with each optimizer's fitted slope and a ``width^-1/2`` guide."""
    table = width_errors(runs, "abs_err")
    label = {a.rule.spec: a.label for a in runs}
    fig, ax = _fig()
    ax = ax[0, 0]
    for spec, errs in table.items():
        m, e = np.array(list(errs), float), np.array(list(errs.values()))
        text = label[spec]
        if m.size >= 2:
            slope, icpt = np.polyfit(np.log(m), np.log(e), 1)
            ax.plot(m, np.exp(icpt) * m**slope, "--", lw=0.8)
            text += f" (slope {slope:.2f})"
        ax.plot(m, e, "o-", label=text)
    if table:
        m_all = sorted({m for errs in table.values() for m in errs})
        e0 = float(np.exp(np.mean([np.log(v) for errs in table.values() for v in errs.values()])))
        mm = np.array([m_all[0], m_all[-1]], float)
        ax.plot(mm, e0 * (mm / np.sqrt(m_all[0] * m_all[-1])) ** -0.5, "k:", label="width^-1/2")
        ax.legend(fontsize=7)
    _log_widths(ax, [m for errs in table.values() for m in errs])
    ax.set_yscale("log")
    ax.set_xlabel("width m")
    ax.set_ylabel("max_k |L_net - L_pred| / L_0")
    lo, hi = C6_SLOPE_BAND
    _title(ax, f"{title} (slope band [{lo}, {hi}])")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def kernel_drift_figure(runs, title: str, lambda0: float | None = None) -> Figure:
    """lambda_min(H(t)) over training per width (left; dashed: lambda_0 of H^inf) and the
    final ``||W(t) - W(0)||_F`` and ``||H(t) - H(0)||_2`` vs width (right, log-log)."""
    fig, axes = _fig((10.0, 4.0), 2, 1)
    left, right = axes[0, 0], axes[0, 1]
    chosen = sorted(
        [a for a in _first_seed(runs) if a.record.diagnostics], key=lambda a: (a.rule.spec, a.width)
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
    _log_widths(right, [w for pw in finals.values() for w in pw])
    right.set_yscale("log")
    right.set_xlabel("width m")
    right.set_ylabel("at the last step")
    right.legend(fontsize=6)
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# Dispatch.

_CAPTIONS = {
    "overlay": "Measured loss of each network (black) against the exact discrete kernel "
               "prediction with H(0) (dashed) and H^inf (dotted), and the limiting ODE "
               "(dash-dot; MATH.md 3-4).",
    "nag_loglog": "Scheduled Nesterov, loss vs epoch on log-log axes with GD (PAPER.md "
                  "NAG_Epoch); dotted lines are k^-r guides.",
    "crossover": "C7: k^r L_k / L_0 of scheduled Nesterov. Flat while L ~ k^-r; after the "
                 "crossover k = r/h0 (dotted) it falls like (1-h0)^k (dashed).",
    "rates": "Fitted per-step rate of each network vs the same fit on its kernel prediction "
             "(dots) and the predicted asymptotic log q (open squares).",
    "hom": "Higher-order momentum with GD and HB (PAPER.md HM).",
    "error_vs_width": "C6: prediction error max|L_net - L_pred|/L_0 vs width (median over "
                      "seeds), fitted slopes (dashed) and a width^-1/2 guide (dotted).",
    "kernel_drift": "lambda_min(H(t)) during training per width, and the final weight and "
                    "kernel movement vs width.",
    "gd": "GD, loss vs epoch (PAPER.md E1).",
    "hb_epoch": "Heavy Ball, loss vs epoch, semilog (PAPER.md HB_Epoch).",
    "loss_vs_width": "Loss at the last epoch vs width (PAPER.md HB_Width / NAG_Width); "
                     "mean over seeds, seeds as dots.",
    "curves": "Loss vs step of every run.",
}  # fmt: skip


def figures_for(
    analyses, info: dict | None = None, kernels: dict | None = None
) -> list[NamedFigure]:
    """All figures of a report: per experiment, those of its kind (module docstring).

    ``info``: experiment id -> its config table (title); ``kernels``: data key -> the stored
    H^inf spectrum (for the lambda_0 reference line).
    """
    info, kernels = info or {}, kernels or {}
    groups = defaultdict(list)
    for a in analyses:
        groups[a.record.experiment].append(a)
    out: list[NamedFigure] = []
    for eid, runs in sorted(groups.items()):
        kind = runs[0].kind
        # "$" would start matplotlib mathtext (a bad command raises at draw time): escape it
        title = str(info.get(eid, {}).get("title") or eid).replace("$", r"\$")
        names = {r.rule.name for r in runs}
        plan: list[tuple[str, Figure]] = []
        if kind == "theory-curves":
            plan.append(("overlay", overlay_figure(runs, title)))
            if names & {"nesterov", "nesterov-torch"}:
                plan.append(("nag_loglog", nag_loglog_figure(runs, title)))
                plan.append(("crossover", crossover_figure(runs, title)))
            plan.append(("rates", rates_figure(runs, title)))
            if names & {"hom", "hom-notebook"}:
                plan.append(("hom", hom_figure(runs, title)))
        elif kind == "theory-width":
            plan.append(("error_vs_width", width_error_figure(runs, title)))
            if any(a.record.diagnostics for a in runs):
                k = kernels.get(data_key(runs[0].config))
                lam0 = None if k is None else float(k.lambda_min)
                plan.append(("kernel_drift", kernel_drift_figure(runs, title, lam0)))
        elif kind == "E1":
            plan.append(("gd", curves_figure(runs, title)))
        elif kind in ("E2", "E4"):
            plan.append(
                (
                    "loss_vs_width",
                    loss_vs_width_figure(runs, title, "beta" if kind == "E2" else "r"),
                )
            )
        elif kind == "E3":
            plan.append(("hb_epoch", hb_semilog_figure(runs, title)))
        elif kind == "E5":
            plan.append(("nag_loglog", nag_loglog_figure(runs, title)))
        elif kind == "E6":
            plan.append(("hom", hom_figure(runs, title)))
        elif any(a.record.pred_discrete is not None for a in runs):
            plan.append(("overlay", overlay_figure(runs, title)))
        else:
            plan.append(("curves", curves_figure(runs, title)))
        for what, fig in plan:
            caption = f"{info.get(eid, {}).get('title') or eid}: {_CAPTIONS[what]}"
            out.append(NamedFigure(f"{eid}_{what}", fig, caption))
    return out
