"""Build the report of a results directory from ``DIR/results.sqlite`` alone (it never trains).

:func:`analyze_store` analyses every stored run (:mod:`.summary`); :func:`build_report`
evaluates the claims C1-C7 (:mod:`.claims`) and the notebook findings (:mod:`.findings`),
draws the figures (:mod:`.plots`) and writes, each atomically (``ntkdyn._io``):

* ``DIR/figures/<experiment>_<figure>.png`` and ``.pdf``;
* ``DIR/report.html``: self-contained (:mod:`.html`, which also documents the headless
  Chromium rendering check);
* ``DIR/summary.json``: byte-identical when rebuilt from the same store.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes
from .claims import evaluate_claims
from .findings import evaluate_findings
from .html import render_html
from .plots import NamedFigure, figures_for
from .summary import RunAnalysis, analyze_run, build_summary, experiment_info, write_summary

__all__ = ["analyze_store", "build_report"]


def analyze_store(
    out_dir: str | os.PathLike[str],
) -> tuple[list[RunAnalysis], Any, dict[str, Any], dict[str, Any]]:
    """Read a results directory: ``(analyses, kernels, meta, experiments)``."""
    from ..experiments.store import STORE_NAME, Store

    out_dir = Path(out_dir)
    if not (out_dir / STORE_NAME).is_file():
        raise ValueError(f"`DIR` {str(out_dir)!r} holds no {STORE_NAME} (run a sweep first)")
    with Store(out_dir, readonly=True, check=True) as store:  # corrupted: one line
        runs, kernels, meta = store.load_runs(), store.kernels(), store.meta()
    experiments = experiment_info(meta)
    analyses = [
        analyze_run(r, experiments.get(r.experiment, {}).get("kind", "curves"), kernels)
        for r in runs
    ]
    return analyses, kernels, meta, experiments


def _save(fig: NamedFigure, folder: Path) -> bytes:
    """Write PNG and PDF (no timestamps in the PDF); return the PNG bytes for the HTML."""
    png = io.BytesIO()
    fig.figure.savefig(png, format="png", metadata={"Software": None})
    pdf = io.BytesIO()
    fig.figure.savefig(
        pdf, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None}
    )
    atomic_write_bytes(folder / f"{fig.name}.png", png.getvalue())
    atomic_write_bytes(folder / f"{fig.name}.pdf", pdf.getvalue())
    return png.getvalue()


def build_report(out_dir: str | os.PathLike[str], *, figures: bool = True) -> dict[str, Any]:
    """Write figures, ``report.html`` and ``summary.json`` for ``out_dir``; return the summary.

    ``figures=False`` writes only summary.json (it never depends on the figures). Raises
    ValueError (naming ``DIR``) when the directory holds no results store.
    """
    out_dir = Path(out_dir)
    analyses, kernels, meta, experiments = analyze_store(out_dir)
    claims = evaluate_claims(analyses)
    findings = evaluate_findings(analyses)
    summary = build_summary(analyses, claims, findings, kernels, meta)
    if not figures:
        write_summary(out_dir / "summary.json", summary)
        return summary
    folder = out_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    shown = []
    for fig in figures_for(analyses, experiments, kernels, claims):
        shown.append((fig.name, _save(fig, folder), fig.caption))
        fig.figure.clear()
    page = render_html(summary, shown, experiments)
    atomic_write_bytes(out_dir / "report.html", page.encode("utf-8"))
    write_summary(out_dir / "summary.json", summary)
    return summary
