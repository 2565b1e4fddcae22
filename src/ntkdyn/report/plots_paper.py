"""The notebook's figures (docs/paper.md E1-E6): measured loss curves of the paper's experiments.

Each function takes analysed runs and returns a matplotlib Figure; nothing is trained.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..optim import Family
from ._canvas import first_seed, new_figure, plot_runs, set_title
from ._run_stats import runs_of
from .summary import RunAnalysis

__all__ = [
    "curves_figure",
    "hb_semilog_figure",
    "hom_figure",
    "loss_vs_width_figure",
    "nag_loglog_figure",
]


def _gd_then_by_momentum(a: RunAnalysis) -> tuple[bool, float]:
    """Sort key: GD first, then by the rule's momentum (beta) or damping (r) parameter."""
    key = a.rule.momentum_key
    return a.rule.family is not Family.GD, a.rule.params[key] if key else 0.0


def curves_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """Loss vs epoch (semilog) of every run, e.g. E1's GD curve."""
    fig, ax = new_figure()
    plot_runs(ax[0, 0], first_seed(runs))
    set_title(ax[0, 0], title)
    return fig


def hb_semilog_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """docs/paper.md HB_Epoch: Heavy Ball loss vs epoch (semilog), GD for reference."""
    chosen = sorted(
        runs_of(first_seed(runs), Family.HEAVY_BALL, Family.GD), key=_gd_then_by_momentum
    )
    fig, ax = new_figure()
    plot_runs(ax[0, 0], chosen)
    set_title(ax[0, 0], title)
    return fig


def nag_loglog_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """docs/paper.md NAG_Epoch: scheduled Nesterov loss vs epoch on log-log axes with GD, plus
    ``k^-r`` guides through each curve's value at 10% of the run."""
    chosen = sorted(
        runs_of(first_seed(runs), Family.GD, Family.NESTEROV_SCHEDULED), key=_gd_then_by_momentum
    )
    fig, ax = new_figure()
    plot_runs(ax[0, 0], chosen, loglog=True)
    for a in chosen:
        if a.rule.family is Family.GD or not a.ok:
            continue
        k0 = max(1, a.record.steps // 10)
        k = np.array([k0, a.record.steps], float)
        r = a.rule.params["r"]  # scheduled Nesterov's damping exponent
        ax[0, 0].plot(k, a.record.losses[k0] * (k / k0) ** -r, ":", lw=0.8, color="0.5")
    set_title(ax[0, 0], title + " (dotted: k^-r guides)")
    return fig


def hom_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """docs/paper.md HM: higher-order momentum curves with GD and HB."""
    chosen = runs_of(first_seed(runs), Family.GD, Family.HEAVY_BALL, Family.HIGHER_ORDER)
    fig, ax = new_figure()
    plot_runs(ax[0, 0], chosen)
    set_title(ax[0, 0], title)
    return fig


def loss_vs_width_figure(runs: Sequence[RunAnalysis], title: str, key: str) -> Figure:
    """docs/paper.md HB_Width / NAG_Width: loss at the last epoch vs width, one line per ``key``
    value (beta or r), the mean over seeds with the seeds as dots; diverged runs as x at top."""
    groups: defaultdict[float, defaultdict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for a in runs:
        if key in a.rule.params:
            final = a.record.final_loss if a.ok and a.record.final_loss is not None else math.inf
            groups[a.rule.params[key]][a.width].append(final)
    fig, ax = new_figure()
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
    set_title(ax, title + " (x: diverged)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig
