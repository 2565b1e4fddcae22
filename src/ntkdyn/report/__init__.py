"""The report of a results directory: ``build_report(DIR)`` reads ``DIR/results.sqlite`` only.

:mod:`.build` writes the figures, ``report.html`` and ``summary.json``; :mod:`.summary`
analyses the runs, :mod:`.claims` (only the claims whose runs the store holds) and
:mod:`.findings` judge them, :mod:`.plots` draws them (:mod:`.plots_grid`: the figures of a
user's own grid, from what varies in the stored configs).
"""

from __future__ import annotations

from ._finding import Finding
from .build import analyze_store, build_report
from .claims import Claim
from .plots import NamedFigure
from .summary import RunAnalysis

__all__ = [
    "Claim",
    "Finding",
    "NamedFigure",
    "RunAnalysis",
    "analyze_store",
    "build_report",
]
