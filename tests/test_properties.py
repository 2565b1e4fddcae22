"""Property-based tests (hypothesis, derandomized, small budgets): the spec parsers, the config
loader, the discrete predictor against a direct run of the register machine
(docs/mathematics.md §3) and fit_rate on arbitrary curves. Every input either gives a valid
result or one ValueError; nothing else escapes.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import ntkdyn
from ntkdyn.data import DataSpec, parse_data_spec
from ntkdyn.experiments.config import Config, load_config
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
from ntkdyn.rates import RateFit

FAST = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

positive = st.floats(1e-6, 1e3, allow_nan=False, allow_infinity=False)
unit = st.floats(0.0, 1.0, exclude_max=True, allow_nan=False)

# --------------------------------------------------------------------------------------------
# Rules.


@st.composite
def linear_rules(draw, lr=positive):
    """A valid linear rule of any family with random hyperparameters."""
    kind = draw(st.sampled_from(["gd", "hb", "nsc", "nes", "nest", "hom", "homn"]))
    a = draw(lr)
    if kind == "gd":
        return GD(a)
    if kind in ("hb", "nsc"):
        return (HeavyBall if kind == "hb" else NesterovSC)(a, beta=draw(unit))
    if kind in ("nes", "nest"):
        return (Nesterov if kind == "nes" else NesterovTorch)(a, r=draw(positive))
    b1 = draw(unit)
    # the notebook's cascade needs real roots: b1^2 + 4 b2 >= 0
    low = -1.0 if kind == "hom" else -b1 * b1 / 4
    b2 = draw(st.floats(low, 1.0 - b1, exclude_min=kind == "hom", exclude_max=True))
    return (HigherOrderMomentum if kind == "hom" else HigherOrderMomentumNotebook)(a, b1=b1, b2=b2)


rules = st.one_of(
    linear_rules(),
    st.builds(Adam, positive, beta1=unit, beta2=unit, eps=positive),
)


@FAST
@given(rules)
def test_parse_round_trips_every_valid_rule(rule):
    assert ntkdyn.parse(rule.spec) == rule
    assert ntkdyn.parse(rule.spec).spec == rule.spec


_NAMES = st.sampled_from(["gd", "hb", "adam", "nesterov", "nesterov-sc", "hom", "HB", "sgd", ""])
_KEYS = st.sampled_from(["lr", "beta", "r", "b1", "b2", "eps", "beta1", "lr ", "x", ""])
_NUMBERS = st.sampled_from(["0.1", "0.5", "-1", "nan", "inf", "1e400", "0", "critical", "1_0", ""])
spec_like = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda name, items: f"{name}:" + ",".join(f"{k}={v}" for k, v in items),
        _NAMES,
        st.lists(st.tuples(_KEYS, _NUMBERS), max_size=3),
    ),
    rules.map(lambda r: r.spec),
    rules.map(lambda r: " " + r.spec.replace(r.name, r.name.upper(), 1).replace(",", " , ")),
    st.integers(),
    st.none(),
)


@FAST
@given(spec_like)
def test_parse_returns_a_rule_or_raises_value_error(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hom with b1 + b2 >= 1 warns
        try:
            rule = ntkdyn.parse(text)
        except ValueError:
            event("ValueError")
            return
    event("parsed")
    assert isinstance(rule, ntkdyn.Rule)
    assert ntkdyn.parse(rule.spec) == rule


_SOURCES = st.sampled_from(["synthetic", "gaussian", "digits", "mnist", "csv", "GAUSSIAN", "x"])
_DATA_ITEMS = st.sampled_from(["d=5", "classes=3/8", "/tmp/x", "C:\\x.csv", "q=1", "d", "=", ""])
data_like = st.one_of(
    st.text(max_size=30),
    st.builds(lambda s, i: f"{s}:" + ",".join(i), _SOURCES, st.lists(_DATA_ITEMS, max_size=3)),
    _SOURCES,
)


@FAST
@given(data_like)
def test_data_specs_parse_canonically_or_raise_value_error(text):
    try:
        spec = parse_data_spec(text)
    except ValueError:
        event("ValueError")
        return
    event("parsed")
    assert isinstance(spec, DataSpec)
    assert parse_data_spec(spec.canonical) == spec


# --------------------------------------------------------------------------------------------
# The config loader on random small dicts.

_JUNK = st.one_of(
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["", "x", "gaussian:d=0"]),
    st.lists(st.integers(-1, 16), max_size=3),
)
_GOOD = {
    "mode": st.sampled_from(["theory", "notebook"]),
    "data": st.sampled_from(["gaussian:d=3", "synthetic"]),
    "n": st.integers(2, 12),
    "data_seed": st.integers(0, 3),
    "loss": st.sampled_from(["half-sum", "mse"]),
    "widths": st.lists(st.integers(1, 16), min_size=1, max_size=3),
    "seeds": st.lists(st.integers(0, 3), min_size=1, max_size=2),
    "steps": st.integers(1, 5),
    "dtype": st.sampled_from(["float32", "float64"]),
    "device": st.sampled_from(["auto", "cpu"]),
    "predict": st.booleans(),
    "diagnostics_every": st.integers(1, 3),
    "optimizers": st.lists(
        st.sampled_from(["gd:lr=0.1", "hb:lr=0.1,beta=critical", "adam:lr=1", "nesterov:lr=0.1"]),
        min_size=1,
        max_size=2,
    ),
}
_REQUIRED = ("widths", "steps", "data", "optimizers")
experiments = st.fixed_dictionaries(
    {"id": st.sampled_from(["A", "B"]), **{k: _GOOD[k] for k in _REQUIRED}},
    optional={k: v for k, v in _GOOD.items() if k not in _REQUIRED},
)


@st.composite
def configs(draw):
    """A valid-looking config with 0 to 2 fields replaced by junk (or an unknown key added)."""
    raw = {
        "name": "p",
        "experiment": draw(
            st.lists(experiments, min_size=1, max_size=2, unique_by=lambda t: t["id"])
        ),
    }
    tables = [raw, *raw["experiment"]]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        table = draw(st.sampled_from(tables))
        key = draw(st.sampled_from([*table, "widht", "nme", "id"]))
        table[key] = draw(_JUNK)
    return raw


@FAST
@given(configs())
def test_config_loader_gives_a_config_or_a_value_error(raw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate generated data warns, and may still load
        try:
            config = load_config(raw)
        except ValueError:
            event("ValueError")
            return
    event("loaded")
    assert isinstance(config, Config) and config.experiments
    assert load_config(config) == config


# --------------------------------------------------------------------------------------------
# predict_discrete against the register machine run directly.


def register_machine_losses(K, e0, rule, steps):
    """z_k = A_k z_{k-1} - lr b_k (K z_{k-1,0}), z_0 = (e0, 0, ...): docs/mathematics.md §3."""
    A0, _ = rule.step_matrices(1)
    z = np.zeros((A0.shape[0], len(e0)))
    z[0] = e0
    losses = [0.5 * float(e0 @ e0)]
    for k in range(1, steps + 1):
        A, b = rule.step_matrices(k)
        z = A @ z - rule.lr * np.outer(b, K @ z[0])
        losses.append(0.5 * float(z[0] @ z[0]))
    return np.array(losses)


@st.composite
def spd_problems(draw):
    """A random SPD kernel (eigenvalues in [0.1, 1] times a scale), e0, and h_max <= 0.5."""
    n = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    scale = draw(st.floats(1e-2, 1e2))
    lam = scale * rng.uniform(0.1, 1.0, n)
    K = (Q * lam) @ Q.T
    K = 0.5 * (K + K.T)
    e0 = rng.standard_normal(n)
    h_max = draw(st.floats(0.01, 0.5))
    return K, e0, h_max / float(lam.max())


@settings(FAST, max_examples=40)
@given(spd_problems(), linear_rules(lr=st.just(1.0)), st.integers(0, 30))
def test_predict_discrete_equals_the_register_machine(problem, rule, steps):
    K, e0, lr = problem
    rule = rule.with_lr(lr)
    direct = register_machine_losses(K, e0, rule, steps)
    # a single oscillating mode passes through zero loss: no relative digits are left there
    assume(np.all(direct >= 1e-6 * direct[0]))
    predicted = ntkdyn.predict_discrete(K, e0, rule, steps)
    np.testing.assert_allclose(predicted, direct, rtol=1e-10, atol=0)


def test_the_register_machine_check_can_fail():
    K, e0 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([1.0, 0.0])
    direct = register_machine_losses(K, e0, GD(0.25), 3)
    np.testing.assert_allclose(direct, [0.5, 0.15625, 0.080078125, 0.044555664], rtol=1e-8)
    other = ntkdyn.predict_discrete(K, e0, GD(0.25 * (1 + 1e-9)), 3)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(other, direct, rtol=1e-10, atol=0)


# --------------------------------------------------------------------------------------------
# fit_rate on arbitrary curves.

any_float = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def curves(draw):
    kind = draw(st.sampled_from(["arbitrary", "exponential", "power", "noisy"]))
    n = draw(st.integers(0, 60))
    if kind == "arbitrary":
        return np.array(draw(st.lists(any_float, min_size=n, max_size=n)), dtype=float), None
    t = np.arange(n, dtype=float)
    rate = draw(st.floats(1e-3, 2.0))
    L = np.exp(-rate * t) if kind == "exponential" else (1.0 + t) ** -rate
    if kind == "noisy":
        rng = np.random.default_rng(draw(st.integers(0, 1000)))
        L = L * np.exp(0.3 * rng.standard_normal(n))
    if n and draw(st.booleans()):
        L[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, 0.0]))
    times = None if draw(st.booleans()) else t * draw(st.floats(1e-3, 1e3))
    return L, times


@FAST
@given(curves(), st.one_of(st.just(1e-20), st.floats(0.0, 1.0, exclude_max=True), any_float))
def test_fit_rate_returns_a_fit_or_raises_value_error(curve, floor_rel):
    losses, times = curve
    with np.errstate(all="ignore"):
        try:
            fit = ntkdyn.fit_rate(losses, times, floor_rel=floor_rel)
        except ValueError:
            event("ValueError")
            return
    event(fit.kind)
    assert isinstance(fit, RateFit)
    assert fit.kind in ("linear", "sublinear", "undetermined")
    if fit.kind == "linear":
        assert fit.rate is not None and math.isfinite(fit.rate)
    if fit.kind == "undetermined":
        assert fit.reason


# --------------------------------------------------------------------------------------------
# Degenerate curves are classified, not refused: fit_rate returns a RateFit saying why.


@pytest.mark.parametrize(
    "losses",
    [[np.nan] * 10, [1.0, np.nan, 0.1, 0.01], [1.0], [], [0.0] * 10, [np.inf] + [1.0] * 9],
    ids=["all-nan", "nan-at-1", "one-point", "empty", "all-zero", "inf-first"],
)
def test_degenerate_curves_are_undetermined(losses):
    fit = ntkdyn.fit_rate(np.array(losses, dtype=float))
    assert fit.kind == "undetermined" and fit.rate is None and fit.reason


def test_undetermined_reason_prints_plain_numbers():
    assert "np.float64" not in ntkdyn.fit_rate(np.full(10, np.nan)).reason
