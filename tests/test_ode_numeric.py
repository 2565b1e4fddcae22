"""Limiting ODEs (docs/mathematics.md §4) beyond the closed forms: consistency (t = 0, zero modes,
spectrum records, chunking); the numeric fallback with constant and time-varying kernels against
the closed forms and a hand-written RK4; discrete-to-ODE convergence orders against the exact
discrete predictor; boundary validation.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ntkdyn.dynamics import ode
from ntkdyn.dynamics.discrete import predict_discrete
from ntkdyn.dynamics.ode import ode_envelope, ode_modes, predict_ode
from ntkdyn.kernels import spectrum
from ntkdyn.optim import (
    GD,
    Adam,
    HeavyBall,
    HigherOrderMomentum,
    Nesterov,
    NesterovSC,
    NesterovTorch,
    ODESpec,
)

from ode_cases import _data_kernel

NUMERIC_VS_CLOSED = 1e-10  # numeric fallback at rtol 1e-12 vs closed form, per unit L0
NUMERIC_VS_RK4 = 1e-10  # time-varying kernel: numeric fallback vs hand RK4, per unit L0
MATH6C_MATCH = 0.05  # discrete-vs-ODE errors vs docs/mathematics.md §6c (printed to 2 digits)


# --------------------------------------------------------------------------------------------
# Consistency: t = 0, zero modes, t -> infinity, spectrum records, chunking.

SPECS = {
    "flow": ODESpec("flow", "lr"),
    "oscillator": ODESpec("oscillator", "sqrt_lr", gamma=0.4, mass=1.2),
    "bessel": ODESpec("bessel", "sqrt_lr", r=3.0),
}


@pytest.mark.filterwarnings("ignore:kernel is ill-conditioned")  # the zero mode
@pytest.mark.parametrize("kind", list(SPECS))
def test_zero_mode_is_constant_and_t0_is_l0(kind):
    K = np.diag([0.0, 0.3, 1.0])
    e0 = np.array([0.7, -1.1, 0.4])
    t = np.array([0.0, 1e-3, 1.0, 50.0, 1e4])
    m = ode_modes(K, e0, SPECS[kind], t)
    np.testing.assert_allclose(m.xi[:, 0], 0.7, rtol=0, atol=1e-15)
    # the same sum in another order: equal up to rounding, never bit-exact by promise
    np.testing.assert_allclose(m.loss[0], 0.5 * e0 @ e0, rtol=1e-15, atol=0)
    np.testing.assert_allclose(predict_ode(K, e0, SPECS[kind], t), m.loss, rtol=1e-15)
    if kind != "bessel":  # exponential decay: only the zero mode is left at t = 1e4
        assert m.loss[-1] == pytest.approx(0.5 * 0.7**2, rel=1e-14)


def test_spectrum_record_and_chunking(monkeypatch):
    K, y = _data_kernel()
    t = np.linspace(0.0, 30.0, 101)
    rule = HeavyBall(1e-3, beta=1 - 0.3 * math.sqrt(1e-3))
    full = ode_modes(K, -y, rule, t).loss
    np.testing.assert_allclose(
        predict_ode(spectrum(K, vectors=True), -y, rule, t), full, rtol=1e-13
    )
    monkeypatch.setattr(ode, "CHUNK_ELEMENTS", 7 * K.shape[0])  # chunks of 7 times
    np.testing.assert_allclose(predict_ode(K, -y, rule, t), full, rtol=1e-13)
    with pytest.raises(ValueError, match="`K`"):
        predict_ode(spectrum(K), -y, rule, t)  # no eigenvectors


# --------------------------------------------------------------------------------------------
# Numeric fallback.


def _test_kernel(seed, lam):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(lam), len(lam))))
    return (q * np.asarray(lam)) @ q.T


@pytest.mark.filterwarnings("ignore:kernel is singular")  # the zero mode, rounded below 0
@pytest.mark.parametrize("kind", list(SPECS))
def test_numeric_equals_closed_form_for_constant_kernel(kind):
    K = _test_kernel(1, [0.0, 0.05, 0.3, 1.0])
    e0 = np.array([1.0, -0.5, 0.25, 2.0])
    t = np.array([0.0, 0.5, 3.0, 17.0, 40.0, 10.0])  # unsorted on purpose
    closed = predict_ode(K, e0, SPECS[kind], t)
    kw = {"rtol": 1e-12, "atol": 1e-14}
    numeric = predict_ode(K, e0, SPECS[kind], t, method="numeric", **kw)
    L0 = 0.5 * e0 @ e0
    assert np.max(np.abs(numeric - closed)) <= NUMERIC_VS_CLOSED * L0
    path = (np.array([0.0, 5.0, 20.0]), np.stack([K, K, K]))
    via_path = predict_ode(None, e0, SPECS[kind], t, kernel_path=path, **kw)
    assert np.max(np.abs(via_path - closed)) <= NUMERIC_VS_CLOSED * L0


def _rk4_reference(spec, ts, Ks, e0, t_end):
    """Classic RK4 on a grid containing the sample times; K(t) by np.interp per entry."""
    n = e0.size
    if spec.kind == "bessel":  # start at t0 from the series, including the K1 t^3 term
        t0 = 1e-2
        slope = (Ks[1] - Ks[0]) / (ts[1] - ts[0])
        e = e0 - Ks[0] @ e0 * t0**2 / (2 * (spec.r + 1)) - slope @ e0 * t0**3 / (3 * (spec.r + 2))
        v = -Ks[0] @ e0 * t0 / (spec.r + 1) - slope @ e0 * t0**2 / (spec.r + 2)
        grid = np.concatenate([np.geomspace(t0, 0.1, 400), np.linspace(0.1, t_end, 3901)[1:]])
        y = np.concatenate([e, v])
    else:
        grid = np.linspace(0.0, t_end, 4001)
        y = e0.copy() if spec.kind == "flow" else np.concatenate([e0, np.zeros(n)])
    grid = np.unique(np.concatenate([grid, ts[(ts > grid[0]) & (ts < t_end)]]))
    need = np.unique(np.concatenate([grid, 0.5 * (grid[1:] + grid[:-1])]))
    flat = Ks.reshape(len(ts), -1)
    table = np.stack([np.interp(need, ts, flat[:, i]) for i in range(n * n)], axis=1)

    def kernel(t):
        return table[np.searchsorted(need, t)].reshape(n, n)

    def f(t, y):
        if spec.kind == "flow":
            return -kernel(t) @ y
        damp = spec.r / t if spec.kind == "bessel" else spec.gamma
        return np.concatenate([y[n:], -(damp * y[n:] + kernel(t) @ y[:n]) / spec.mass])

    for a, b in itertools.pairwise(grid):
        h, m = b - a, 0.5 * (a + b)
        k1 = f(a, y)
        k2 = f(m, y + 0.5 * h * k1)
        k3 = f(m, y + 0.5 * h * k2)
        k4 = f(b, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return 0.5 * y[:n] @ y[:n]


@pytest.mark.parametrize("kind", list(SPECS))
def test_numeric_follows_time_varying_kernel(kind):
    ts = np.array([0.0, 1.0, 2.5])
    Ks = np.stack(
        [
            _test_kernel(2, [0.1, 0.4, 0.9, 1.5]),
            _test_kernel(3, [0.05, 0.2, 1.0, 2.0]),
            _test_kernel(4, [0.3, 0.3, 0.6, 1.2]),
        ]
    )
    e0 = np.array([1.0, -2.0, 0.5, 1.5])
    t_end = 4.0  # the kernel is held at its last sample after t = 2.5
    got = predict_ode(None, e0, SPECS[kind], [t_end], kernel_path=(ts, Ks), rtol=1e-12, atol=1e-14)
    ref = _rk4_reference(SPECS[kind], ts, Ks, e0, t_end)
    L0 = 0.5 * e0 @ e0
    assert abs(got[0] - ref) <= NUMERIC_VS_RK4 * L0, (got[0], ref)
    frozen = predict_ode(Ks[0], e0, SPECS[kind], [t_end])  # the path really matters
    assert abs(frozen[0] - ref) >= 1e-3 * L0


# --------------------------------------------------------------------------------------------
# Discrete-to-ODE convergence order (docs/mathematics.md §4 and 6c).

MATH6C = {  # max |L_discrete - L_ode| / L0 up to 1e-4 L0, e0 = -y, lr = 1e-2 / 1e-3 / 1e-4
    "gd": (1.5e-3, 1.5e-4, None),
    "hb": (4.1e-2, 1.3e-2, 4.2e-3),
    "nesterov-torch-r3": (0.13, 4.7e-2, 1.6e-2),
}
ORDER_RANGE = {"gd": (0.9, 1.1)}  # the momentum methods: (0.4, 0.6)
LRS = (1e-2, 1e-3, 1e-4)


def _order_rules(lr, lam0):
    beta = 1.0 - 2.0 * math.sqrt(lam0) * math.sqrt(lr)  # gamma = 2 sqrt(lambda_min)
    return {
        "gd": GD(lr),
        "hb": HeavyBall(lr, beta=beta),
        "nesterov-sc": NesterovSC(lr, beta=beta),
        "nesterov-r3": Nesterov(lr, r=3.0),
        "nesterov-torch-r3": NesterovTorch(lr, r=3.0),
        "hom": HigherOrderMomentum(lr, b1=beta - 0.2, b2=0.2),
    }


@pytest.mark.parametrize("name", list(_order_rules(1e-2, 0.05)))
def test_discrete_to_ode_error_order(name):
    K, y = _data_kernel()
    lam0 = np.linalg.eigvalsh(K)[0]
    L0 = 0.5 * y @ y
    errors = []
    for lr in LRS:
        rule = _order_rules(lr, lam0)[name]
        spec = rule.ode()
        coarse = np.linspace(0.0, 400.0, 40_001)  # the ODE horizon where L = 1e-4 L0
        t_end = coarse[np.argmax(predict_ode(K, -y, rule, coarse) <= 1e-4 * L0)]
        steps = math.ceil(t_end / spec.times(lr, 1))
        L_ode = predict_ode(K, -y, rule, spec.times(lr, np.arange(steps + 1)))
        L_disc = predict_discrete(K, -y, rule, steps)
        errors.append(np.max(np.abs(L_disc - L_ode)) / L0)
    slope = np.polyfit(np.log(LRS), np.log(errors), 1)[0]
    low, high = ORDER_RANGE.get(name, (0.4, 0.6))
    assert low <= slope <= high, (slope, errors)
    for got, target in zip(errors, MATH6C.get(name, ()), strict=False):  # () if none recorded
        if target is not None:
            assert abs(got / target - 1.0) <= MATH6C_MATCH, (got, target)


# --------------------------------------------------------------------------------------------
# Boundary validation.


def test_bad_inputs_raise_value_error_naming_the_field():
    K, y = np.diag([0.2, 1.0]), np.array([1.0, -1.0])
    t = [0.0, 1.0]
    with pytest.raises(ValueError, match="adam has no limiting ODE"):
        predict_ode(K, y, Adam(0.01), t)
    with pytest.raises(ValueError, match="`times`"):
        predict_ode(K, y, GD(0.1), [0.0, -1.0])
    with pytest.raises(ValueError, match="`times`"):
        predict_ode(K, y, GD(0.1), [0.0, np.nan])
    with pytest.raises(ValueError, match="`K`"):
        predict_ode(np.array([[1.0, 0.2], [0.0, 1.0]]), y, GD(0.1), t)
    with pytest.raises(ValueError, match="`K`"):
        predict_ode(np.diag([-1.0, 1.0]), y, GD(0.1), t)
    with pytest.raises(ValueError, match="`e0`"):
        predict_ode(K, [1.0, 2.0, 3.0], GD(0.1), t)
    with pytest.raises(ValueError, match="`method`"):
        predict_ode(K, y, GD(0.1), t, method="euler")
    with pytest.raises(ValueError, match="`rtol`"):
        predict_ode(K, y, GD(0.1), t, method="numeric", rtol=-1.0)
    with pytest.raises(ValueError, match="`K`"):
        predict_ode(K, y, GD(0.1), t, kernel_path=([0.0], K[None]))
    with pytest.raises(ValueError, match="`kernel_path`"):
        predict_ode(None, y, GD(0.1), t, kernel_path=([1.0, 0.0], np.stack([K, K])))
    with pytest.raises(ValueError, match="`kernel_path`"):
        predict_ode(None, y, GD(0.1), t, kernel_path=([0.0], np.array([[[1.0, 0.5], [0.0, 1.0]]])))
    with pytest.raises(ValueError, match="`rule`"):
        ode_envelope(K, y, HeavyBall(0.01, beta=0.9), t)
    with pytest.raises(ValueError, match="`rule`"):
        predict_ode(K, y, ODESpec("bessel", "sqrt_lr", r=0.0), t)
