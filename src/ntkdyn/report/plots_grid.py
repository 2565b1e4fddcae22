"""Figures of any user grid, drawn from what varies in the stored run configs (:mod:`._grid`).

For the runs of experiments whose kind has no figures of its own (``curves``, the default):

* ``grid_final_loss_vs_width``: the final loss against the width, median over seeds with the
  seeds' range, one line per setting of the other varying axes, one panel per optimizer;
* ``grid_kernel_error_vs_width``: the same for the error of the H(0) kernel prediction
  (docs/mathematics.md §6), when the runs stored predictions;
* ``grid_final_loss_map_<optimizer>``: a heat map of the final loss over the first two axes
  that vary for that optimizer (e.g. ``lr`` x ``beta``), one panel per width; one figure per
  setting of any further varying axis (at most :data:`MAX_MAPS`).

Both need two widths or two varying axes; otherwise the figure is not drawn. Lines, legend
entries and panels are labelled with their values and sorted by value, never by run id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ._canvas import log_widths, new_figure, plot_runs, set_title
from ._grid import (
    GRID,
    SEED_AXES,
    axis_values,
    final_losses,
    fmt,
    grid_runs,
    group_runs,
    label,
    seed_summary,
    sort_key,
    varying,
)
from .summary import RunAnalysis

__all__ = [
    "MAX_MAPS",
    "PlannedFigure",
    "final_loss_map_figure",
    "grid_curves_figure",
    "grid_plan",
    "value_vs_width_figure",
]

#: Heat maps drawn per optimizer when more than two axes vary (one per further setting).
MAX_MAPS = 6
_PANELS_PER_ROW = 4
_NOT_LINES = ("optimizer", *SEED_AXES)


class PlannedFigure(NamedTuple):
    """A figure to draw: file stem, caption and the call that draws it."""

    name: str
    caption: str
    draw: Callable[[], Figure]


def _medians(
    runs: Sequence[RunAnalysis], metric: Callable[[RunAnalysis], float | None]
) -> list[tuple[int, float, float, float]]:
    """``(width, median, low, high)`` per width (runs whose metric is None are skipped)."""
    per_width: dict[int, list[float]] = {}
    for a in runs:
        v = metric(a)
        if v is not None:
            per_width.setdefault(a.width, []).append(v)
    return [(m, *seed_summary(per_width[m])) for m in sorted(per_width)]


def _lines(
    ax: Axes,
    runs: Sequence[RunAnalysis],
    metric: Callable[[RunAnalysis], float | None],
) -> list[float]:
    """One line per setting of the axes varying in ``runs``: median with the seeds' range,
    an x at the top where half or more of the seeds diverged. Returns the widths drawn."""
    axes = varying(runs, exclude=_NOT_LINES)
    rows = [(values, _medians(group, metric)) for values, group in group_runs(runs, axes)]
    finite = [v for _, r in rows for _, med, lo, hi in r for v in (med, hi) if math.isfinite(v)]
    top = max(finite) * 3 if finite else 1.0
    widths: list[float] = []
    for values, row in rows:
        if not row:
            continue
        text = label(values, axes) or label(axis_values(runs[0]), ("lr",))
        m = np.array([r[0] for r in row], float)
        med = np.array([r[1] for r in row], float)
        lo = np.array([r[2] for r in row], float)
        hi = np.array([r[3] for r in row], float)
        shown = np.where(np.isfinite(med) & (med > 0), med, np.nan)
        line = ax.plot(m, shown, "o-", lw=1.3, ms=4, label=text)[0]
        ok = np.isfinite(shown) & np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            yerr = np.vstack([shown[ok] - lo[ok], hi[ok] - shown[ok]])
            ax.errorbar(
                m[ok],
                shown[ok],
                yerr=np.maximum(yerr, 0),
                fmt="none",
                capsize=2,
                color=line.get_color(),
                lw=0.8,
            )
        gone = ~np.isfinite(med)
        if gone.any():
            ax.plot(m[gone], [top] * int(gone.sum()), "x", color=line.get_color())
        widths += list(m)
    return widths


def value_vs_width_figure(
    runs: Sequence[RunAnalysis],
    metric: Callable[[RunAnalysis], float | None],
    ylabel: str,
    title: str,
) -> Figure:
    """``metric`` (median over seeds, bars: the seeds' range) against the width on log-log
    axes; one panel per optimizer (sorted by name), one line per setting (sorted by value)."""
    panels = group_runs(runs, ("optimizer",))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure((4.6 * ncols, 3.6 * nrows), ncols, nrows)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (values, group) in zip(axes.flat, panels, strict=False):  # spare axes hidden
        widths = _lines(ax, group, metric)
        log_widths(ax, widths or [1])
        ax.set_yscale("log")
        ax.set_xlabel("width m", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(which="both", labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
        if len(panels) > 1:
            ax.set_title(str(values["optimizer"]), fontsize=9)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def grid_curves_figure(runs: Sequence[RunAnalysis], title: str) -> Figure:
    """Loss against step of one network per setting (the widest width, the smallest seed),
    labelled with the values that vary and sorted by them."""
    widest = max(a.width for a in runs)
    chosen = [a for a in runs if a.width == widest]
    axes = varying(chosen, exclude=SEED_AXES)
    picked = [min(group, key=lambda a: a.seed) for _, group in group_runs(chosen, axes)]
    fig, ax = new_figure()
    ax = ax[0, 0]

    def text(a: RunAnalysis) -> str:
        return label(axis_values(a), axes) or label(axis_values(a), ("optimizer", "lr"))

    plot_runs(ax, picked, label=text)
    seeds = sorted({a.seed for a in picked})
    set_title(ax, f"{title} (m = {widest}, seed {', '.join(map(str, seeds))})")
    return fig


def _grid_values(runs: Sequence[RunAnalysis], axis: str) -> list[object]:
    """The distinct values of ``axis`` among ``runs``, sorted by value."""
    seen = {axis_values(a)[axis] for a in runs}
    return sorted(seen, key=lambda v: sort_key({axis: v}, (axis,)))


def final_loss_map_figure(
    runs: Sequence[RunAnalysis], y_axis: str, x_axis: str, title: str
) -> Figure:
    """Heat map of the final loss (median over seeds, colour log10) over ``y_axis`` x
    ``x_axis``, one panel per width (``m = ...``, by width); grey cells diverged (half or more
    of the seeds), blank cells not in the grid."""
    ys, xs = _grid_values(runs, y_axis), _grid_values(runs, x_axis)
    panels = group_runs(runs, ("width",))
    cells: list[np.ndarray] = []
    for _, group in panels:
        z = np.full((len(ys), len(xs)), np.nan)
        for values, cell_runs in group_runs(group, (y_axis, x_axis)):
            med = seed_summary(final_losses(cell_runs))[0]
            z[ys.index(values[y_axis]), xs.index(values[x_axis])] = med
        cells.append(z)
    finite = np.concatenate([z[np.isfinite(z) & (z > 0)] for z in cells] or [np.empty(0)])
    lo, hi = (np.log10(finite.min()), np.log10(finite.max())) if finite.size else (0.0, 1.0)
    norm = Normalize(lo, hi if hi > lo else lo + 1.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    ncols = min(_PANELS_PER_ROW, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure((0.6 + 3.0 * ncols, 0.9 + 2.7 * nrows), ncols, nrows)
    fig.subplots_adjust(right=0.86, left=0.1)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    image = None
    for ax, (values, _), z in zip(axes.flat, panels, cells, strict=False):
        with np.errstate(divide="ignore", invalid="ignore"):
            logz = np.where(np.isfinite(z) & (z > 0), np.log10(z), np.nan)
        image = ax.imshow(
            np.ma.masked_invalid(logz), cmap=cmap, norm=norm, aspect="auto", origin="lower"
        )
        for i in range(len(ys)):
            for j in range(len(xs)):
                _cell_text(ax, i, j, z[i, j], logz[i, j], norm)
        ax.set_xticks(range(len(xs)), [fmt(v) for v in xs], fontsize=7)
        ax.set_yticks(range(len(ys)), [fmt(v) for v in ys], fontsize=7)
        ax.set_xlabel(x_axis, fontsize=8)
        ax.set_ylabel(y_axis, fontsize=8)
        ax.set_title(label(values, ("width",)), fontsize=9)
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes.flat[: len(panels)]), fraction=0.04, pad=0.03)
        bar.set_label("log10 final loss (median over seeds)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def _cell_text(ax: Axes, i: int, j: int, value: float, logv: float, norm: Normalize) -> None:
    """A cell's number, or the word for a diverged one (grey)."""
    if math.isnan(value):
        return  # not in the grid: blank
    if not math.isfinite(value):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.75"))
        ax.text(j, i, "diverged", ha="center", va="center", fontsize=6)
        return
    dark = math.isfinite(logv) and norm(logv) < 0.5
    ax.text(j, i, f"{value:.1e}", ha="center", va="center", fontsize=6, color="w" if dark else "k")


_CAPTIONS = {
    "final_loss_vs_width": "Final training loss against width (median over seeds; bars: the "
    "seeds' range; x: half or more of the seeds diverged), one line per setting of the grid, "
    "one panel per optimizer.",
    "kernel_error_vs_width": "Error of the H(0) kernel prediction, max_k |L_net - L_pred| / L_0 "
    "up to the step where the prediction reaches 1e-4 L_0 (docs/mathematics.md §6), against "
    "width: median over seeds with their range, one line per setting.",
    "final_loss_map": "Final training loss over two axes of the grid (median over seeds; "
    "colour: log10), one panel per width; grey: diverged, blank: not in the grid.",
}


def _abs_err(a: RunAnalysis) -> float | None:
    return a.abs_err


def grid_plan(analyses: Sequence[RunAnalysis]) -> list[PlannedFigure]:
    """The generic figures of the grid's runs (module docstring), in drawing order."""
    runs = grid_runs(analyses)
    if not runs:
        return []
    eids = ", ".join(sorted({a.record.experiment for a in runs}))
    out: list[PlannedFigure] = []
    if len({a.width for a in runs}) >= 2:
        title = f"Final loss vs width ({eids})"
        out.append(
            PlannedFigure(
                f"{GRID}_final_loss_vs_width",
                f"{eids}: {_CAPTIONS['final_loss_vs_width']}",
                lambda: value_vs_width_figure(
                    runs, _final, "training loss at the last step", title
                ),
            )
        )
        with_pred = [a for a in runs if a.abs_err is not None]
        if len({a.width for a in with_pred}) >= 2:
            out.append(
                PlannedFigure(
                    f"{GRID}_kernel_error_vs_width",
                    f"{eids}: {_CAPTIONS['kernel_error_vs_width']}",
                    lambda: value_vs_width_figure(
                        with_pred,
                        _abs_err,
                        "max |L_net - L_pred| / L_0",
                        f"Kernel-prediction error vs width ({eids})",
                    ),
                )
            )
    for values, group in group_runs(runs, ("optimizer",)):
        out += _maps(str(values["optimizer"]), group, eids)
    return out


def _final(a: RunAnalysis) -> float:
    return final_losses([a])[0]


def _maps(optimizer: str, runs: list[RunAnalysis], eids: str) -> list[PlannedFigure]:
    """The heat maps of one optimizer's runs: none unless two of its axes vary."""
    axes = varying(runs, exclude=_NOT_LINES)
    if len(axes) < 2:
        return []
    y_axis, x_axis, rest = axes[0], axes[1], axes[2:]
    every = group_runs(runs, rest)
    settings = every[:MAX_MAPS]
    capped = f" (the first {MAX_MAPS} of {len(every)} settings)" if len(every) > MAX_MAPS else ""
    out = []
    for i, (values, group) in enumerate(settings, start=1):
        extra = label(values, rest)
        name = f"{GRID}_final_loss_map_{optimizer}" + (f"_{i}" if len(settings) > 1 else "")
        title = f"{optimizer}: final loss over {y_axis} x {x_axis}" + (
            f" ({extra})" if extra else ""
        )
        out.append(
            PlannedFigure(
                name,
                f"{eids}, {optimizer}{', ' + extra if extra else ''}: "
                f"{_CAPTIONS['final_loss_map']}{capped}",
                partial(final_loss_map_figure, group, y_axis, x_axis, title),
            )
        )
    return out
