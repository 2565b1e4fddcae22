"""predict_discrete (docs/mathematics.md §3) against torch.optim on an exactly linear model, the per-mode
closed forms and recurrences of docs/mathematics.md §3 written by hand, and its own stepping loop.

Metrics: losses relative to L0 (torch), register 0 relative to |xi_0| (closed forms), or
relative to the loss envelope (suffix maximum) for long runs that fall over many decades.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ntkdyn.dynamics import DiscretePrediction, discrete_modes, predict_discrete
from ntkdyn.dynamics.discrete import _step_modes
from ntkdyn.kernels import IllConditionedKernelWarning, Spectrum, spectrum
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

from helpers import LINEAR_RULES, rule_params

TORCH_MATCH = 1e-12  # issue bound, relative to L0 (docs/mathematics.md §3 observed <= 1.6e-15)
CLOSED_FORM_MATCH = 1e-12  # relative to |xi_0| (docs/mathematics.md §3 observed <= 1.6e-14)
BLOCK_VS_STEP = 1e-12  # block-power GEMM vs the step loop, relative to the loss envelope
#: NAG-C tail slope d/dk[log L_k + r log k] vs log(1 - h): docs/mathematics.md §3 observed 6.9e-4; our
#: fit over k in [10, 20] r/h on the local maxima gives <= 6e-5.
LINEARITY_RTOL = 1e-3
STEPS = 300
H_MAX = 0.9  # stable for every registry rule (tests/helpers.py)

MODE_H = np.array([1e-3, 0.04, 0.3, 0.9, 1.2])  # per-mode steps for the closed-form checks


def _linear_problem(n=12, p=20, seed=3):
    rng = np.random.default_rng(seed)
    J = rng.standard_normal((n, p)) / math.sqrt(p)
    return J, rng.standard_normal(n), rng.standard_normal(n)  # J, u0, y


def _torch_losses(rule, J, u0, y, steps, *, mse):
    """Train u = u0 + J w with rule.torch and record the loss actually minimised."""
    Jt, u0t, yt = (torch.tensor(a) for a in (J, u0, y))
    w = torch.zeros(J.shape[1], dtype=torch.float64, requires_grad=True)
    opt = rule.torch([w])
    out = np.empty(steps + 1)
    for k in range(steps + 1):
        opt.zero_grad()
        u = u0t + Jt @ w
        loss = torch.nn.functional.mse_loss(u, yt) if mse else 0.5 * ((u - yt) ** 2).sum()
        out[k] = loss.item()
        if k < steps:
            loss.backward()
            opt.step()
    return out


@pytest.mark.parametrize("loss_kind", ["half-sum", "mse"])
@pytest.mark.parametrize("rule", rule_params(LINEAR_RULES))
def test_matches_torch_on_linear_model(rule, loss_kind):
    J, u0, y = _linear_problem()
    n = J.shape[0]
    c = 1.0 if loss_kind == "half-sum" else 2.0 / n  # MSELoss(mean): K = (2/n) J J^T
    K = c * (J @ J.T)
    rule = rule.with_lr(H_MAX / np.linalg.eigvalsh(K)[-1])
    measured = _torch_losses(rule, J, u0, y, STEPS, mse=loss_kind == "mse")
    predicted = c * predict_discrete(K, u0 - y, rule, STEPS)
    assert predicted[-1] < 0.1 * predicted[0]  # the run actually goes somewhere
    assert np.max(np.abs(predicted - measured)) / measured[0] <= TORCH_MATCH


def test_spectrum_and_spec_string_match_array():
    J, u0, y = _linear_problem()
    K = J @ J.T
    ref = predict_discrete(K, u0 - y, HeavyBall(0.2, beta=0.8), 50)
    got = predict_discrete(spectrum(K, vectors=True), u0 - y, "hb:lr=0.2,beta=0.8", 50)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14 * ref[0])


def test_accepts_scheduled_rule_on_a_spectrum():
    J, u0, y = _linear_problem()
    K = J @ J.T
    ref = predict_discrete(K, u0 - y, NesterovTorch(0.3, r=3.0), 80)
    got = predict_discrete(spectrum(K, vectors=True), u0 - y, NesterovTorch(0.3, r=3.0), 80)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14 * ref[0])


def _diag(h):
    """Spectrum of K = diag(h) (ascending h) with Q = I: lr = 1 gives per-mode steps h."""
    h = np.asarray(h, float)
    return Spectrum(h, np.eye(len(h)), float(h[0]), float(h[-1]), float(h[-1] / h[0]))


def _xi(rule, steps, h=MODE_H, xi0=None):
    xi0 = np.linspace(1.0, 2.0, len(h)) if xi0 is None else xi0
    pred = discrete_modes(_diag(h), xi0, rule.with_lr(1.0), steps)
    assert isinstance(pred, DiscretePrediction)
    np.testing.assert_allclose(pred.loss, 0.5 * np.sum(pred.xi**2, axis=1), rtol=1e-13)
    return pred.xi, xi0


def _assert_xi(xi, expected, xi0):
    assert np.max(np.abs(xi - expected) / np.abs(xi0)) <= CLOSED_FORM_MATCH


def _two_root(p, q, xi0, xi1, k):
    """docs/mathematics.md §3: xi_{k+1} = p xi_k - q xi_{k-1} by its (complex) roots; k as a column."""
    disc = np.sqrt(p * p - 4 * q + 0j)
    z1, z2 = (p + disc) / 2, (p - disc) / 2
    return np.real(((xi1 - z2 * xi0) * z1**k - (xi1 - z1 * xi0) * z2**k) / (z1 - z2))


def test_gd_closed_form():
    xi, xi0 = _xi(GD(1.0), 60)
    k = np.arange(61)[:, None]
    _assert_xi(xi, (1 - MODE_H) ** k * xi0, xi0)


@pytest.mark.parametrize("beta", [0.3, 0.8, 0.95])
def test_heavy_ball_two_root_closed_form(beta):
    xi, xi0 = _xi(HeavyBall(1.0, beta=beta), 200)
    xi1 = (1 - MODE_H) * xi0  # first step is a GD step
    _assert_xi(xi[1], xi1, xi0)
    k = np.arange(201)[:, None]
    _assert_xi(xi, _two_root(1 + beta - MODE_H, beta, xi0, xi1, k), xi0)


@pytest.mark.parametrize("beta", [0.3, 0.8, 0.95])
def test_nesterov_sc_two_root_closed_form(beta):
    xi, xi0 = _xi(NesterovSC(1.0, beta=beta), 200)
    xi1 = (1 - (1 + beta) * MODE_H) * xi0
    _assert_xi(xi[1], xi1, xi0)
    k = np.arange(201)[:, None]
    p, q = (1 + beta) * (1 - MODE_H), beta * (1 - MODE_H)
    _assert_xi(xi, _two_root(p, q, xi0, xi1, k), xi0)


def test_heavy_ball_double_root_exact():
    # beta = (1 - sqrt h)^2 makes mode h critically damped: a double root z = 1 - sqrt(h).
    h = np.array([0.04])
    beta = (1 - math.sqrt(h[0])) ** 2
    steps = 3000
    xi, xi0 = _xi(HeavyBall(1.0, beta=beta), steps, h=h, xi0=np.array([1.0]))
    z, xi1 = 1 - math.sqrt(h[0]), (1 - h[0])
    k = np.arange(1, steps + 1)
    expected = z ** (k - 1) * (k * xi1 - (k - 1) * z)
    _assert_xi(xi[1:, 0], expected, xi0)


@pytest.mark.parametrize("b1,b2", [(0.6, 0.2), (0.5, -0.2), (0.2, 0.5)])
def test_hom_initial_values_and_matrix_power(b1, b2):
    xi, xi0 = _xi(HigherOrderMomentum(1.0, b1=b1, b2=b2), 80)
    h = MODE_H
    _assert_xi(xi[1], (1 - h) * xi0, xi0)
    _assert_xi(xi[2], (1 + b1 - h) * (1 - h) * xi0 - b1 * xi0, xi0)
    for j, hj in enumerate(h):
        C = np.array([[1 + b1 - hj, b2 - b1, -b2], [1, 0, 0], [0, 1, 0]])
        for k in (5, 17, 80):
            expected = (np.linalg.matrix_power(C, k) @ np.full(3, xi0[j]))[0]
            assert abs(xi[k, j] - expected) <= CLOSED_FORM_MATCH * abs(xi0[j])


def test_hom_notebook_cascade_by_hand():
    b1, b2 = 0.2, 0.5
    xi, xi0 = _xi(HigherOrderMomentumNotebook(1.0, b1=b1, b2=b2), 120)
    a, c = (b1 + math.sqrt(b1 * b1 + 4 * b2)) / 2, (b1 - math.sqrt(b1 * b1 + 4 * b2)) / 2
    x, p, q = xi0.copy(), None, None
    for k in range(1, 121):  # the notebook's buffers, gradient g = h x
        g = MODE_H * x
        if k == 1:
            p, q = g, np.zeros_like(g)
        else:
            q = c * q + g
            p = a * p + q
        x = x - p
        _assert_xi(xi[k], x, xi0)


@pytest.mark.parametrize("r", [2.0, 3.0, 8.0])
def test_nesterov_two_sequence_recurrence_by_hand(r):
    steps = 400
    xi, xi0 = _xi(Nesterov(1.0, r=r), steps)
    h = MODE_H
    ref = [xi0, (1 - h) * xi0]
    for k in range(2, steps + 1):
        beta = (k - 1) / (k + r - 1)
        ref.append((1 + beta) * (1 - h) * ref[-1] - beta * (1 - h) * ref[-2])
    _assert_xi(xi, np.array(ref), xi0)


@pytest.mark.parametrize("r", [2.0, 3.0, 8.0])
def test_nesterov_torch_matrices_by_hand(r):
    steps = 400
    xi, xi0 = _xi(NesterovTorch(1.0, r=r), steps)
    h = MODE_H
    x, B = xi0.copy(), np.zeros_like(xi0)  # B = lr lambda buffer (docs/mathematics.md §3)
    for k in range(1, steps + 1):
        mu = (k - 1) / (k + r - 1)
        if mu == 0.0:
            x = (1 - h) * x
        else:
            x, B = (1 - h * (1 + mu)) * x - mu * mu * B, h * x + mu * B
        _assert_xi(xi[k], x, xi0)


def _envelope(L):
    return np.maximum.accumulate(L[::-1])[::-1]


@pytest.mark.parametrize(
    "rule",
    [
        HeavyBall(1.0, beta=0.99),
        HeavyBall(1.0, beta=0.9),
        NesterovSC(1.0, beta=0.99),
        HigherOrderMomentum(1.0, b1=0.9, b2=0.05),
        HigherOrderMomentumNotebook(1.0, b1=0.2, b2=0.5),
    ],
    ids=["hb-0.99", "hb-0.9", "nesterov-sc-0.99", "hom-0.9-0.05", "hom-notebook"],
)
def test_block_power_matches_step_loop_over_many_decades(rule):
    rng = np.random.default_rng(5)
    n, steps = 40, 12000
    h = np.sort(rng.uniform(1e-3, 1.0, n))
    h[0] = 0.04 if isinstance(rule, HeavyBall) else h[0]
    xi0 = rng.standard_normal(n)
    L = predict_discrete(_diag(h), xi0, rule, steps)
    A, b = rule.schedule(steps)
    Z = np.zeros((rule.registers, n))
    Z[0] = xi0
    ref = np.empty(steps + 1)
    ref[0] = 0.5 * xi0 @ xi0
    _step_modes(A, b, h, Z, ref[1:])
    env = _envelope(ref)
    keep = env > 1e-200 * env[0]  # below this the step loop flushes states to zero
    assert env[keep][-1] < 1e-30 * env[0]  # many decades are covered
    assert np.max(np.abs(L - ref)[keep] / env[keep]) <= BLOCK_VS_STEP
    assert np.all(L >= 0)


def test_modes_and_losses_agree_and_short_runs():
    rule = HigherOrderMomentumNotebook(1.0, b1=0.2, b2=0.5)  # constant only from step 2
    for steps in (0, 1, 2, 3, 50):
        L = predict_discrete(_diag(MODE_H), np.ones(5), rule, steps)
        pred = discrete_modes(_diag(MODE_H), np.ones(5), rule, steps)
        assert L.shape == (steps + 1,) and pred.xi.shape == (steps + 1, 5)
        assert L[0] == 2.5 and pred.steps == steps
        np.testing.assert_allclose(L, pred.loss, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize(
    "rule,h",
    [(GD(1.0), 2.5), (HeavyBall(1.0, beta=0.9), 3.9), (Nesterov(1.0, r=3.0), 1.5)],
    ids=["gd", "hb", "nesterov"],
)
def test_diverging_rule_gives_inf_without_warnings(rule, h):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L = predict_discrete(_diag([0.1, h]), np.ones(2), rule, 4000)
    assert np.isfinite(L[:10]).all() and L[-1] == np.inf and not np.isnan(L).any()


def _tail_slope(xi, r, h):
    """Slope of log L + r log k on the local maxima of |xi| over k in [10, 20] r/h."""
    k = np.arange(xi.size)
    sl = slice(int(10 * r / h), int(20 * r / h))
    y, kk = np.abs(xi[sl]), k[sl]
    peak = (y[1:-1] >= y[:-2]) & (y[1:-1] >= y[2:])
    return np.polyfit(kk[1:-1][peak], 2 * np.log(y[1:-1][peak]) + r * np.log(kk[1:-1][peak]), 1)[0]


def _check_eventually_linear(cls, r, h):
    rule = cls(1.0, r=r)
    xi, _ = _xi(rule, int(20 * r / h), h=np.array([h]), xi0=np.array([1.0]))
    slope = _tail_slope(xi[:, 0], r, h)
    assert abs(slope / math.log1p(-h) - 1) <= LINEARITY_RTOL


@pytest.mark.parametrize("r", [2.0, 3.0, 6.0, 8.0])
@pytest.mark.parametrize("cls", [Nesterov, NesterovTorch])
def test_nesterov_fixed_step_eventually_linear(cls, r):
    _check_eventually_linear(cls, r, 1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("r", [2.0, 3.0, 6.0, 8.0])
@pytest.mark.parametrize("cls", [Nesterov, NesterovTorch])
def test_nesterov_fixed_step_eventually_linear_small_h(cls, r):
    _check_eventually_linear(cls, r, 1e-3)


def test_bad_input_names_the_field():
    K = np.diag([1.0, 0.5, 0.1])
    e0 = np.ones(3)
    gd = GD(0.1)
    with pytest.raises(ValueError, match="`K` must be symmetric"):
        predict_discrete(K + np.triu(np.ones((3, 3)), 1) * 1e-3, e0, gd, 5)
    with pytest.raises(ValueError, match="`K` must be positive semi-definite"):
        predict_discrete(np.diag([1.0, -1e-3, 0.1]), e0, gd, 5)
    with pytest.warns(IllConditionedKernelWarning, match="clipped to 0"):
        L = predict_discrete(np.diag([1.0, -1e-13, 0.1]), e0, gd, 5)
    assert L[-1] >= 0.5  # the clipped mode does not move
    with pytest.raises(ValueError, match="`K` contains NaN or inf"):
        predict_discrete(np.diag([1.0, np.nan, 0.1]), e0, gd, 5)
    with pytest.raises(ValueError, match=r"`K` must be square"):
        predict_discrete(np.ones((3, 2)), e0, gd, 5)
    with pytest.raises(ValueError, match="`K` is a Spectrum without eigenvectors"):
        predict_discrete(spectrum(np.eye(3)), e0, gd, 5)
    with pytest.raises(ValueError, match="`K` is a 1-D array of eigenvalues"):
        predict_discrete(np.ones(3), e0, gd, 5)
    with pytest.raises(ValueError, match="`steps` must be an integer >= 0, got -1"):
        predict_discrete(K, e0, gd, -1)
    with pytest.raises(ValueError, match="`steps`"):
        predict_discrete(K, e0, gd, 2.5)
    with pytest.raises(ValueError, match=r"`e0` must have shape \(3,\)"):
        predict_discrete(K, np.ones(4), gd, 5)
    with pytest.raises(ValueError, match="`e0` must be finite"):
        predict_discrete(K, np.array([1.0, np.inf, 0.0]), gd, 5)
    with pytest.raises(ValueError, match="`rule` 'adam'.*adam has no linear prediction"):
        predict_discrete(K, e0, Adam(0.01), 5)
