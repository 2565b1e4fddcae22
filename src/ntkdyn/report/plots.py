"""Report figures: each function takes analysed runs and returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas, no pyplot), so no
global backend is switched, nothing is ever shown and nothing is trained: every curve comes from
the store (measured losses, the exact discrete kernel predictions with ``H(0)`` and ``H^inf``,
MATH.md 3, and the limiting ODE, MATH.md 4). :func:`figures_for` picks the figures of each
experiment from its ``kind`` tag and names them after the experiment; the figures themselves
live in :mod:`.plots_paper` (the notebook's E1-E6) and :mod:`.plots_theory` (kernel overlays,
rates, crossover, error vs width, kernel drift) and are re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from matplotlib.figure import Figure

from ..experiments.config import data_key
from .plots_paper import (
    curves_figure,
    hb_semilog_figure,
    hom_figure,
    loss_vs_width_figure,
    nag_loglog_figure,
)
from .plots_theory import (
    crossover_figure,
    kernel_drift_figure,
    overlay_figure,
    rates_figure,
    width_error_figure,
)

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
