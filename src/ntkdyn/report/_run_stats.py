"""Per-run and per-group numbers of the notebook findings (:mod:`.findings`): the final loss,
the curve with non-finite losses as +inf, seed statistics, h_max and the stable limit, and the
words a table cell shows."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

import numpy as np

from ..optim import Family, Rule
from .summary import RunAnalysis

__all__ = [
    "cell",
    "final_loss",
    "finite_curve",
    "group_by",
    "mean_hmax",
    "seed_stats",
    "stable_limit",
]

K = TypeVar("K", bound=Hashable)


def final_loss(a: RunAnalysis) -> float:
    """Loss at the last epoch; +inf for a diverged run (it is never the lowest)."""
    return float(a.record.final_loss) if a.ok and a.record.final_loss is not None else math.inf


def finite_curve(a: RunAnalysis) -> np.ndarray:
    """The loss curve with non-finite values replaced by +inf."""
    L = np.asarray(a.record.losses, dtype=float)
    return np.where(np.isfinite(L), L, math.inf)


def runs_of(runs: Iterable[RunAnalysis], *families: Family) -> list[RunAnalysis]:
    """The runs whose rule belongs to one of ``families``."""
    return [a for a in runs if a.rule.family in families]


def group_by(
    runs: Iterable[RunAnalysis], key: Callable[[RunAnalysis], K]
) -> dict[K, list[RunAnalysis]]:
    """The runs grouped by ``key``, groups sorted by key."""
    groups: dict[K, list[RunAnalysis]] = defaultdict(list)
    for a in runs:
        groups[key(a)].append(a)
    return dict(sorted(groups.items()))


def cell(x: float | None) -> float | str:
    """A table cell: finite floats as they are, else a word."""
    if x is None:
        return "unknown"
    return float(x) if math.isfinite(x) else ("diverged" if x > 0 else "n/a")


def mean_hmax(group: Sequence[RunAnalysis]) -> float | None:
    """Seed-mean ``h_max = lr lambda_max(K)``; None if a run lacks ``lambda_max_k``."""
    lam = [a.record.lambda_max_k for a in group]
    finite = [v for v in lam if v is not None and math.isfinite(v)]
    if len(finite) < len(lam):
        return None
    return float(np.mean([a.rule.lr * v for a, v in zip(group, finite, strict=True)]))


def stable_limit(rule: Rule) -> float | None:
    """The rule's closed-form stable ``h`` (docs/mathematics.md §3), None if it declares none."""
    value = rule.max_stable_h()
    return None if value is None else float(value)


def seed_stats(values: Iterable[float]) -> dict[str, float]:
    """Count, mean, standard error, min and max over seeds (mean +inf, SE NaN if any is not
    finite; SE NaN below two seeds)."""
    v = np.asarray(list(values), dtype=float)
    n, finite = int(v.size), bool(np.isfinite(v).all())
    se = float(np.std(v, ddof=1) / math.sqrt(n)) if n >= 2 and finite else math.nan
    mean = float(v.mean()) if finite else math.inf
    return {"n": n, "mean": mean, "se": se, "min": float(v.min()), "max": float(v.max())}
