"""Report: claims logic on synthetic stored runs (an error that shrinks with the width as
m^-1/2 or does not, and must come out supported / refuted accordingly) and the prediction-error
metrics of docs/mathematics.md §6.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from ntkdyn.report.claims import evaluate_claims
from ntkdyn.report.summary import analyze_run, prediction_error

from report_cases import _width_records


def _analyses(records, kinds):
    return [analyze_run(r, kinds[r.experiment]) for r in records]


def _claims(records, kinds):
    return {c.id: c for c in evaluate_claims(_analyses(records, kinds))}


# --------------------------------------------------------------------------------------------
# Claims.


@pytest.mark.parametrize(
    "exponent, verdict", [(-0.5, "supported"), (0.0, "refuted"), (-1.0, "refuted")]
)
def test_c6_width_slope_band(kernel, exponent, verdict):
    claims = {
        c.id: c
        for c in evaluate_claims(
            [analyze_run(r, "theory-ladder") for r in _width_records(kernel, exponent)]
        )
    }
    assert claims["C6"].verdict == verdict, claims["C6"].evidence
    slope = float(re.search(r"slope ([-+]?[\d.]+) ", claims["C6"].evidence).group(1))
    assert slope == pytest.approx(exponent, abs=0.05)


def test_prediction_error_metrics_match_math6_definitions():
    P = np.array([1.0, 0.5, 0.2, 1e-3, 1e-5, 1e-6])
    L = P + np.array([0.0, 0.01, -0.02, 1e-3, 0.5, 0.5])  # beyond the horizons: ignored
    # abs: up to the first P <= 1e-4 P0 (index 4, included), max |L - P| / P0
    assert prediction_error(L, P, horizon=1e-4, relative=False) == pytest.approx(0.5)
    assert prediction_error(L, P, horizon=1e-2, relative=False) == pytest.approx(0.02)
    # rel: relative to the prediction's suffix max, up to P <= 1e-2 P0 (index 3)
    assert prediction_error(L, P, horizon=1e-2, relative=True) == pytest.approx(1.0)
    assert prediction_error(L, None, horizon=1e-2, relative=True) is None
