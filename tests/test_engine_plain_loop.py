"""Training engine: agreement with a plain loop (every registry rule, both parameterisations,
float64/float32, reparametrised or not; chunked segment sums, fused kernels, the generic path and
mixed batches). Metric: the largest loss difference over the whole curve relative to ``L_0``.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch

from ntkdyn.kernels import ntk_gram
from ntkdyn.models import DeepReLU, TwoLayerReLU
from ntkdyn.optim import GD, Adam, HeavyBall
from ntkdyn.training import fused, train
from ntkdyn.training.ensemble import TwoLayerEnsemble
from ntkdyn.training.layout import UnitLayout

from engine_cases import (
    ADAM_LR,
    DEVICES,
    DIM,
    LOSS_OF,
    _closed_form_gram,
    _data,
    _models,
    _rule_lr,
    plain_loop,
)
from helpers import ALL_RULES, LINEAR_RULES, rule_params

# Tiny problems: one torch thread per module (the single_thread fixture, conftest.py).
pytestmark = pytest.mark.usefixtures("single_thread")


# Issue bounds for engine vs plain loop over 500 steps, max |dL| / L0.
MATCH = {torch.float64: 1e-10, torch.float32: 1e-4}
STEPS = 500


@functools.cache
def _reference(rule_id, parameterization, dtype):
    i = list(ALL_RULES).index(rule_id)
    X, y = _data(dtype)
    rule = _rule_lr(ALL_RULES[rule_id], parameterization, dtype)
    model = _models(parameterization, dtype)[i]
    return plain_loop(model, X, y, rule, STEPS, LOSS_OF[parameterization])


@functools.cache
def _engine_batch(parameterization, dtype, reparametrize, device, chunked=None):
    """All registry rules in one call (mixed widths and rules; Adam is grouped by the engine)."""
    TwoLayerEnsemble._chunked = chunked
    try:
        return _engine_batch_run(parameterization, dtype, reparametrize, device)
    finally:
        TwoLayerEnsemble._chunked = None


def _engine_batch_run(parameterization, dtype, reparametrize, device):
    X, y = _data(dtype)
    models = _models(parameterization, dtype)
    rules = [_rule_lr(r, parameterization, dtype) for r in ALL_RULES.values()]
    results = train(
        models,
        X,
        y,
        rules,
        STEPS,
        loss=LOSS_OF[parameterization],
        device=device,
        reparametrize=reparametrize,
    )
    return {key: r for key, r in zip(ALL_RULES, results, strict=True)}


# --------------------------------------------------------------------------------------------
# Engine vs plain loop.


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reparametrize", [True, False], ids=["reparam", "plain"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("parameterization", ["theory", "notebook"])
@pytest.mark.parametrize("rule", rule_params(ALL_RULES))
def test_engine_matches_plain_loop(rule, parameterization, dtype, reparametrize, device):
    rule_id = next(key for key, r in ALL_RULES.items() if r == rule)
    ref = _reference(rule_id, parameterization, dtype)
    result = _engine_batch(parameterization, dtype, reparametrize, device)[rule_id]
    assert result.status == "ok" and result.losses.shape == (STEPS + 1,)
    assert ref[-1] < 0.5 * ref[0]  # the run trains: the comparison is not vacuous
    err = np.max(np.abs(result.losses - ref)) / ref[0]
    assert err <= MATCH[dtype], f"max |dL|/L0 = {err:.3g}"


@pytest.mark.parametrize("reparametrize", [True, False], ids=["reparam", "plain"])
@pytest.mark.parametrize("parameterization", ["theory", "notebook"])
def test_chunked_segment_sum_matches_plain_loop(parameterization, reparametrize):
    """The CUDA segment-sum (inert padding units + two-level sum), forced on the CPU."""
    batch = _engine_batch(parameterization, torch.float64, reparametrize, "cpu", chunked=True)
    for rule_id, result in batch.items():
        ref = _reference(rule_id, parameterization, torch.float64)
        err = np.max(np.abs(result.losses - ref)) / ref[0]
        assert err <= MATCH[torch.float64], f"{rule_id}: max |dL|/L0 = {err:.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("widths", [[500, 1000, 1500], [70, 3, 64], [40, 40, 40], [1]])
def test_chunked_segment_sum(widths, device):
    g = torch.Generator().manual_seed(1)
    chunked = UnitLayout(widths, torch.device(device), chunked=True)
    packed = UnitLayout(widths, torch.device("cpu"), chunked=False)
    parts = [torch.randn(w, 7, generator=g, dtype=torch.float64) for w in widths]
    expected = packed.sum(packed.place(parts, dtype=torch.float64, device="cpu"))
    got = chunked.sum(chunked.place(parts, dtype=torch.float64, device=device))
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-13, atol=1e-13)
    assert chunked.M % chunked.chunk == 0 and chunked.M - sum(widths) < len(widths) * 64


FUSED_CASES = [("theory", torch.float64), ("notebook", torch.float32)]


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow)] + DEVICES[1:])
@pytest.mark.parametrize("parameterization, dtype", FUSED_CASES, ids=["theory-f64", "notebook-f32"])
def test_fused_kernels_match_plain_loop(parameterization, dtype, device, monkeypatch):
    """The torch.compile kernels (used on large CUDA batches), forced on a small batch."""
    monkeypatch.setattr(TwoLayerEnsemble, "_fused", True)
    X, y = _data(dtype)
    keys = list(LINEAR_RULES)
    models = [
        m for key, m in zip(ALL_RULES, _models(parameterization, dtype), strict=True) if key in keys
    ]
    rules = [_rule_lr(LINEAR_RULES[k], parameterization, dtype) for k in keys]
    results = train(
        models,
        X,
        y,
        rules,
        STEPS,
        loss=LOSS_OF[parameterization],
        device=device,
        reparametrize=True,
    )
    for key, result in zip(keys, results, strict=True):
        ref = _reference(key, parameterization, dtype)
        err = np.max(np.abs(result.losses - ref)) / ref[0]
        assert err <= MATCH[dtype], f"{key}: max |dL|/L0 = {err:.3g}"


def test_compiler_failure_falls_back_to_eager(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(TwoLayerEnsemble, "_fused", True)
    monkeypatch.setattr(fused, "make_forward", lambda: broken)
    monkeypatch.setattr(fused, "make_backward_update", lambda update, notebook: broken)
    X, y = _data()
    keys = ["hb-0.9", "nesterov-torch-r3"]
    models = [_models("notebook", torch.float64)[list(ALL_RULES).index(k)] for k in keys]
    rules = [_rule_lr(ALL_RULES[k], "notebook", torch.float64) for k in keys]
    with pytest.warns(RuntimeWarning, match="compiled kernels unavailable"):
        results = train(models, X, y, rules, STEPS, loss="mse", reparametrize=True)
    for key, result in zip(keys, results, strict=True):
        ref = _reference(key, "notebook", torch.float64)
        assert np.max(np.abs(result.losses - ref)) / ref[0] <= MATCH[torch.float64]


@pytest.mark.parametrize(
    "rule",
    rule_params(
        {k: ALL_RULES[k] for k in ("gd", "hb-0.9", "nesterov-torch-r3", "hom-0.6-0.2", "adam")}
    ),
)
def test_generic_path_matches_plain_loop_deep_relu(rule):
    X, y = _data()
    g = torch.Generator().manual_seed(5)
    models = [DeepReLU(DIM, 24, 2, generator=g), DeepReLU(DIM, 24, 2, generator=g)]
    K = ntk_gram(X.numpy(), depth=2)  # the deep NTK (all layers) sets the stable lr
    rule = (
        rule.with_lr(ADAM_LR)
        if isinstance(rule, Adam)
        else rule.with_lr(0.25 / np.linalg.eigvalsh(K)[-1])
    )
    results = train(models, X, y, rule, 200)
    for model, result in zip(models, results, strict=True):
        ref = plain_loop(model, X, y, rule, 200, "half-sum")
        assert ref[-1] < 0.5 * ref[0]
        assert np.max(np.abs(result.losses - ref)) / ref[0] <= MATCH[torch.float64]
        assert result.diagnostics.pattern_change is None


@pytest.mark.parametrize("parameterization", ["theory", "notebook"])
def test_fast_path_matches_torch_func_path(parameterization):
    """docs/design.md Performance 3: the closed-form two-layer path equals the generic path.

    Losses and parameters agree to rounding. The Grams are compared at initialisation and,
    at the end, each path's against the closed form of its *own* returned parameters: training
    drives some pre-activations onto the ReLU kink (|P| ~ 1e-15, a sliding mode), where
    rounding-level parameter differences legitimately flip an activation indicator.
    """
    X, y = _data()
    models = _models(parameterization, torch.float64)[:4]
    rules = [_rule_lr(r, parameterization, torch.float64) for r in list(ALL_RULES.values())[:4]]
    kw = {"loss": LOSS_OF[parameterization], "diagnostics_every": 50}
    fast = train(models, X, y, rules, 200, **kw)
    slow = train(models, X, y, rules, 200, fast_path=False, **kw)
    for model, f, s in zip(models, fast, slow, strict=True):
        assert np.max(np.abs(f.losses - s.losses)) / f.losses[0] <= 1e-12
        for key in f.params:
            torch.testing.assert_close(f.params[key], s.params[key], rtol=1e-10, atol=1e-12)
        lam0 = np.linalg.eigvalsh(_closed_form_gram(model, X))
        for res in (f, s):
            d = res.diagnostics
            assert [d.lambda_min[0], d.lambda_max[0]] == pytest.approx(lam0[[0, -1]], rel=1e-10)
            final = copy.deepcopy(model)
            final.load_state_dict(res.params)
            lam = np.linalg.eigvalsh(_closed_form_gram(final, X))
            assert [d.lambda_min[-1], d.lambda_max[-1]] == pytest.approx(lam[[0, -1]], rel=1e-10)
        # weight_change: the first layer on the fast path, all trained tensors on the generic
        # path (result.Diagnostics); they coincide in theory mode, where only W is trained.
        state0 = model.state_dict()
        trained = [k for k, p in model.named_parameters() if p.requires_grad]
        first = torch.linalg.norm(f.params["W"] - state0["W"]).item()
        every = math.sqrt(
            sum(torch.linalg.norm(s.params[k] - state0[k]).item() ** 2 for k in trained)
        )
        assert f.diagnostics.weight_change[-1] == pytest.approx(first, rel=1e-10)
        assert s.diagnostics.weight_change[-1] == pytest.approx(every, rel=1e-10)


def test_heterogeneous_list_is_grouped_and_kept_in_order():
    """Two-layer (both parameterisations), deep and Adam networks in one call: each result
    equals training that network alone, and no model passed in is modified."""
    X, y = _data()
    g = torch.Generator().manual_seed(9)
    models = [
        TwoLayerReLU(DIM, 32, generator=g),
        DeepReLU(DIM, 16, 2, generator=g),
        TwoLayerReLU(DIM, 48, parameterization="notebook", generator=g),
        TwoLayerReLU(DIM, 64, generator=g),
        DeepReLU(DIM, 16, 2, generator=g),
    ]
    rules = [GD(0.1), HeavyBall(0.02, beta=0.5), GD(0.002), Adam(1e-3), Adam(1e-3)]
    before = [copy.deepcopy(m.state_dict()) for m in models]
    together = train(models, X, y, rules, 100)
    for model, rule, result, state in zip(models, rules, together, before, strict=True):
        (alone,) = train(model, X, y, rule, 100)
        assert result.rule == rule and result.width == model.width
        np.testing.assert_allclose(result.losses, alone.losses, rtol=1e-12, atol=0)
        assert result.losses[-1] < result.losses[0]
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k])
