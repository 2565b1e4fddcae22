"""Optimizer rules: the torch adapter against torch.optim and hand-written iterations (docs/mathematics.md §2).

Metric (docs/mathematics.md §2 "Observed"): the maximum over the whole trajectory of the largest absolute
parameter deviation, relative to the largest absolute parameter value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntkdyn
from ntkdyn.optim import (
    GD,
    RULES,
    Family,
    HeavyBall,
    HigherOrderMomentum,
    HigherOrderMomentumNotebook,
    Nesterov,
    NesterovSC,
    NesterovTorch,
    parse,
    rules_of,
)

from helpers import ALL_RULES, LINEAR_RULES, rule_params

TORCH_MATCH = 1e-12  # the bound for rule.torch vs torch.optim, float64
STEPS = 300
LR = 0.01  # stable for every rule here: a chaotic run would amplify rounding


def _problem():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(10, 3, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    y = torch.randn(10, generator=g, dtype=torch.float64)
    return X, y


def _net():
    g = torch.Generator().manual_seed(11)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 50, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.Linear(50, 1, dtype=torch.float64),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / math.sqrt(p.shape[-1]))
    return net


def _grad_fn(net, X, y):
    def grad():
        for p in net.parameters():
            p.grad = None
        loss = 0.5 * ((net(X).squeeze(-1) - y) ** 2).sum()
        loss.backward()
        return [p.grad.detach().clone() for p in net.parameters()]

    return grad


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()]).clone()


def _run_optimizer(make, steps=STEPS, before_step=None):
    """Trajectory (steps+1, P) of a torch optimizer on the reference ReLU net."""
    X, y = _problem()
    net = _net()
    opt = make(net.parameters())
    grad = _grad_fn(net, X, y)
    traj = [_flat(net)]
    for k in range(1, steps + 1):
        if before_step is not None:
            before_step(opt, k)
        grad()
        opt.step()
        traj.append(_flat(net))
    return torch.stack(traj)


def _run_reference(update, steps=STEPS):
    """Trajectory of a hand-written iteration ``update(k, params, grad_at) -> new params``."""
    X, y = _problem()
    net = _net()
    params = list(net.parameters())
    grad = _grad_fn(net, X, y)

    def grad_at(point):
        with torch.no_grad():
            for p, v in zip(params, point, strict=True):
                p.copy_(v)
        return grad()

    x = [p.detach().clone() for p in params]
    traj = [torch.cat([v.flatten() for v in x])]
    state = {}
    for k in range(1, steps + 1):
        x = update(k, x, grad_at, state)
        traj.append(torch.cat([v.flatten() for v in x]))
    return torch.stack(traj)


def _deviation(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --------------------------------------------------------------------------------------------
# Against torch.optim.


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_heavy_ball_matches_torch_sgd(beta):
    ours = _run_optimizer(lambda p: HeavyBall(LR, beta=beta).torch(p))
    ref = _run_optimizer(lambda p: torch.optim.SGD(p, lr=LR, momentum=beta))
    assert _deviation(ours, ref) <= TORCH_MATCH


def test_gd_matches_torch_sgd():
    ours = _run_optimizer(lambda p: GD(LR).torch(p))
    ref = _run_optimizer(lambda p: torch.optim.SGD(p, lr=LR))
    assert _deviation(ours, ref) <= TORCH_MATCH


@pytest.mark.parametrize("beta", [0.3, 0.9])
def test_constant_nesterov_matches_torch_sgd(beta):
    ours = _run_optimizer(lambda p: NesterovSC(LR, beta=beta).torch(p))
    ref = _run_optimizer(lambda p: torch.optim.SGD(p, lr=LR, momentum=beta, nesterov=True))
    assert _deviation(ours, ref) <= TORCH_MATCH


@pytest.mark.parametrize("r", [2.0, 3.0, 6.0, 8.0])
def test_scheduled_torch_nesterov_matches_torch_sgd(r):
    """The authors' scheme: momentum (k-1)/(k+r-1) written before each step k = 1, 2, ..."""

    def write_momentum(opt, k):
        for group in opt.param_groups:
            group["momentum"] = (k - 1) / (k + r - 1)

    ours = _run_optimizer(lambda p: NesterovTorch(LR, r=r).torch(p))
    # torch rejects nesterov=True with momentum <= 0 at construction: any mu > 0, then overwrite
    ref = _run_optimizer(
        lambda p: torch.optim.SGD(p, lr=LR, momentum=0.5, nesterov=True),
        before_step=write_momentum,
    )
    assert _deviation(ours, ref) <= TORCH_MATCH


def test_adam_torch_is_torch_adam():
    opt = parse("adam:lr=0.01").torch([torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 0.01


# --------------------------------------------------------------------------------------------
# Against hand-written iterations (independent of the register description).


@pytest.mark.parametrize("r", [2.0, 3.0, 8.0])
def test_textbook_nesterov_matches_two_sequence_iteration(r):
    """x_k = y_{k-1} - lr g(y_{k-1}); y_k = x_k + beta_k (x_k - x_{k-1}); model sees y."""

    def update(k, y, grad_at, state):
        x_prev = state.get("x", y)
        g = grad_at(y)
        x = [yi - LR * gi for yi, gi in zip(y, g, strict=True)]
        beta = (k - 1) / (k + r - 1)
        state["x"] = x
        return [xi + beta * (xi - xp) for xi, xp in zip(x, x_prev, strict=True)]

    ours = _run_optimizer(lambda p: Nesterov(LR, r=r).torch(p))
    ref = _run_reference(update)
    assert _deviation(ours, ref) <= TORCH_MATCH


def test_torch_nesterov_differs_from_textbook():
    """docs/mathematics.md §2: with a varying momentum the two schemes are different algorithms."""
    a = _run_optimizer(lambda p: Nesterov(LR, r=3.0).torch(p))
    b = _run_optimizer(lambda p: NesterovTorch(LR, r=3.0).torch(p))
    assert _deviation(a, b) > 1e-3
    # ... but they coincide for the first two steps (mu_1 = 0, buffer created at step 2)
    assert _deviation(a[:3], b[:3]) <= 1e-15


@pytest.mark.parametrize("b1,b2", [(0.6, 0.2), (0.5, -0.2), (0.2, 0.5)])
def test_hom_matches_recursion(b1, b2):
    """x_{k+1} = x_k - lr g_k + b1 (x_k - x_{k-1}) + b2 (x_{k-1} - x_{k-2}), x_{-1}=x_{-2}=x_0."""

    def update(k, x, grad_at, state):
        x1 = state.get("x1", x)
        x2 = state.get("x2", x)
        g = grad_at(x)
        new = [
            xi - LR * gi + b1 * (xi - a) + b2 * (a - c)
            for xi, gi, a, c in zip(x, g, x1, x2, strict=True)
        ]
        state["x2"], state["x1"] = x1, x
        return new

    ours = _run_optimizer(lambda p: HigherOrderMomentum(LR, b1=b1, b2=b2).torch(p))
    ref = _run_reference(update)
    assert _deviation(ours, ref) <= TORCH_MATCH


def test_hom_with_b2_zero_is_heavy_ball():
    ours = _run_optimizer(lambda p: HigherOrderMomentum(LR, b1=0.7, b2=0.0).torch(p))
    ref = _run_optimizer(lambda p: torch.optim.SGD(p, lr=LR, momentum=0.7))
    assert _deviation(ours, ref) <= TORCH_MATCH


@pytest.mark.parametrize("b1,b2", [(0.2, 0.2), (0.2, 0.5), (0.6, -0.05)])
def test_hom_notebook_matches_cascade_description(b1, b2):
    """The notebook's cascade (docs/mathematics.md §7.5): roots a, c of z^2 - b1 z - b2;
    q_1 = 0, q_k = c q_{k-1} + g_k; p_1 = g_1, p_k = a p_{k-1} + q_k; x_k = x_{k-1} - lr p_k."""
    a = 0.5 * (b1 + math.sqrt(b1 * b1 + 4 * b2))
    c = 0.5 * (b1 - math.sqrt(b1 * b1 + 4 * b2))

    def update(k, x, grad_at, state):
        g = grad_at(x)
        if k == 1:
            state["q"] = [torch.zeros_like(gi) for gi in g]
            state["p"] = [gi.clone() for gi in g]
        else:
            state["q"] = [c * qi + gi for qi, gi in zip(state["q"], g, strict=True)]
            state["p"] = [a * pi + qi for pi, qi in zip(state["p"], state["q"], strict=True)]
        return [xi - LR * pi for xi, pi in zip(x, state["p"], strict=True)]

    ours = _run_optimizer(lambda p: HigherOrderMomentumNotebook(LR, b1=b1, b2=b2).torch(p))
    ref = _run_reference(update)
    assert _deviation(ours, ref) <= TORCH_MATCH


def test_hom_notebook_start_up_differs_then_follows_recursion():
    """Only the start-up differs: p_2 = a g_1 + g_2 instead of b1 g_1 + g_2."""
    nb = HigherOrderMomentumNotebook(0.1, b1=0.2, b2=0.5)
    exact = HigherOrderMomentum(0.1, b1=0.2, b2=0.5)
    h = np.array([0.3])
    # per-mode trajectories of register 0 from (1, 0, 0)
    z_nb, z_ex = np.array([1.0, 0, 0]), np.array([1.0, 0, 0])
    xs_nb, xs_ex = [1.0], [1.0]
    for k in range(1, 30):
        z_nb = nb.mode_matrix(k, h)[0] @ z_nb
        z_ex = exact.mode_matrix(k, h)[0] @ z_ex
        xs_nb.append(z_nb[0])
        xs_ex.append(z_ex[0])
    xs_nb, xs_ex = np.array(xs_nb), np.array(xs_ex)
    assert xs_nb[1] == pytest.approx(xs_ex[1], abs=1e-15)  # the first step is a GD step
    assert abs(xs_nb[2] - xs_ex[2]) > 1e-3  # the start-up differs at step 2
    # from step 3 on both follow x_{k+1} = (1+b1-h) x_k + (b2-b1) x_{k-1} - b2 x_{k-2}
    for seq in (xs_nb, xs_ex):
        k = np.arange(3, 29)
        pred = (1 + 0.2 - 0.3) * seq[k] + (0.5 - 0.2) * seq[k - 1] - 0.5 * seq[k - 2]
        np.testing.assert_allclose(seq[k + 1], pred, rtol=0, atol=1e-14)


def test_hom_notebook_without_first_momentum_is_gd():
    """The notebook skips its momentum branch when b1 == 0: it silently becomes GD."""
    ours = _run_optimizer(lambda p: HigherOrderMomentumNotebook(LR, b1=0.0, b2=0.3).torch(p))
    ref = _run_optimizer(lambda p: torch.optim.SGD(p, lr=LR))
    assert _deviation(ours, ref) <= TORCH_MATCH


# --------------------------------------------------------------------------------------------
# Invariants of the description.


@pytest.mark.parametrize("rule", rule_params(LINEAR_RULES))
def test_register_structure(rule):
    """Register 0 is the parameter; auxiliary registers never read it (updates are increments)."""
    A, b = rule.schedule(40)
    for k in range(1, 41):
        Ak, bk = rule.step_matrices(k)
        np.testing.assert_array_equal(A[k - 1], Ak)
        np.testing.assert_array_equal(b[k - 1], bk)
        assert Ak[0, 0] == 1.0
        assert np.all(Ak[1:, 0] == 0.0)
    if rule.constant_from is not None:
        base = rule.step_matrices(rule.constant_from)
        for k in range(rule.constant_from, 41):
            np.testing.assert_array_equal(rule.step_matrices(k)[0], base[0])
            np.testing.assert_array_equal(rule.step_matrices(k)[1], base[1])


@pytest.mark.parametrize("rule", rule_params(ALL_RULES))
def test_spec_round_trip(rule):
    assert parse(rule.spec) == rule
    assert parse(rule) is rule


def test_first_steps_by_hand():
    """Per-mode first steps of docs/mathematics.md §3's table, with h = 0.3."""
    h = 0.3
    beta = 0.8

    def first(rule, steps):
        z = np.zeros(rule.registers)
        z[0] = 1.0
        out = []
        for k in range(1, steps + 1):
            z = rule.mode_matrix(k, np.array([h]))[0] @ z
            out.append(z[0])
        return out

    assert first(HeavyBall(0.1, beta=beta), 1)[0] == pytest.approx(1 - h, abs=1e-15)
    assert first(NesterovSC(0.1, beta=beta), 1)[0] == pytest.approx(1 - (1 + beta) * h, abs=1e-15)
    assert first(Nesterov(0.1, r=3), 1)[0] == pytest.approx(1 - h, abs=1e-15)
    b1, b2 = 0.6, 0.2
    x1, x2 = first(HigherOrderMomentum(0.1, b1=b1, b2=b2), 2)
    assert x1 == pytest.approx(1 - h, abs=1e-15)
    assert x2 == pytest.approx((1 + b1 - h) * (1 - h) - b1, abs=1e-15)
    # torch NAG: step 2 uses mu_2 = 1/(r+1) with a fresh buffer: xi_2 = (1 - h(1+mu)) xi_1
    r = 3.0
    mu2 = 1 / (r + 1)
    _, t2 = first(NesterovTorch(0.1, r=r), 2)
    assert t2 == pytest.approx((1 - h * (1 + mu2)) * (1 - h), abs=1e-15)


def test_top_level_constructors():
    assert ntkdyn.HeavyBall(0.1, beta=0.5) == parse("hb:lr=0.1,beta=0.5")
    assert ntkdyn.Nesterov(0.1, r=3) == parse("nesterov: lr=0.1, r=3")
    assert parse("HOM:lr=1e-4,b1=0.2,b2=0.5") == ntkdyn.HigherOrderMomentum(1e-4, b1=0.2, b2=0.5)


# --------------------------------------------------------------------------------------------
# Bad input: ValueError naming the field and the allowed range.


@pytest.mark.parametrize(
    "spec,field",
    [
        ("sgd:lr=0.1", "optimizer"),
        ("hb:lr=0.1,gamma=0.9", "gamma"),
        ("hb:beta=0.9", "lr"),
        ("gd:lr=0", "lr"),
        ("gd:lr=-1", "lr"),
        ("gd:lr=nan", "lr"),
        ("gd:lr=abc", "lr"),
        ("hb:lr=0.1,beta=1", "beta"),
        ("hb:lr=0.1,beta=-0.1", "beta"),
        ("nesterov-sc:lr=0.1,beta=1.5", "beta"),
        ("nesterov:lr=0.1,r=0", "r"),
        ("nesterov-torch:lr=0.1,r=-2", "r"),
        ("hom:lr=0.1,b1=1.2,b2=0.1", "b1"),
        ("hom:lr=0.1,b1=0.2,b2=-1", "b2"),
        ("hom-notebook:lr=0.1,b1=0.2,b2=-0.5", "b2"),
        ("gd:lr=0.1,lr=0.2", "lr"),
        ("gd:lr", "optimizer"),
        ("", "optimizer"),
    ],
)
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        parse(spec)


def test_sum_of_hom_momenta_at_one_warns():
    with pytest.warns(RuntimeWarning, match="b1 \\+ b2"):
        HigherOrderMomentum(1e-4, b1=0.2, b2=0.8)


# --------------------------------------------------------------------------------------------
# What the rules declare for the rest of the package (never recognised by name).


def test_families_and_critical_values_are_declared_by_the_rules():
    assert rules_of(Family.NESTEROV_SCHEDULED) == (Nesterov, NesterovTorch)
    assert rules_of(Family.HIGHER_ORDER) == (HigherOrderMomentum, HigherOrderMomentumNotebook)
    assert rules_of(Family.NESTEROV_CONSTANT) == (NesterovSC,)
    crit = 1.0 - 2.0 * math.sqrt(0.04 * 0.1)
    assert HeavyBall.critical_value(0.04, {"lr": 0.1, "beta": 0.9}) == crit
    assert NesterovSC.critical_value(0.04, {"lr": 0.1, "beta": 0.9}) == crit
    hom = {"lr": 0.1, "b1": 0.5, "b2": 0.2}
    assert HigherOrderMomentum.critical_value(0.04, hom) == crit - 0.2
    assert HigherOrderMomentumNotebook.critical_value(0.04, hom) == crit - 0.2
    with pytest.raises(ValueError, match="gd has no parameter"):
        GD.critical_value(0.04, {"lr": 0.1})
    assert {c.name: c.critical_key for c in RULES.values() if c.critical_key} == {
        "hb": "beta",
        "nesterov-sc": "beta",
        "hom": "b1",
        "hom-notebook": "b1",
    }
    assert HeavyBall.stable_limit_formula == "2(1 + beta)"
    assert Nesterov.stable_limit_formula == NesterovTorch.stable_limit_formula == "4/3"
