"""Verdicts that can fail: pure judging functions, their aggregation over seeds and widths,
and the pre-registered tolerances (derived in docs/verdicts.md).

``judge_*`` take ``(losses, kernel model, rule)`` (a :class:`ntkdyn.prediction.KernelModel`
with ``lambda_min > 0``) and return a :class:`RunJudgment`; ``width_limit`` and ``at_one_width`` turn ``(width, judgment)`` pairs into one verdict. The
report's claims (``ntkdyn.report.claims``) are built from these and nothing else, so every
verdict can be reproduced, and falsified, on curves directly from Python.
"""

from .judge import RunJudgment, judge_crossover, judge_power_law, judge_rate
from .limits import Aggregate, WidthRow, at_one_width, combine, width_limit
from .model import Window, envelope_exponent, envelope_slope, expected_power_law, rate_sensitivity

__all__ = [
    "Aggregate",
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
