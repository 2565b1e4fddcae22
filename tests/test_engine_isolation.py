"""Training engine: diagnostics and final parameters against direct computation from the returned
state, divergence isolation within a batch, and boundary validation.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from ntkdyn.models import DeepReLU, TwoLayerReLU
from ntkdyn.optim import GD, Adam, HeavyBall, NesterovTorch
from ntkdyn.training import DIVERGENCE_FACTOR, train
from ntkdyn.training.ensemble import TwoLayerEnsemble

from engine_cases import (
    DEVICES,
    DIM,
    LOSS_OF,
    N_ROWS,
    _closed_form_gram,
    _data,
    _loss,
    _models,
    _rule_lr,
)

# Tiny problems: one torch thread per module (the single_thread fixture, conftest.py).
pytestmark = pytest.mark.usefixtures("single_thread")


#: A network trained in a batch of another shape (alone, or without the diverging member) may
#: get other GEMM kernels, which on another BLAS or thread count sum in another order: such
#: runs agree to rounding (relative to L0 for the losses), not bit for bit.
OTHER_SHAPE_RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


# --------------------------------------------------------------------------------------------
# Diagnostics and final parameters against direct computation from the returned state.


@pytest.mark.parametrize("parameterization", ["theory", "notebook"])
def test_diagnostics_and_final_params(parameterization):
    X, y = _data()
    model = _models(parameterization, torch.float64)[1]
    rule = _rule_lr(HeavyBall(1.0, beta=0.9), parameterization, torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (res,) = train(model, X, y, rule, 120, loss=LOSS_OF[parameterization], diagnostics_every=50)
    for k, v in model.state_dict().items():  # the model passed in is unchanged
        assert torch.equal(v, before[k])
    assert list(res.diagnostics.steps) == [0, 50, 100, 120]
    final = copy.deepcopy(model)
    final.load_state_dict(res.params)
    # The last loss is the loss of the returned parameters.
    assert _loss(final(X), y, LOSS_OF[parameterization]).item() == pytest.approx(
        res.losses[-1], rel=1e-12
    )
    H0, H1 = _closed_form_gram(model, X), _closed_form_gram(final, X)
    lam0, lam1 = np.linalg.eigvalsh(H0), np.linalg.eigvalsh(H1)
    d = res.diagnostics
    assert d.lambda_min[[0, -1]] == pytest.approx([lam0[0], lam1[0]], rel=1e-10)
    assert d.lambda_max[[0, -1]] == pytest.approx([lam0[-1], lam1[-1]], rel=1e-10)
    assert d.kernel_change[0] == 0.0
    assert d.kernel_change[-1] == pytest.approx(np.abs(np.linalg.eigvalsh(H1 - H0)).max(), rel=1e-9)
    dW = (final.W - model.W).detach()
    assert d.weight_change[-1] == pytest.approx(torch.linalg.norm(dW).item(), rel=1e-9)
    pre0 = model.preactivation(X).detach() > 0
    pre1 = final.preactivation(X).detach() > 0
    assert d.pattern_change[0] == 0.0
    assert d.pattern_change[-1] == pytest.approx((pre0 != pre1).double().mean().item())
    assert d.pattern_change[-1] > 0  # something moved, so the comparison is not vacuous


# --------------------------------------------------------------------------------------------
# Divergence isolation.


def _divergence_case(dtype, device, *, fast=True):
    X, y = _data(dtype)
    g = torch.Generator().manual_seed(3)

    def make(w):
        return TwoLayerReLU(DIM, w, generator=g, dtype=dtype)

    stable = [make(32), make(64), make(48)]
    bad = make(40)
    base = [GD(0.1), HeavyBall(0.1, beta=0.9), NesterovTorch(0.1, r=3.0)]

    def run(ms, rs):
        return train(ms, X, y, rs, 300, device=device, fast_path=fast, diagnostics_every=100)

    return stable, bad, base, run


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_divergence_is_isolated(dtype, device):
    stable, bad, base, run = _divergence_case(dtype, device)
    # The diverging network sits in the middle of the batch, between the stable ones.
    with_bad = run(stable[:2] + [bad] + stable[2:], base[:2] + [GD(50.0)] + base[2:])
    replaced = run(stable[:2] + [bad] + stable[2:], base[:2] + [GD(0.05)] + base[2:])
    others = [r for i, r in enumerate(with_bad) if i != 2]
    for a, b in zip(others, [r for i, r in enumerate(replaced) if i != 2], strict=True):
        assert a.status == "ok"
        # bit-identical: the same batch shape and code path; isolation is the promise
        np.testing.assert_array_equal(a.losses, b.losses, err_msg="replaced")
    tol = OTHER_SHAPE_RTOL[dtype]
    if device == "cpu":  # a smaller batch: other GEMM shapes (checked on the CPU only)
        for a, b in zip(others, run(stable, base), strict=True):
            np.testing.assert_allclose(a.losses, b.losses, rtol=tol, atol=tol * b.losses[0])
    div = with_bad[2]
    k = div.diverged_at
    assert div.status == "diverged" and k is not None and k >= 1
    limit = DIVERGENCE_FACTOR * div.losses[0]
    assert not (div.losses[k] <= limit) and np.all(div.losses[:k] <= limit)
    assert np.all(np.isnan(div.losses[k + 1 :]))
    # Frozen at step k: the same batch run for only k steps ends with the same parameters.
    short = train(
        stable[:2] + [bad] + stable[2:],
        *_data(dtype),
        base[:2] + [GD(50.0)] + base[2:],
        k,
        device=device,
    )[2]
    for key in div.params:
        torch.testing.assert_close(div.params[key], short.params[key], rtol=0, atol=0)
    if device == "cpu":  # and so does the network trained alone (up to rounding: GEMM
        (alone,) = train(bad, *_data(dtype), GD(50.0), k)  # kernels depend on shapes)
        for key in div.params:
            torch.testing.assert_close(div.params[key], alone.params[key], rtol=tol, atol=0)
    late = div.diagnostics.steps > k
    assert np.all(np.isnan(div.diagnostics.lambda_min[late]))


def test_divergence_is_isolated_chunked_segment_sum(monkeypatch):
    monkeypatch.setattr(TwoLayerEnsemble, "_chunked", True)
    stable, bad, base, run = _divergence_case(torch.float64, "cpu")
    with_bad = run(stable[:2] + [bad] + stable[2:], base[:2] + [GD(50.0)] + base[2:])
    replaced = run(stable[:2] + [bad] + stable[2:], base[:2] + [GD(0.05)] + base[2:])
    for i in (0, 1, 3):
        np.testing.assert_array_equal(with_bad[i].losses, replaced[i].losses)
    assert with_bad[2].status == "diverged"


def test_divergence_is_isolated_generic_path():
    stable, bad, base, run = _divergence_case(torch.float64, "cpu", fast=False)
    with_bad = run(stable[:2] + [bad] + stable[2:], base[:2] + [GD(50.0)] + base[2:])
    replaced = run(stable[:2] + [bad] + stable[2:], base[:2] + [GD(0.05)] + base[2:])
    for i in (0, 1, 3):
        np.testing.assert_array_equal(with_bad[i].losses, replaced[i].losses)
    assert with_bad[2].status == "diverged"


def test_non_finite_initial_loss_is_diverged_at_zero():
    X, y = _data()
    model = TwoLayerReLU(DIM, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.W[0, 0] = float("inf")
    (res,) = train(model, X, y, GD(0.1), 5)
    assert res.status == "diverged" and res.diverged_at == 0
    assert np.all(np.isnan(res.losses[1:]))


# --------------------------------------------------------------------------------------------
# Boundary validation.


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"loss": "l2"}, "loss"),
        ({"rules": [GD(0.1), GD(0.1)]}, "rules"),
        ({"rules": "sgd:lr=0.1"}, "optimizer"),
        ({"dtype": torch.float16}, "dtype"),
        ({"diagnostics_every": 0}, "diagnostics_every"),
        ({"reparametrize": "yes"}, "reparametrize"),
        ({"y": torch.zeros(N_ROWS, 1, dtype=torch.float64)}, "y"),
        ({"X": torch.full((N_ROWS, DIM), float("nan"), dtype=torch.float64)}, "X"),
        ({"X": torch.zeros(N_ROWS, DIM + 1, dtype=torch.float64)}, "models[0]"),
        ({"models": []}, "models"),
        ({"progress": 3}, "progress"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    X, y = _data()
    args = {
        "models": _models("theory", torch.float64)[0],
        "X": X,
        "y": y,
        "rules": GD(0.1),
        "steps": 3,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(f"`{field}")):
        train(
            args.pop("models"),
            args.pop("X"),
            args.pop("y"),
            args.pop("rules"),
            args.pop("steps"),
            **args,
        )


def test_progress_zero_steps_and_no_diagnostics():
    X, y = _data()
    models = [_models("theory", torch.float64)[0], DeepReLU(DIM, 8, 1)]
    calls = []
    results = train(
        models, X, y, GD(0.1), 10, progress=lambda d, t: calls.append((d, t)), diagnostics=False
    )
    assert calls[-1] == (20, 20) and all(t == 20 for _, t in calls)  # two batches of 10 steps
    assert all(r.diagnostics is None and r.losses.shape == (11,) for r in results)
    (zero,) = train(models[0], X, y, Adam(1e-3), 0)
    assert zero.losses.shape == (1,) and list(zero.diagnostics.steps) == [0]
    assert zero.losses[0] == pytest.approx(_loss(models[0](X), y, "half-sum").item(), rel=1e-14)


def test_allow_tf32_flags_restored():
    X, y = _data()
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    train(_models("theory", torch.float64)[0], X, y, GD(0.1), 2, allow_tf32=True)
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
