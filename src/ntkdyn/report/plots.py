"""Report figures: each function takes analysed runs and returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas, no pyplot), so no
global backend is switched, nothing is ever shown and nothing is trained: every curve comes from
the store (measured losses, the exact discrete kernel predictions with ``H(0)`` and ``H^inf``,
docs/mathematics.md §3, and the limiting ODE, docs/mathematics.md §4). :func:`figures_for` picks the figures of each
experiment from its ``kind`` tag and names them after the experiment; the figures themselves
live in :mod:`.plots_paper` (the notebook's E1-E6) and :mod:`.plots_theory` (kernel overlays,
rates, crossover, error vs width, kernel drift) and are re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from matplotlib.figure import Figure

from ..experiments.records import KernelRecord
from ..experiments.runs import data_key
from ..optim import Family
from .claims import Claim
from .plots_grid import PlannedFigure, grid_curves_figure, grid_plan
from .plots_paper import (
    curves_figure,
    hb_semilog_figure,
    hom_figure,
    loss_vs_width_figure,
    nag_loglog_figure,
)
from .plots_theory import (
    crossover_figure,
    deviation_figure,
    kernel_drift_figure,
    overlay_figure,
    rates_figure,
    width_error_figure,
)
from .summary import RunAnalysis

__all__ = [
    "NamedFigure",
    "PlannedFigure",
    "crossover_figure",
    "curves_figure",
    "deviation_figure",
    "figure_plan",
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


@dataclass(frozen=True, eq=False)
class NamedFigure:
    """A figure with the file stem it is saved under and its caption."""

    name: str
    figure: Figure
    caption: str


# --------------------------------------------------------------------------------------------
# Dispatch.

_CAPTIONS = {
    "overlay": "Measured loss of each network (black) against the exact discrete kernel "
    "prediction with H(0) (dashed) and H^inf (dotted), and the limiting ODE "
    "(dash-dot; docs/mathematics.md §3-4).",
    "nag_loglog": "Scheduled Nesterov, loss vs epoch on log-log axes with GD (docs/paper.md "
    "NAG_Epoch); dotted lines are k^-r guides.",
    "crossover": "C7: k^r E_k / L_0 of scheduled Nesterov (E: envelope of L). A pure k^-r law "
    "would be flat; at a fixed step it falls slowly before the crossover k = r/h0 "
    "(dotted) and like (1-h0)^k after it (dashed).",
    "rates": "Point tests: each network's per-step rate vs its H(0) kernel model's on the same "
    "window (dots; grey: the point tolerance) and the rule's asymptotic -log q "
    "(open squares).",
    "deviation_vs_width": "The claim's verdict data: |deviation| of every run from its H(0) "
    "kernel model (dots), the median over seeds (line), the tolerance "
    "(dashed) and m^-1/2, m^-1/4 guides (dotted).",
    "higher_order": "Higher-order momentum with GD and HB (docs/paper.md HM).",
    "error_vs_width": "C6: prediction error max|L_net - L_pred|/L_0 vs width (median over "
    "seeds), fitted slopes (dashed) and a width^-1/2 guide (dotted).",
    "kernel_drift": "lambda_min(H(t)) during training per width, and the final weight and "
    "kernel movement vs width.",
    "loss_vs_epoch": "GD, loss vs epoch (docs/paper.md E1).",
    "hb_epoch": "Heavy Ball, loss vs epoch, semilog (docs/paper.md HB_Epoch).",
    "loss_vs_width": "Loss at the last epoch vs width (docs/paper.md HB_Width / NAG_Width); "
    "mean over seeds, seeds as dots.",
    "curves": "Loss vs step of every run.",
}


def figure_plan(
    analyses: Sequence[RunAnalysis],
    info: Mapping[str, Mapping[str, object]] | None = None,
    kernels: Mapping[str, KernelRecord] | None = None,
    claims: Sequence[Claim] = (),
) -> list[PlannedFigure]:
    """Every figure of a report, not yet drawn (so a caller can count them): per experiment,
    those of its kind (module docstring); the generic figures of a user's grid
    (:mod:`.plots_grid`); then one figure per claim judged as a limit in width, drawn from the
    claim's own numbers.

    ``info``: experiment id -> its config table (title); ``kernels``: data key -> the stored
    H^inf spectrum (for the lambda_0 reference line); ``claims``: the evaluated claims.
    """
    info, kernels = info or {}, kernels or {}
    groups = defaultdict(list)
    for a in analyses:
        groups[a.record.experiment].append(a)
    out: list[PlannedFigure] = []
    for eid, runs in sorted(groups.items()):
        name = info.get(eid, {}).get("title") or eid
        for what, draw in _experiment_plan(runs, name, kernels):
            out.append(PlannedFigure(f"{eid}_{what}", f"{name}: {_CAPTIONS[what]}", draw))
    out += grid_plan(analyses)
    ladder = [a for a in analyses if a.kind == "theory-ladder"]
    if any(a.abs_err is not None for a in ladder):
        title = "C6: prediction error vs width (width ladders)"
        out.append(
            PlannedFigure(
                "C6_error_vs_width",
                f"C6: {_CAPTIONS['error_vs_width']}",
                lambda: width_error_figure(ladder, title),
            )
        )
    for claim in claims:
        if f"{claim.id}_deviation_vs_width" in claim.figures and any(
            abs(r.get("deviation") or 0.0) > 0 for r in claim.runs
        ):  # a log axis needs one positive deviation (exact kernel curves have none)
            out.append(
                PlannedFigure(
                    f"{claim.id}_deviation_vs_width",
                    f"{claim.id}: {_CAPTIONS['deviation_vs_width']}",
                    partial(deviation_figure, claim),
                )
            )
    return out


def figures_for(
    analyses: Sequence[RunAnalysis],
    info: Mapping[str, Mapping[str, object]] | None = None,
    kernels: Mapping[str, KernelRecord] | None = None,
    claims: Sequence[Claim] = (),
) -> list[NamedFigure]:
    """Every figure of :func:`figure_plan`, drawn."""
    return [
        NamedFigure(p.name, p.draw(), p.caption)
        for p in figure_plan(analyses, info, kernels, claims)
    ]


def _experiment_plan(
    runs: list[RunAnalysis], name: object, kernels: Mapping[str, KernelRecord]
) -> list[tuple[str, Callable[[], Figure]]]:
    """``(what, draw)`` of one experiment's figures, chosen by its kind."""
    kind = runs[0].kind
    # "$" would start matplotlib mathtext (a bad command raises at draw time): escape it
    title = str(name).replace("$", r"\$")
    bessel = any(a.rule.family is Family.NESTEROV_SCHEDULED for a in runs)
    plan: list[tuple[str, Callable[[], Figure]]] = []
    if kind in ("theory-ladder", "theory-curves"):
        plan.append(("overlay", lambda: overlay_figure(runs, title)))
        if bessel:
            plan.append(("nag_loglog", lambda: nag_loglog_figure(runs, title)))
            plan.append(("crossover", lambda: crossover_figure(runs, title)))
        if kind == "theory-ladder" and any(a.record.diagnostics for a in runs):
            k = kernels.get(data_key(runs[0].config))
            lam0 = None if k is None else float(k.lambda_min)
            plan.append(("kernel_drift", lambda: kernel_drift_figure(runs, title, lam0)))
    elif kind == "theory-point":
        plan.append(("overlay", lambda: overlay_figure(runs, title)))
        plan.append(("rates", lambda: rates_figure(runs, title)))
    elif kind == "E1":
        plan.append(("loss_vs_epoch", lambda: curves_figure(runs, title)))
    elif kind in ("E2", "E4"):
        key = "beta" if kind == "E2" else "r"
        plan.append(("loss_vs_width", lambda: loss_vs_width_figure(runs, title, key)))
    elif kind == "E3":
        plan.append(("hb_epoch", lambda: hb_semilog_figure(runs, title)))
    elif kind == "E5":
        plan.append(("nag_loglog", lambda: nag_loglog_figure(runs, title)))
    elif kind == "E6":
        plan.append(("higher_order", lambda: hom_figure(runs, title)))
    elif any(a.record.pred_discrete is not None for a in runs):
        plan.append(("overlay", lambda: overlay_figure(runs, title)))
    else:
        plan.append(("curves", lambda: grid_curves_figure(runs, title)))
    return plan
