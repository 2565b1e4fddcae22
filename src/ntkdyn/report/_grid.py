"""What varies in a user's grid: the axes of the stored run configs, their labels and their order.

A run's *axes* are read from its stored config and rule, never from its id: the optimizer, its
``lr`` and parameters (``beta``, ``r``, ``b1``, ...), the data settings (``data``, ``mode``,
``n``, ``data_seed``, ``loss``, ``steps``, ``dtype``), the width and the seed. An axis *varies*
when the runs hold more than one value of it. Labels show values (``lr = 0.5, beta = 0.9``,
``m = 1024``) and every ordering is by value: numbers numerically, then strings, a missing
value (a parameter the optimizer lacks) first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from ..experiments._table import HYPERPARAMETERS
from ._run_stats import final_loss
from .summary import RunAnalysis

__all__ = [
    "AXES",
    "GRID",
    "SEED_AXES",
    "axis_values",
    "final_losses",
    "fmt",
    "grid_runs",
    "group_runs",
    "label",
    "seed_summary",
    "sort_key",
    "varying",
]

#: The optimizer, its hyperparameters (one per rule parameter, ``_table.HYPERPARAMETERS``),
#: the data settings, then width and seed: the order of axes in labels.
AXES: tuple[str, ...] = (
    "optimizer",
    *HYPERPARAMETERS,
    "data",
    "mode",
    "depth",
    "n",
    "data_seed",
    "loss",
    "steps",
    "dtype",
    "width",
    "seed",
)
#: Axes a figure's x position or statistics take care of (never a line or a legend entry).
SEED_AXES = ("width", "seed")
#: Experiment kinds with figures of their own (claims and notebook findings); every other
#: kind (``curves``, the default, or a user's tag) belongs to the generic grid.
_OWN_FIGURES = frozenset(
    {"theory-ladder", "theory-curves", "theory-point", "E1", "E2", "E3", "E4", "E5", "E6"}
)
#: The name prefix of the generic grid's figures.
GRID = "grid"
_SHORT = {"width": "m"}


def grid_runs(analyses: Iterable[RunAnalysis]) -> list[RunAnalysis]:
    """The runs of experiments whose kind has no figures of its own (module docstring)."""
    return [a for a in analyses if a.kind not in _OWN_FIGURES]


def axis_values(a: RunAnalysis) -> dict[str, object]:
    """Every axis of one run (None where the run has no such value, e.g. GD's ``beta``)."""
    cfg = a.config
    params = {"lr": a.rule.lr, **a.rule.params}
    out: dict[str, object] = {"optimizer": a.rule.name}
    out.update({p: params.get(p) for p in HYPERPARAMETERS})
    keys = ("data", "mode", "depth", "n", "data_seed", "loss", "steps")  # depth: deep runs only
    out.update({k: cfg.get(k) for k in keys})
    out.update({"dtype": cfg.get("dtype"), "width": a.width, "seed": a.seed})
    return out


def _value_key(v: object) -> tuple:
    """Sort key of one value: missing first, then numbers by value, then text."""
    if v is None:
        return (0, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, float(v), "")
    return (2, 0.0, str(v))


def sort_key(values: dict[str, object], axes: Sequence[str]) -> tuple:
    """Order of settings by the values of ``axes``, in the order given."""
    return tuple(_value_key(values.get(k)) for k in axes)


def varying(runs: Iterable[RunAnalysis], exclude: Sequence[str] = SEED_AXES) -> list[str]:
    """The axes (in :data:`AXES` order) with more than one value among ``runs``."""
    seen: defaultdict[str, set] = defaultdict(set)
    for a in runs:
        for k, v in axis_values(a).items():
            seen[k].add(v)
    return [k for k in AXES if k not in exclude and len(seen[k]) > 1]


def fmt(v: object) -> str:
    """A value as a label shows it: numbers to 4 significant digits."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def label(values: dict[str, object], axes: Sequence[str]) -> str:
    """``lr = 0.5, beta = 0.9`` (``m = 1024`` for the width, the optimizer's name bare);
    axes without a value for this setting are left out."""
    parts = []
    for k in axes:
        v = values.get(k)
        if v is None:
            continue
        parts.append(str(v) if k == "optimizer" else f"{_SHORT.get(k, k)} = {fmt(v)}")
    return ", ".join(parts)


def group_runs(
    runs: Iterable[RunAnalysis], axes: Sequence[str]
) -> list[tuple[dict[str, object], list[RunAnalysis]]]:
    """Runs grouped by their values on ``axes``, groups sorted by value: ``(values, runs)``."""
    groups: dict[tuple, list[RunAnalysis]] = {}
    values: dict[tuple, dict[str, object]] = {}
    for a in runs:
        v = axis_values(a)
        key = tuple(v[k] for k in axes)
        groups.setdefault(key, []).append(a)
        values[key] = {k: v[k] for k in axes}
    order = sorted(groups, key=lambda key: sort_key(values[key], axes))
    return [(values[key], groups[key]) for key in order]


def seed_summary(values: Sequence[float]) -> tuple[float, float, float]:
    """``(median, low, high)`` over seeds; a diverged run counts as +inf (median inf when
    half or more diverged), the range covers the finite values only (NaN if none)."""
    arr = np.asarray(values, dtype=float)
    med = float(np.median(arr)) if arr.size else math.nan
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return med, math.nan, math.nan
    return med, float(finite.min()), float(finite.max())


def final_losses(runs: Iterable[RunAnalysis]) -> list[float]:
    """The final loss of each run (+inf if it diverged)."""
    return [final_loss(a) for a in runs]
