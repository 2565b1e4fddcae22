"""Drawing helpers shared by the report figures (:mod:`.plots_paper`, :mod:`.plots_theory`).

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas, no pyplot), so no
global backend is switched and nothing is ever shown.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .summary import RunAnalysis

__all__ = [
    "envelope",
    "first_seed",
    "log_widths",
    "new_figure",
    "plot_runs",
    "positive",
    "set_title",
    "steps_of",
]

_DPI = 100
_SIZE = (6.4, 4.2)


def new_figure(size=_SIZE, ncols: int = 1, nrows: int = 1):
    """A Figure of ``size`` inches with an ``nrows x ncols`` array of axes: ``(fig, axes)``."""
    # fixed margins instead of a layout engine: constrained layout measured every tick label
    # several times per save and cost ~40% of the report's time
    fig = Figure(figsize=size, dpi=_DPI)
    top = 0.87 if nrows == 1 else 1.0 - 0.45 / size[1]
    fig.subplots_adjust(
        left=0.13, right=0.97, bottom=0.12 if nrows == 1 else 0.08, top=top, wspace=0.3, hspace=0.5
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def set_title(ax, text: str, width: int = 72) -> None:
    """Small axes title wrapped at ``width`` characters."""
    ax.set_title("\n".join(textwrap.wrap(text, width)), fontsize=9)


def log_widths(ax, widths) -> None:
    """Log x axis labelled at the widths themselves (minor labels would overlap)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    widths = sorted({int(w) for w in widths})
    ax.set_xticks(widths, [str(w) for w in widths], fontsize=7)


def envelope(y: np.ndarray) -> np.ndarray:
    """Suffix maximum (docs/mathematics.md 5's envelope), NaN-safe: removes the oscillation troughs."""
    y = np.nan_to_num(np.asarray(y, float), nan=-np.inf)
    env = np.maximum.accumulate(y[::-1])[::-1]
    return np.where(np.isfinite(env), env, np.nan)


def steps_of(a: RunAnalysis) -> np.ndarray:
    """Step numbers 0..K of a run's stored loss curve."""
    return np.arange(a.record.losses.size)


def positive(y) -> np.ndarray:
    """Float copy with non-positive values as NaN (hidden on log axes)."""
    y = np.asarray(y, dtype=float).copy()
    y[~(y > 0)] = np.nan  # log axes: hide zeros, NaN after a divergence stays NaN
    return y


def plot_runs(ax, runs, *, loglog: bool = False, label=lambda a: a.label):
    """Loss vs step of each run on log y (and log x with ``loglog``, step 0 dropped)."""
    for a in runs:
        k = steps_of(a)
        y = positive(a.record.losses)
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


def first_seed(runs):
    """One run per (rule, width): the smallest seed (curve figures show one network)."""
    best = {}
    for a in runs:
        key = (a.rule.spec, a.width)
        if key not in best or a.seed < best[key].seed:
            best[key] = a
    return list(best.values())
