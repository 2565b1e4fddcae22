"""Drawing helpers shared by the report figures (:mod:`.plots_paper`, :mod:`.plots_theory`).

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas, no pyplot), so no
global backend is switched and nothing is ever shown.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .. import _curves
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


def new_figure(
    size: tuple[float, float] = _SIZE, ncols: int = 1, nrows: int = 1
) -> tuple[Figure, np.ndarray]:
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


def set_title(ax: Axes, text: str, width: int = 72) -> None:
    """Small axes title wrapped at ``width`` characters."""
    ax.set_title("\n".join(textwrap.wrap(text, width)), fontsize=9)


def log_widths(ax: Axes, widths: Iterable[float]) -> None:
    """Log x axis labelled at the widths themselves (minor labels would overlap)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ticks = sorted({int(w) for w in widths})
    ax.set_xticks(ticks, [str(w) for w in ticks], fontsize=7)


def envelope(y: np.ndarray) -> np.ndarray:
    """Suffix maximum (docs/mathematics.md §5's envelope), NaN-safe: removes the oscillation troughs."""
    y = np.nan_to_num(np.asarray(y, float), nan=-np.inf)
    env = _curves.envelope(y)
    return np.where(np.isfinite(env), env, np.nan)


def steps_of(a: RunAnalysis) -> np.ndarray:
    """Step numbers 0..K of a run's stored loss curve."""
    return np.arange(a.record.losses.size)


def positive(y: npt.ArrayLike) -> np.ndarray:
    """Float copy with non-positive values as NaN (hidden on log axes)."""
    out = np.asarray(y, dtype=float).copy()
    out[~(out > 0)] = np.nan  # log axes: hide zeros, NaN after a divergence stays NaN
    return out


def _label(a: RunAnalysis) -> str:
    return a.label


def plot_runs(
    ax: Axes,
    runs: Sequence[RunAnalysis],
    *,
    loglog: bool = False,
    label: Callable[[RunAnalysis], str] = _label,
) -> None:
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


def first_seed(runs: Iterable[RunAnalysis]) -> list[RunAnalysis]:
    """One run per (rule, width): the smallest seed (curve figures show one network)."""
    best: dict[tuple[str, int], RunAnalysis] = {}
    for a in runs:
        key = (a.rule.spec, a.width)
        if key not in best or a.seed < best[key].seed:
            best[key] = a
    return list(best.values())
