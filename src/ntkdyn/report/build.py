"""Build the report of a results directory from ``DIR/results.sqlite`` alone (it never trains).

:func:`analyze_store` analyses every stored run (:mod:`.summary`); :func:`build_report`
evaluates those of the claims C1-C7 whose runs the store holds (:mod:`.claims`; the others are
listed as left out) and the notebook findings (:mod:`.findings`), draws the figures
(:mod:`.plots`, the generic ones of a user's grid in :mod:`.plots_grid`) and writes, each
atomically (``ntkdyn._io``):

* ``DIR/figures/<experiment>_<figure>.png`` and ``.pdf``;
* ``DIR/report.html``: self-contained (:mod:`.html`, which also documents the headless
  Chromium rendering check);
* ``DIR/summary.json``: byte-identical when rebuilt from the same store.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .._io import atomic_write_bytes
from .claims import evaluate_claims, omitted_claims, omitted_sentence
from .findings import evaluate_findings
from .html import render_html
from .plots import NamedFigure, PlannedFigure, figure_plan
from .summary import RunAnalysis, analyze_run, build_summary, experiment_info, write_summary

__all__ = ["analyze_store", "build_report"]


def analyze_store(
    out_dir: str | os.PathLike[str], *, say: Callable[[str], None] | None = None
) -> tuple[list[RunAnalysis], Any, dict[str, Any], dict[str, Any]]:
    """Read a results directory: ``(analyses, kernels, meta, experiments)``.

    ``say(line)``, if given, hears ``analysing N runs`` before the analysis.
    """
    from ..experiments.store import STORE_NAME, Store

    out_dir = Path(out_dir)
    if not (out_dir / STORE_NAME).is_file():
        raise ValueError(f"`DIR` {str(out_dir)!r} holds no {STORE_NAME} (run a sweep first)")
    with Store(out_dir, readonly=True, check=True) as store:  # corrupted: one line
        runs, kernels, meta = store.load_runs(), store.kernels(), store.meta()
    if say is not None:
        say(f"analysing {len(runs)} runs")
    experiments = experiment_info(meta)
    analyses = [
        analyze_run(r, experiments.get(r.experiment, {}).get("kind", "curves"), kernels)
        for r in runs
    ]
    return analyses, kernels, meta, experiments


def _save(fig: NamedFigure | PlannedFigure, figure: Figure, folder: Path) -> bytes:
    """Write PNG and PDF (no timestamps in the PDF); return the PNG bytes for the HTML."""
    png = io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    pdf = io.BytesIO()
    figure.savefig(
        pdf, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None}
    )
    atomic_write_bytes(folder / f"{fig.name}.png", png.getvalue())
    atomic_write_bytes(folder / f"{fig.name}.pdf", pdf.getvalue())
    return png.getvalue()


def _silent(line: str) -> None:
    """The default ``say``: nothing is printed."""


def build_report(
    out_dir: str | os.PathLike[str],
    *,
    figures: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write figures, ``report.html`` and ``summary.json`` for ``out_dir``; return the summary.

    Args:
        out_dir: the results directory (``DIR/results.sqlite``).
        figures: False writes only summary.json (it never depends on the figures).
        say: called with one short progress line per stage (``analysing 36 runs``,
            ``claims``, ``findings``, ``figures 3/9``, ``writing report.html``,
            ``writing summary.json``); None (the default) is silent.

    Raises ValueError (naming ``DIR``) when the directory holds no results store.
    """
    tell = say or _silent
    out_dir = Path(out_dir)
    analyses, kernels, meta, experiments = analyze_store(out_dir, say=tell)
    tell("claims")
    claims = evaluate_claims(analyses)
    omitted = omitted_claims(analyses)
    tell("findings")
    findings = evaluate_findings(analyses)
    note = omitted_sentence(omitted)
    summary = build_summary(analyses, claims, findings, kernels, meta, omitted=omitted, note=note)
    if not figures:
        tell("writing summary.json")
        write_summary(out_dir / "summary.json", summary)
        return summary
    folder = out_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    shown = []
    plan = figure_plan(analyses, experiments, kernels, claims)
    for i, planned in enumerate(plan, start=1):
        tell(f"figures {i}/{len(plan)}")
        figure = planned.draw()
        shown.append((planned.name, _save(planned, figure, folder), planned.caption))
        figure.clear()
    tell("writing report.html")
    page = render_html(summary, shown, experiments)
    atomic_write_bytes(out_dir / "report.html", page.encode("utf-8"))
    tell("writing summary.json")
    write_summary(out_dir / "summary.json", summary)
    return summary
