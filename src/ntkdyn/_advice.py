"""The records of ``ntkdyn.advisor`` (:class:`Candidate`, :class:`Advice`) and how an advice is
shown: its text table, its figure, its dict.

The table has one row per candidate, ranked ones first: rank (``-`` when marked or not
reaching the target), family, hyperparameters, ``lr_max``, margin, predicted steps, expected
error and the validity summary; under it, one line per unranked candidate with its reason.
The figure draws every candidate's predicted curve (log loss against step) with the target.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from .data import Dataset
    from .linearized import Linearized
    from .optim.rules import LinearRule
    from .prediction import KernelModel
    from .validity import ValidityRecord

__all__ = ["Advice", "Candidate", "advice_dict", "draw_figure", "table_text"]

#: Points per curve in the figure at most (longer curves are thinned, every step kept when
#: shorter).
_FIGURE_POINTS = 2000

_HEADER = ("rank", "family", "hyperparameters", "lr_max", "margin", "steps", "exp. error", "model")


@dataclass(frozen=True, eq=False)
class Candidate:
    """One family's recommendation (docs/advise.md).

    Attributes:
        family: the rule name of its family (``advisor.FAMILIES``): ``"gd"``, ``"hb"``,
            ``"nesterov-sc"``, ``"nesterov"`` (scheduled, by ``r``) or ``"hom"``.
        rule: the recommended rule; ``rule.spec`` is its spec string.
        lr_max: the largest stable lr at the rule's momentum parameters (for logistic and
            cross-entropy, on the loss's curvature bound).
        margin: ``1 - lr / lr_max`` (at least ``STEP_SAFETY``).
        predicted_steps: ``steps_to_target`` of ``curve``; None when beyond the budget.
        curve: predicted losses ``L_0..L_N``, ``N >= predicted_steps`` (or the budget).
        expected_error: relative steps-to-target error expected from the probe (None: no probe
            or no steps to be off; inf: a kernel off by the expected drift misses the target).
        validity: the probe's record (None at infinite width or without a probe).
        drift: the probe's kernel drift extrapolated to ``predicted_steps`` (None: no probe).
        holds: False when the kernel model is not expected to hold: marked, never ranked.
        rank: 1 = fastest among the holding candidates that reach the target; else None.
        reason: why the candidate is not ranked (None when ranked).
    """

    family: str
    rule: LinearRule
    lr_max: float
    margin: float
    predicted_steps: int | None
    curve: np.ndarray
    expected_error: float | None
    validity: ValidityRecord | None
    holds: bool
    rank: int | None
    drift: float | None = None
    reason: str | None = None


@dataclass(frozen=True, eq=False)
class Advice:
    """What :func:`advise` found.

    Attributes:
        candidates: the ranked candidates first (by rank), then the others.
        target, budget, loss: as asked (``budget`` resolved to its default).
        kernel: the kernel model searched on: a :class:`~ntkdyn.prediction.KernelModel` (the
            effective kernel's eigenvalues and the residual's modes) for squared losses, the
            :class:`~ntkdyn.linearized.Linearized` for the others.
        model: the network at initialisation (None at infinite width).
        data: the data set.
        linearized: the linearised model (built from ``H^inf`` at infinite width), for
            predictions of other rules and for validity records of training runs.
        timings: seconds per stage (``kernel``, ``search <family>``, ``probe <family>``,
            ``total``).
    """

    candidates: tuple[Candidate, ...]
    target: float
    budget: int
    loss: str
    kernel: KernelModel | Linearized
    model: nn.Module | None
    data: Dataset
    linearized: Linearized | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def best(self) -> Candidate | None:
        """The rank-1 candidate, or None when no candidate is ranked."""
        ranked = [c for c in self.candidates if c.rank == 1]
        return ranked[0] if ranked else None

    def table(self) -> str:
        """An aligned text table: rank, family, hyperparameters, lr_max, margin, predicted
        steps, expected error and the validity summary (or why a candidate is marked)."""
        return table_text(self)

    def figure(self, path: str | Path) -> Path:
        """Draw the predicted curves of all candidates (log loss against step) into ``path``
        (the format from its suffix, e.g. ``.png``, ``.svg``, ``.pdf``); returns the path."""
        return draw_figure(self, Path(path))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite numbers as the strings ``"inf"`` / ``"nan"``)."""
        return advice_dict(self)


def _params(c: Candidate) -> str:
    values = {"lr": c.rule.lr, **c.rule.params}
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


def _error(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf"
    return f"{100 * value:.1f}%"


def _model(c: Candidate) -> str:
    if c.validity is None:
        return "no probe"
    drift = "" if c.drift is None else f", drift {_error(c.drift)} at target"
    return ("holds" if c.holds else "MARKED") + drift


def table_text(advice: Advice) -> str:
    """The aligned table (module docstring)."""
    rows = [_HEADER]
    for c in advice.candidates:
        rows.append(
            (
                str(c.rank) if c.rank is not None else "-",
                c.family,
                _params(c),
                f"{c.lr_max:.4g}",
                f"{100 * c.margin:.1f}%",
                str(c.predicted_steps) if c.predicted_steps is not None else f">{advice.budget}",
                _error(c.expected_error),
                _model(c),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    head = (
        f"steps to {advice.target:g} L0 ({advice.loss} loss, budget {advice.budget} steps), "
        f"predicted from the kernel at initialisation"
    )
    notes = [f"{c.family}: {c.reason}" for c in advice.candidates if c.reason is not None]
    return "\n".join([head, *lines, *notes])


def draw_figure(advice: Advice, path: Path) -> Path:
    """The predicted curves of all candidates, ``L_k / L_0`` on a log axis (module docstring)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ._io import atomic_write_bytes

    fig = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for c in advice.candidates:
        curve = np.asarray(c.curve, dtype=np.float64)
        steps = np.arange(curve.size)
        if curve.size > _FIGURE_POINTS:
            keep = np.unique(np.linspace(0, curve.size - 1, _FIGURE_POINTS).astype(np.int64))
            steps, curve = steps[keep], curve[keep]
        shown = np.where(np.isfinite(curve) & (curve > 0), curve / curve[0], np.nan)
        label = f"{c.rank or '-'} {c.family}: {c.predicted_steps or '>' + str(advice.budget)}"
        style = "-" if c.holds else ":"
        ax.semilogy(steps, shown, style, label=label + ("" if c.holds else " (marked)"))
    ax.axhline(advice.target, color="0.4", lw=0.8, ls="--", label=f"target {advice.target:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("predicted loss / L0")
    ax.set_title(f"{advice.data.name}: predicted curves of the advised rules", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _number(value: float | None) -> float | str | None:
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _candidate(c: Candidate) -> dict[str, Any]:
    record = c.validity
    return {
        "rank": c.rank,
        "family": c.family,
        "rule": c.rule.spec,
        "lr": c.rule.lr,
        "params": {k: float(v) for k, v in c.rule.params.items()},
        "lr_max": _number(c.lr_max),
        "margin": _number(c.margin),
        "predicted_steps": c.predicted_steps,
        "expected_error": _number(c.expected_error),
        "drift_at_target": _number(c.drift),
        "holds": c.holds,
        "reason": c.reason,
        "validity": None
        if record is None
        else {"holds": record.holds, "summary": record.summary(), "steps": record.steps},
        "curve": [_number(v) for v in np.asarray(c.curve, dtype=np.float64).tolist()],
    }


def advice_dict(advice: Advice) -> dict[str, Any]:
    """A JSON-safe dict of ``advice`` (non-finite numbers as strings)."""
    best = advice.best()
    return {
        "data": advice.data.name,
        "n": advice.data.n,
        "loss": advice.loss,
        "target": advice.target,
        "budget": advice.budget,
        "network": None if advice.model is None else type(advice.model).__name__,
        "best": None if best is None else best.family,
        "candidates": [_candidate(c) for c in advice.candidates],
        "timings": {k: float(v) for k, v in advice.timings.items()},
    }
