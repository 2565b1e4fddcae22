"""Tests of ntkdyn.rates.fit_rate and local_exponent beyond the docs/mathematics.md §5 table:
undetermined curves and their reasons, truncation at divergence and at the floor, invariances, each
branch of the decision rule (docs/mathematics.md §5 step 6), the switch on mixed curves, input
validation, and local exponents against closed forms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkdyn.rates import fit_rate, local_exponent

# --------------------------------------------------------------------------------------------
# fit_rate: robustness, boundary checks, invariances.


@pytest.mark.parametrize(
    "losses, reason",
    [
        ([], "no points"),
        (np.zeros(100), "L_0"),
        (np.r_[np.inf, np.exp(-np.arange(99.0))], "L_0"),
        (np.r_[np.nan, np.ones(99)], "L_0"),
        (np.exp(-np.arange(5.0)), "points in the tail"),
        (np.ones(500), "does not decay"),
        (np.exp(0.01 * np.arange(500.0)), "does not decay"),  # growing: flat envelope
    ],
    ids=["empty", "all-zero", "inf-L0", "nan-L0", "too-few", "constant", "growing"],
)
def test_undetermined_with_reason(losses, reason):
    fit = fit_rate(losses)
    assert fit.kind == "undetermined" and reason in fit.reason, fit
    assert fit.rate is None and fit.exponent is None
    assert fit.statement.startswith("undetermined")


def test_divergence_and_floor_truncate_the_curve():
    k = np.arange(2000.0)
    L = np.exp(-0.01 * k)
    base = fit_rate(L[:700])
    diverged = fit_rate(np.r_[L[:700], np.inf, np.nan, 1e300])
    assert diverged.truncated_at == 700 and diverged.rate == base.rate
    # a rounding floor at 1e-32 L_0 looks like stagnation unless the curve is cut above it
    floored = np.maximum(np.exp(-0.05 * k), 1e-32)
    assert fit_rate(floored).rate == pytest.approx(-0.05, rel=1e-12)
    assert fit_rate(floored).truncated_at == int(np.ceil(20 * math.log(10) / 0.05))
    assert fit_rate(floored, floor_rel=0.0).kind != "linear"


def test_invariances():
    """A loss factor (e.g. 2/n) changes nothing; ``t -> a t`` divides the rate by a and keeps
    the exponent; default times are 0, 1, 2, ..."""
    k = np.arange(20001.0)
    L = np.exp(-1e-3 * k) * np.cos(0.05 * k) ** 2
    fit = fit_rate(L)
    assert fit_rate(0.1 * L).rate == pytest.approx(fit.rate, rel=1e-12)
    assert fit_rate(L, 0.25 * k).rate == pytest.approx(4 * fit.rate, rel=1e-12)
    assert fit_rate(L, k) == fit
    t = k + 1
    P = t**-3.0 * (1.5 + np.cos(0.05 * t))
    assert fit_rate(P, 7.0 * t).exponent == pytest.approx(fit_rate(P, t).exponent, rel=1e-9)


@pytest.mark.parametrize(
    "rho, r_exp, r_pow, kind",
    [
        (0.95, 0.1, 0.2, "linear"),
        (0.95, 0.2, 0.1, "undetermined"),  # ratio says linear, residuals say power law
        (0.52, 0.2, 0.1, "sublinear"),
        (0.52, 0.1, 0.2, "undetermined"),  # ratio says power law, residuals say linear
        (2.0, 0.1, 0.2, "undetermined"),  # |log rho| > |log rho_pow| / 2: far from both
        (0.2, 0.2, 0.1, "undetermined"),  # far from both on the other side
        (-0.5, 0.1, 0.2, "undetermined"),  # rho <= 0
        (float("nan"), 0.1, 0.2, "undetermined"),
    ],
)
def test_decision_rules(rho, r_exp, r_pow, kind):
    """docs/mathematics.md §5 step 6, each branch, with rho_pow = 0.5."""
    from ntkdyn.rates import _decide

    got, reason = _decide(rho, 0.5, r_exp, r_pow)
    assert got == kind and (reason == "") == (kind != "undetermined")


def test_mixed_curve_switches_where_the_slopes_cross():
    """``t^-3 e^{-s t}`` on t <= 4000: sublinear for small s, linear for large s; the switch
    sits where the exponential slope s meets the power law's 3 / t at the split point
    ``sqrt(t_first t_end) = 2000``, with at most a narrow undetermined band between."""
    t = np.arange(1.0, 4001.0)
    s_grid = np.geomspace(1e-5, 1e-1, 81)
    kinds = [fit_rate(t**-3.0 * np.exp(-s * t), t).kind for s in s_grid]
    first_linear = kinds.index("linear")
    last_sublinear = len(kinds) - 1 - kinds[::-1].index("sublinear")
    assert all(k == "sublinear" for k in kinds[: last_sublinear + 1])
    assert all(k == "linear" for k in kinds[first_linear:])
    assert first_linear - last_sublinear <= 3  # ratio 1.12 per grid step
    assert s_grid[first_linear] == pytest.approx(3 / 2000, rel=0.25)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"losses": [[1.0, 0.5]]}, "`losses`"),
        ({"losses": ["a", "b"]}, "`losses`"),
        ({"losses": [1.0, -0.5, 0.1]}, "`losses`"),
        ({"losses": [1.0, 0.5], "times": [0.0]}, "`times`"),
        ({"losses": [1.0, 0.5, 0.2], "times": [0.0, 2.0, 1.0]}, "`times`"),
        ({"losses": [1.0, 0.5], "times": [0.0, np.nan]}, "`times`"),
        ({"losses": [1.0, 0.5], "floor_rel": 1.0}, "`floor_rel`"),
        ({"losses": [1.0, 0.5], "floor_rel": "x"}, "`floor_rel`"),
    ],
)
def test_fit_rate_rejects_bad_input(kwargs, field):
    with pytest.raises(ValueError, match=field):
        fit_rate(**kwargs)


def test_local_exponent_closed_forms():
    t = np.arange(1.0, 4001.0)
    p = local_exponent(t**-2.5, t)
    inside = ~np.isnan(p)
    np.testing.assert_allclose(p[inside], 2.5, rtol=1e-12)
    # window [t / sqrt(2), t sqrt(2)] must fit inside [1, 4000]
    assert np.isnan(p[t < math.sqrt(2)]).all() and np.isnan(p[t > 4000 / math.sqrt(2)]).all()
    assert not np.isnan(p[(t > 1.5) & (t < 2800)]).any()
    # exponential: secant of s t over log t in [t / sqrt(2), t sqrt(2)]
    s = 2e-3
    p = local_exponent(np.exp(-s * t), t)
    expected = s * t * (math.sqrt(2) - 1 / math.sqrt(2)) / math.log(2)
    # interpolating log E = -s e^x linearly on the grid x = log t errs by ~ s / (8 t): relative
    # to p_eff ~ s t that is ~ 0.2 / t^2, below 1e-3 from t = 30 on
    far = inside & (t >= 30)
    np.testing.assert_allclose(p[far], expected[far], rtol=1e-3)
    with pytest.raises(ValueError, match="`span`"):
        local_exponent(t**-2.5, t, span=1.0)
