"""Tests of ntkdyn.rates.predicted_rate: discrete factors against the characteristic roots of the
docs/mathematics.md §3 recurrences, optima, ODE rates and the discrete-to-ODE limit
(docs/mathematics.md §4), boundary checks, and the registry test at the end, which compares every
registered rule's prediction with the rate fitted on ``predict_discrete``'s curve. The problem is
docs/mathematics.md §6's (tests/rates_cases.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkdyn.optim import (
    GD,
    Adam,
    HeavyBall,
    HigherOrderMomentum,
    HigherOrderMomentumNotebook,
    Nesterov,
    NesterovSC,
    NesterovTorch,
)
from ntkdyn.rates import fit_rate, predicted_rate

from helpers import LINEAR_RULES, rule_params
from rates_cases import _discrete_curve, _ls_slope, _problem

# --------------------------------------------------------------------------------------------
# predicted_rate.


def _char_poly(rule, h):
    """Characteristic polynomial of the docs/mathematics.md §3 recurrence of one mode (scheduled NAG: its
    beta_k -> 1 limit, ``z^2 - 2(1-h) z + (1-h)``)."""
    if rule.name == "gd":
        return [1.0, -(1 - h)]
    if rule.name == "hb":
        return [1.0, -(1 + rule.beta - h), rule.beta]
    if rule.name == "nesterov-sc":
        return [1.0, -(1 + rule.beta) * (1 - h), rule.beta * (1 - h)]
    if rule.name in ("hom", "hom-notebook"):
        return [1.0, -(1 + rule.b1 - h), -(rule.b2 - rule.b1), rule.b2]
    return [1.0, -2 * (1 - h), 1 - h]


@pytest.mark.parametrize("rule", rule_params(LINEAR_RULES))
@pytest.mark.parametrize("h_max", [0.3, 0.9, 1.2])
def test_discrete_factor_from_characteristic_roots(rule, h_max):
    """The generic ``max_j rho(M(h_j))^2`` equals the largest root modulus squared of the
    recurrences written in docs/mathematics.md §3."""
    lam = _problem()[0]
    rule = rule.with_lr(h_max / lam[-1])
    expected = max(np.abs(np.roots(_char_poly(rule, h))).max() ** 2 for h in rule.lr * lam)
    pred = predicted_rate(lam, rule)
    assert pred.discrete_factor == pytest.approx(expected, rel=1e-9)
    assert pred.stable == (expected < 1)
    assert pred.h_max == pytest.approx(h_max) and pred.h_min == pytest.approx(rule.lr * lam[0])


def test_gd_prediction_and_measurement():
    lam = _problem()[0]
    h0 = 0.5 * lam[0]
    pred = predicted_rate(lam, GD(0.5))  # h_max = 0.98 < 1: the slowest mode dominates
    assert pred.discrete_factor == pytest.approx((1 - h0) ** 2, rel=1e-14)
    assert pred.kind == "linear" and pred.time_scale == "lr" and pred.step_time == 0.5
    assert pred.statement == "linear: L_k ~ 0.9558^k (ODE: exp(-0.08947 t), t = k lr)"
    _, L = _discrete_curve("gd")
    assert fit_rate(L).factor == pytest.approx(pred.discrete_factor, rel=1e-4)
    fast = predicted_rate(lam, GD(1.99 / lam[-1]))  # |1 - h_max| > 1 - h_0: the stiffest mode
    assert fast.discrete_factor == pytest.approx((1 - 1.99) ** 2, rel=1e-12)
    unstable = predicted_rate(lam, GD(2.1 / lam[-1]))
    assert not unstable.stable and unstable.discrete_factor == pytest.approx(1.1**2)
    assert unstable.statement.startswith("unstable")


def test_heavy_ball_optimum():
    """docs/mathematics.md §3: ``eta* = 4 / (sqrt(l_max) + sqrt(l_min))^2``, ``beta* = ((sqrt k - 1) /
    (sqrt k + 1))^2`` give ``rho* = (sqrt k - 1) / (sqrt k + 1)``; no grid point does better.
    ODE (docs/mathematics.md §4): the best damping is ``gamma* = 2 sqrt(l_min)`` with rate 2 sqrt(l_min)."""
    lam = _problem()[0]
    kappa = lam[-1] / lam[0]
    rho = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    lr = 4 / (math.sqrt(lam[-1]) + math.sqrt(lam[0])) ** 2
    best = predicted_rate(lam, HeavyBall(lr, beta=rho**2))
    # double roots at both extreme modes: eigenvalues are accurate to ~sqrt(eps) only
    assert math.sqrt(best.discrete_factor) == pytest.approx(rho, rel=1e-7)
    grid = [
        predicted_rate(lam, HeavyBall(lr * a, beta=b)).discrete_factor
        for a in np.linspace(0.5, 1.5, 11)
        for b in np.linspace(0.3, 0.95, 14)
    ]
    assert min(grid) >= best.discrete_factor - 1e-7
    eta = 1e-4
    ode = [
        predicted_rate(lam, HeavyBall(eta, beta=1 - c * 2 * math.sqrt(lam[0] * eta))).ode_rate
        for c in (0.5, 0.8, 1.0, 1.25, 2.0)
    ]
    assert ode[2] == pytest.approx(2 * math.sqrt(lam[0]), rel=1e-9) and max(ode) == ode[2]


def test_hom_ode_rate_with_mass():
    """``(1 + b2) e'' + gamma e' + K e = 0``: rate ``-2 max Re`` of the roots of
    ``m s^2 + gamma s + lambda``, minimised over modes."""
    lam = _problem()[0]
    eta = 1e-4
    for gamma, b2 in [(0.2, 0.2), (0.6, 0.2), (1.5, 0.5), (0.4, 0.0)]:
        b1 = 1 - gamma * math.sqrt(eta) - b2
        pred = predicted_rate(lam, HigherOrderMomentum(eta, b1=b1, b2=b2))
        expected = min(-2 * np.roots([1 + b2, gamma, lam_j]).real.max() for lam_j in lam)
        assert pred.ode_rate == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "make, order",
    [
        (lambda eta, g: GD(eta), 1.0),
        (lambda eta, g: HeavyBall(eta, beta=1 - g * math.sqrt(eta)), 0.5),
        (lambda eta, g: NesterovSC(eta, beta=1 - g * math.sqrt(eta)), 0.5),
        (lambda eta, g: HigherOrderMomentum(eta, b1=0.8 - g * math.sqrt(eta), b2=0.2), 0.5),
    ],
    ids=["gd", "hb", "nesterov-sc", "hom"],
)
def test_discrete_rate_tends_to_ode_rate(make, order):
    """``-log q / dt -> ode_rate`` as lr -> 0, at order 1 (GD) or 1/2 (momentum), docs/mathematics.md §4."""
    lam = _problem()[0]
    errors = []
    for eta in (1e-4, 1e-6):
        pred = predicted_rate(lam, make(eta, 0.3))
        errors.append(abs(-pred.rate_per_step / pred.step_time / pred.ode_rate - 1))
    slope = math.log(errors[0] / errors[1]) / math.log(100.0)
    assert slope == pytest.approx(order, abs=0.05), errors


def test_nesterov_prediction():
    lam = _problem()[0]
    eta = 1e-3
    h0 = eta * lam[0]
    for cls in (Nesterov, NesterovTorch):
        pred = predicted_rate(lam, cls(eta, r=3.0))
        assert pred.kind == "sublinear" and pred.exponent == 3.0 and pred.ode_rate is None
        assert pred.discrete_factor == pytest.approx(1 - h0, rel=1e-9)
        assert pred.crossover_step == pytest.approx(3.0 / h0)
        assert pred.time_scale == "sqrt_lr" and pred.step_time == pytest.approx(math.sqrt(eta))
        assert pred.statement == (
            "sublinear: L(t) ~ t^-3 in the ODE limit (t = k sqrt(lr)); at lr = 0.001 "
            "eventually linear, L_k ~ k^-3 (1 - 4.47e-05)^k, after k ~ r/h_0 = 6.71e+04"
        )
    assert not predicted_rate(lam, Nesterov(1.35 / lam[-1], r=3.0)).stable  # h < 4/3


def test_adam_has_no_prediction():
    pred = predicted_rate(_problem()[0], Adam(0.01))
    assert pred.kind == "none" and pred.statement.startswith("none")
    assert pred.discrete_factor is None and pred.rate_per_step is None
    assert pred.ode_rate is None and pred.exponent is None and pred.stable is None


@pytest.mark.filterwarnings("ignore:kernel is ill-conditioned")  # the [0.1, 0.0] case
def test_predicted_rate_boundary():
    lam = _problem()[0]
    assert predicted_rate(lam, "hb:lr=0.5,beta=0.9") == predicted_rate(lam, HeavyBall(0.5))
    assert predicted_rate(
        lam, HigherOrderMomentumNotebook(0.5, b1=0.2, b2=0.5)
    ).discrete_factor == pytest.approx(
        predicted_rate(lam, HigherOrderMomentum(0.5, b1=0.2, b2=0.5)).discrete_factor, rel=1e-12
    )
    for bad in ([], [[0.1, 0.2]], [0.1, 0.0], [0.1, -1e-3], [0.1, np.nan], "x"):
        with pytest.raises(ValueError, match="`K`"):
            predicted_rate(bad, GD(0.1))
    with pytest.raises(ValueError, match="`optimizer`"):
        predicted_rate(lam, "sgd:lr=0.1")


# --------------------------------------------------------------------------------------------
# Every registered rule: predicted vs measured on predict_discrete's curves.


@pytest.mark.parametrize("rule", rule_params(LINEAR_RULES))
def test_registry_measured_rate_matches_prediction(rule):
    """Fit on a deep curve: constant rules give ``log q`` (floor 1e-200, so that the slowest
    mode dominates the tail; the block-power predictor is cheap); scheduled NAG gives
    ``log(1 - h_0) - r slope(log k)`` over the window (docs/mathematics.md §3, 7.2)."""
    from ntkdyn.dynamics.discrete import predict_discrete

    lam, _, H, e0 = _problem()
    rule = rule.with_lr(0.5 / lam[-1])
    pred = predicted_rate(lam, rule)
    decades = 100 if pred.exponent is not None else 200  # NAG steps one by one: keep it short
    steps = int(1.1 * decades * math.log(10) / -pred.rate_per_step)
    fit = fit_rate(predict_discrete(H, e0, rule, steps), floor_rel=10.0**-decades)
    assert fit.kind == "linear", fit
    expected = pred.rate_per_step
    if pred.exponent is not None:
        k = np.arange(fit.window.start, fit.window.stop, dtype=np.float64)
        expected -= pred.exponent * _ls_slope(k, np.log(k))
    assert fit.rate == pytest.approx(expected, rel=0.01)
