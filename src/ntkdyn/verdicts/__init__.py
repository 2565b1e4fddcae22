"""Verdicts that can fail: pure judging functions, their aggregation over seeds and widths,
and the pre-registered tolerances (derived in docs/verdicts.md).

``judge_*`` take ``(losses, KernelModel, rule)`` and return a :class:`RunJudgment`;
``width_limit`` and ``at_one_width`` turn ``(width, judgment)`` pairs into one verdict. The
report's claims (``ntkdyn.report.claims``) are built from these and nothing else, so every
verdict can be reproduced, and falsified, on curves directly from Python.
"""

from .judge import RunJudgment, judge_crossover, judge_power_law, judge_rate, rate_sensitivity
from .limits import Aggregate, WidthRow, at_one_width, combine, width_limit
from .model import KernelModel, Window, envelope_exponent, envelope_slope, expected_power_law

__all__ = [
    "Aggregate",
    "KernelModel",
    "RunJudgment",
    "WidthRow",
    "Window",
    "at_one_width",
    "combine",
    "envelope_exponent",
    "envelope_slope",
    "expected_power_law",
    "judge_crossover",
    "judge_power_law",
    "judge_rate",
    "rate_sensitivity",
    "width_limit",
]
