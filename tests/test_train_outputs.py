"""``train`` on any model and any loss, with the outputs at chosen steps.

Reference: a plain torch loop, ``model(X)``, ``Loss.torch``, ``backward`` and
``rule.torch(params).step()``, one network at a time. The engine (vmapped ``torch.func`` path,
networks batched) must reproduce its losses and outputs: the same arithmetic up to the order of
floating-point reductions, so agreement is at rounding level (``MATCH``).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from ntkdyn.losses import resolve_loss
from ntkdyn.models import TwoLayerReLU
from ntkdyn.optim import GD, Adam, HeavyBall, HigherOrderMomentum, Nesterov, NesterovTorch
from ntkdyn.training import train
from ntkdyn.training.generic import GenericEnsemble

from engine_cases import DEVICES

pytestmark = pytest.mark.usefixtures("single_thread")

#: max |engine - plain loop| over the run, relative to the largest |reference| value (losses:
#: L_0 scale; outputs: the largest |F|). Both sides do the same float64 arithmetic except for
#: the order of reductions (vmap / batched GEMMs vs one network), ~1e-16 per operation, grown
#: over 20 steps of a tiny contracting run; 1e-12 leaves a wide margin above that and sits far
#: below the 1e-6-relative lr perturbation of ``test_the_match_can_fail`` (difference ~1e-8).
MATCH = 1e-12
STEPS = 20
RECORD = (0, 7, STEPS)
N, D, C = 6, 4, 3


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    X_test = torch.randn(4, D, generator=g, dtype=torch.float64)
    targets = {
        "half-sum": torch.randn(N, C, generator=g, dtype=torch.float64),
        "mse": torch.randn(N, C, generator=g, dtype=torch.float64),
        "logistic": torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64),
        "cross-entropy": torch.tensor([0, 2, 1, 1, 0, 2]),
        "custom": torch.randn(N, C, generator=g, dtype=torch.float64),
    }
    return X, X_test, targets


def _custom(F, T):
    """A smooth non-quadratic loss: quartic residuals plus a small output penalty."""
    return 0.25 * ((F - T) ** 4).sum() + 0.1 * (F * F).mean()


LOSSES = {"half-sum": "half-sum", "mse": "mse", "logistic": "logistic"}
LOSSES.update({"cross-entropy": "cross-entropy", "custom": _custom})
#: Per loss: the learning rate of GD (the momentum rules use a fraction, all stable here).
LR = {"half-sum": 0.05, "mse": 0.3, "logistic": 0.5, "cross-entropy": 0.5, "custom": 0.02}


def _rules(lr):
    return [
        GD(lr),
        HeavyBall(lr / 4, beta=0.6),
        Nesterov(lr / 2, r=3.0),
        NesterovTorch(lr / 2, r=3.0),
        HigherOrderMomentum(lr / 4, b1=0.5, b2=0.1),
        Adam(0.01),
    ]


def _seeded(model, seed):
    """``model`` in float64 with N(0, 0.5^2) weights from its own generator (no global seed)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


def _mlp(outputs, seed):
    """Three linear layers with biases, tanh between them."""
    layers = [nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, outputs)]
    return _seeded(nn.Sequential(*layers), seed)


def plain_loop(model, X, y, rule, steps, loss, record=RECORD, X_test=None):
    """Losses L_0..L_steps and the outputs (on X and X_test) at ``record``, one network."""
    model = copy.deepcopy(model)
    loss = resolve_loss(loss)
    n = X.shape[0]
    columns = model(X).reshape(n, -1).shape[1]
    T = torch.as_tensor(loss.targets(y, n, columns))
    opt = rule.torch([p for p in model.parameters() if p.requires_grad])
    losses, outs, test_outs = [], [], []
    for k in range(steps + 1):
        F = model(X).reshape(n, columns)
        value = loss.torch(F, T)
        losses.append(value.item())
        if k in record:
            outs.append(F.detach().clone())
            if X_test is not None:
                test_outs.append(model(X_test).detach().reshape(X_test.shape[0], columns))
        if k == steps:
            break
        opt.zero_grad()
        value.backward()
        opt.step()
    tests = torch.stack(test_outs).numpy() if X_test is not None else None
    return np.array(losses), torch.stack(outs).numpy(), tests


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


# --------------------------------------------------------------------------------------------
# Exactness: every loss, every rule, against the plain loop.


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_train_matches_plain_loop(name, device):
    X, X_test, targets = _data()
    y, loss = targets[name], LOSSES[name]
    outputs = 1 if name == "logistic" else C
    rules = _rules(LR[name])
    models = [_mlp(outputs, seed=10 + i) for i in range(len(rules))]
    kw = {"loss": loss, "outputs_at": RECORD, "X_test": X_test, "device": device}
    results = train(models, X, y, rules, STEPS, **kw)
    for model, rule, res in zip(models, rules, results, strict=True):
        ref, F, F_test = plain_loop(model, X, y, rule, STEPS, loss, X_test=X_test)
        assert ref[-1] < 0.9 * ref[0], f"{rule}: the run must train (not a vacuous match)"
        assert res.status == "ok" and res.loss == resolve_loss(loss).name
        assert res.outputs.shape == (len(RECORD), N, outputs) and res.outputs.dtype == np.float64
        assert res.test_outputs.shape == (len(RECORD), 4, outputs)
        assert list(res.output_steps) == list(RECORD)
        assert _rel(res.losses, ref) <= MATCH, f"{rule}: losses {_rel(res.losses, ref):.3g}"
        assert _rel(res.outputs, F) <= MATCH, f"{rule}: outputs {_rel(res.outputs, F):.3g}"
        assert _rel(res.test_outputs, F_test) <= MATCH
        # the recorded loss is the loss of the recorded outputs, in Loss.value's units
        T = resolve_loss(loss).targets(y, N, outputs)
        value = resolve_loss(loss).value(res.outputs[-1], T)
        assert value == pytest.approx(res.losses[-1], rel=MATCH)


def test_the_match_can_fail():
    """An lr 1e-6 away (relative) is seen: MATCH separates equal runs from different ones."""
    X, _, targets = _data()
    model, rule = _mlp(C, seed=3), HeavyBall(0.0125, beta=0.6)
    (res,) = train(model, X, targets["half-sum"], rule, STEPS, outputs_at=RECORD)
    ref, F, _ = plain_loop(
        model, X, targets["half-sum"], rule.with_lr(0.0125 * (1 + 1e-6)), STEPS, "half-sum"
    )
    assert _rel(res.losses, ref) > MATCH and _rel(res.outputs, F) > MATCH


def test_cnn_trains_on_images():
    g = torch.Generator().manual_seed(4)
    X = torch.randn(N, 1, 8, 8, generator=g, dtype=torch.float64)
    X_test = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    cnn = _seeded(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(72, C)), 4)
    rule = GD(0.5)
    (res,) = train(cnn, X, y, rule, STEPS, loss="cross-entropy", outputs_at=[STEPS], X_test=X_test)
    ref, F, F_test = plain_loop(cnn, X, y, rule, STEPS, "cross-entropy", (STEPS,), X_test)
    assert res.losses[-1] < 0.5 * res.losses[0]
    assert _rel(res.losses, ref) <= MATCH and _rel(res.outputs, F) <= MATCH
    assert res.test_outputs.shape == (1, 3, C) and _rel(res.test_outputs, F_test) <= MATCH
    assert res.diagnostics.lambda_min.shape == (2,)


# --------------------------------------------------------------------------------------------
# Shapes, the multi-output Gram, the two-layer fast path, divergence.


class _Column(nn.Module):
    """A model returning ``(n, 1)`` (or, with ``drop``, one row too few)."""

    def __init__(self, drop=False):
        super().__init__()
        self.inner = _mlp(1, seed=7)
        self.drop = drop

    def forward(self, X):
        F = self.inner(X)
        return F[:-1] if self.drop else F


def test_n_by_1_outputs_equal_n_outputs():
    """A model returning (n, 1) trains exactly like the same model returning (n,)."""
    X, _, targets = _data()
    y = targets["half-sum"][:, 0]
    column = _Column()
    flat = nn.Sequential(column.inner, nn.Flatten(0))
    a, b = train([column, flat], X, y, GD(0.05), STEPS, outputs_at=[STEPS])
    np.testing.assert_allclose(a.losses, b.losses, rtol=MATCH, atol=0)
    assert a.outputs.shape == b.outputs.shape == (1, N, 1)


def test_multi_output_gram_is_the_full_nc_gram():
    """Rows i C + c (the order of outputs.reshape(-1)); an (n x n) Gram would differ."""
    X, _, targets = _data()
    model = _mlp(C, seed=5)
    T = torch.as_tensor(resolve_loss("mse").targets(targets["mse"], N, C))
    batch = GenericEnsemble(
        [model], [GD(0.1)], X, T, steps=1, loss=resolve_loss("mse"), scalar=False
    )
    H = batch.diagnostics()["gram"][0]
    params = dict(model.named_parameters())
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (X,)).reshape(-1))(
        params
    )
    J = torch.cat([j.reshape(N * C, -1) for j in jac.values()], dim=1)
    assert H.shape == (N * C, N * C)
    torch.testing.assert_close(H, J @ J.T, rtol=1e-12, atol=1e-12)
    swapped = J.reshape(N, C, -1).transpose(0, 1).reshape(N * C, -1)  # rows c N + i
    assert not torch.allclose(H, swapped @ swapped.T, rtol=1e-6, atol=1e-6)
    (res,) = train(model, X, targets["mse"], GD(0.1), 0, loss="mse")
    lam = torch.linalg.eigvalsh(J @ J.T)
    assert res.diagnostics.lambda_max[0] == pytest.approx(lam[-1].item(), rel=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("parameterization", ["theory", "notebook"])
def test_fast_path_outputs(parameterization, device):
    """Two-layer outputs are (k, n, 1), equal the torch.func path's, and cost no bit."""
    X, X_test, targets = _data()
    y = targets["half-sum"][:, 0]
    nets = [
        TwoLayerReLU(
            D, w, parameterization=parameterization, generator=torch.Generator().manual_seed(w)
        )
        for w in (16, 40)
    ]
    rules = [GD(0.1), HeavyBall(0.05, beta=0.5)]
    kw = {"outputs_at": range(0, STEPS + 1, 5), "X_test": X_test, "device": device}
    kw["reparametrize"] = True
    fast = train(nets, X, y, rules, STEPS, **kw)
    slow = train(nets, X, y, rules, STEPS, fast_path=False, **kw)
    bare = train(nets, X, y, rules, STEPS, reparametrize=True, device=device)
    for net, f, s, b in zip(nets, fast, slow, bare, strict=True):
        assert f.outputs.shape == (5, N, 1) and f.test_outputs.shape == (5, 4, 1)
        assert np.array_equal(f.losses, b.losses)  # recording does not touch the step
        assert _rel(f.outputs, s.outputs) <= MATCH and _rel(f.test_outputs, s.test_outputs) <= MATCH
        final = copy.deepcopy(net)
        final.load_state_dict(f.params)
        with torch.no_grad():
            assert _rel(f.outputs[-1, :, 0], final(X).numpy()) <= MATCH
        assert f.losses[-1] == pytest.approx(0.5 * np.sum((f.outputs[-1, :, 0] - y.numpy()) ** 2))


def test_diverged_network_outputs_are_nan_after_freezing():
    X, _, targets = _data()
    models = [_mlp(C, seed=1), _mlp(C, seed=2)]
    res = train(models, X, targets["half-sum"], [GD(0.05), GD(50.0)], 10, outputs_at=range(11))
    ok, bad = res
    assert ok.status == "ok" and np.all(np.isfinite(ok.outputs))
    assert bad.status == "diverged"
    k = bad.diverged_at
    assert np.all(np.isnan(bad.outputs[k + 1 :])) and not np.any(np.isnan(bad.outputs[:k]))


def test_no_outputs_by_default_and_steps_sorted():
    X, _, targets = _data()
    model = _mlp(C, seed=1)
    (plain,) = train(model, X, targets["mse"], GD(0.1), 3, loss="mse")
    assert plain.output_steps is None and plain.outputs is None and plain.test_outputs is None
    (res,) = train(model, X, targets["mse"], GD(0.1), 3, loss="mse", outputs_at=[3, 0, 3])
    assert list(res.output_steps) == [0, 3] and res.output_steps.dtype == np.int64
    (none,) = train(model, X, targets["mse"], GD(0.1), 3, loss="mse", outputs_at=[])
    assert none.outputs.shape == (0, N, C) and none.test_outputs is None


# --------------------------------------------------------------------------------------------
# Bad input: one ValueError naming the field.


def _bad_model():
    return _Column(drop=True)


BAD = {
    "labels-out-of-range": ({"loss": "cross-entropy", "y": [0, 1, 2, 3, 0, 1]}, "y"),
    "labels-negative": ({"loss": "cross-entropy", "y": [0, 1, 2, -1, 0, 1]}, "y"),
    "logistic-0-1": ({"loss": "logistic", "models": _mlp(1, 0), "y": [0, 1, 0, 1, 1, 0]}, "y"),
    "logistic-one-label-3-outputs": ({"loss": "logistic", "y": [1, -1, 1, 1, -1, 1]}, "y"),
    "cross-entropy-1-output": (
        {"loss": "cross-entropy", "models": _mlp(1, 0), "y": [0] * N},
        "loss",
    ),
    "wrong-rows": ({"models": _bad_model(), "y": np.zeros(N)}, "models[0]"),
    "outputs-at-past-end": ({"outputs_at": [STEPS + 1]}, "outputs_at"),
    "outputs-at-negative": ({"outputs_at": [-1]}, "outputs_at"),
    "outputs-at-float": ({"outputs_at": [1.5]}, "outputs_at"),
    "outputs-at-bool": ({"outputs_at": [True]}, "outputs_at"),
    "outputs-at-int": ({"outputs_at": 3}, "outputs_at"),
    "X-test-without-steps": ({"X_test": np.zeros((2, D))}, "X_test"),
    "X-test-shape": ({"X_test": np.zeros((2, D + 1)), "outputs_at": [0]}, "X_test"),
    "X-empty": ({"X": np.zeros((0, D))}, "X"),
    "y-columns": ({"y": np.zeros((N, C + 1))}, "y"),
    "custom-not-scalar": ({"loss": lambda F, T: F - T}, "loss"),
    "loss-name": ({"loss": "hinge"}, "loss"),
}


@pytest.mark.parametrize("kwargs, field", list(BAD.values()), ids=list(BAD))
def test_bad_input_names_the_field(kwargs, field):
    X, _, targets = _data()
    args = {"models": _mlp(C, 0), "X": X, "y": targets["mse"], "rules": GD(0.1), "steps": STEPS}
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(f"`{field}`")):
        train(args.pop("models"), args.pop("X"), args.pop("y"), args.pop("rules"), **args)


def test_good_input_passes_the_same_checks():
    """The refusals above are not blanket: the in-range versions train."""
    X, _, targets = _data()
    y = [0, 1, 2, 2, 0, 1]
    (res,) = train(_mlp(C, 0), X, y, GD(0.1), 2, loss="cross-entropy", outputs_at=[0, STEPS - 18])
    assert res.status == "ok" and list(res.output_steps) == [0, 2]
    (res,) = train(_mlp(1, 0), X, [1, -1, 1, -1, 1, -1], GD(0.1), 2, loss="logistic")
    assert res.status == "ok"
