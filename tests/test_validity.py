"""The validity record: when the kernel model stops holding (ntkdyn.validity).

Every check has a case that must hold and one that must not: a wide network holds over a short
probe, a narrow one with a large step leaves (and the warning says so); the record of a run
against its own prediction holds, against another rule's prediction it departs; the band and
the thresholds act exactly where they are set. The measurements themselves are recomputed
independently (a plain torch loop, Jacobians from torch.func).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev

from ntkdyn.function_space import FunctionPrediction
from ntkdyn.linearized import Linearized, linearize
from ntkdyn.models import TwoLayerReLU
from ntkdyn.optim.rules import parse
from ntkdyn.training import train
from ntkdyn.training.result import Diagnostics
from ntkdyn.validity import (
    KERNEL_DRIFT_THRESHOLD,
    LAMBDA_MIN_DRIFT_THRESHOLD,
    PATTERN_FLIP_THRESHOLD,
    VALIDITY_BAND,
    KernelRegimeWarning,
    from_run,
    probe,
)

#: The probe and the independent loop below run the same float64 operations up to summation
#: order (kernel Grams through different code paths): errors ~1e-15 ||H||, against drifts of
#: 1e-2 and more here.
MEASURE_RTOL = 1e-9
#: The probe and the training engine train the same float64 network through different code
#: (autograd on an nn.Module against the engine's batched update): rounding of ~1e-16 per
#: operation, amplified by the kernel's conditioning over 30 steps, stays far below this.
ENGINE_RTOL = 1e-10
#: A model linear in its parameters is its own linearisation: the network's loss and the
#: function-space prediction agree to float64 rounding accumulated over the steps.
LINEAR_MODEL_RTOL = 1e-9

N, D = 20, 5


def _data(n=N, d=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def _mlp(width, d=D, outputs=1, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d, width), torch.nn.ReLU(), torch.nn.Linear(width, outputs)
    )


def _gd(lin: Linearized, h: float) -> str:
    """GD with ``lr * lambda_max(H) = h`` (half-sum loss: K = H)."""
    return f"gd:lr={h / float(np.linalg.eigvalsh(lin.kernel.K).max())!r}"


@pytest.fixture(scope="module")
def wide():
    """Width 4096, n = 20, GD at h = 0.5 for 30 steps: (lin, rule, record)."""
    X, y = _data()
    lin = linearize(_mlp(4096), X, y, loss="half-sum")
    rule = _gd(lin, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelRegimeWarning)  # a wide network must not warn
        record = lin.validity(rule, 30)
    return lin, rule, record


@pytest.fixture(scope="module")
def narrow():
    """Width 12, GD at h = 1.8 (stable for the kernel, far too large for the network)."""
    X, y = _data()
    lin = linearize(_mlp(12), X, y, loss="half-sum")
    return lin, _gd(lin, 1.8)


# ------------------------------------------------------------------------------------------
# A wide network holds; a narrow one with a large step does not.


def test_wide_network_holds(wide):
    _, _, record = wide
    assert record.holds and record.judged
    assert record.departure_step is None and record.warning_step is None
    assert np.nanmax(np.abs(record.loss_ratio - 1.0)) <= VALIDITY_BAND
    assert record.kernel_drift[-1] <= KERNEL_DRIFT_THRESHOLD
    assert record.pattern_flips is not None  # nn.ReLU gates were seen
    assert record.pattern_flips[-1] <= PATTERN_FLIP_THRESHOLD
    assert record.checkpoints[0] == 0 and record.checkpoints[-1] == 30
    assert record.suggested_lr is None and record.width_factor is None
    assert "holds" in record.summary()


def test_narrow_network_with_a_large_step_leaves_and_warns(narrow):
    lin, rule = narrow
    with pytest.warns(KernelRegimeWarning, match="leaving its kernel regime") as caught:
        record = lin.validity(rule, 30)
    assert not record.holds
    assert record.warning_step is not None and record.departure_step is not None
    # the drift is flagged no later than the loss leaves the band
    assert record.warning_step <= record.departure_step
    assert np.max(record.kernel_drift) > KERNEL_DRIFT_THRESHOLD
    assert abs(record.loss_ratio[record.departure_step] - 1.0) > VALIDITY_BAND
    message = str(caught[0].message)
    assert message == record.summary()
    assert "kernel drift" in message and "ReLU patterns flipped" in message
    assert "wider network" in message and "lr <=" in message
    assert record.suggested_lr is not None and record.suggested_lr < parse(rule).lr
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelRegimeWarning)  # warn=False: the record only
        without = lin.validity(rule, 30, warn=False)
    assert without.departure_step == record.departure_step


def test_measurements_match_an_independent_loop():
    """Kernel drift, lambda_min drift, flips and weight movement recomputed from scratch."""
    X, y = _data(n=10)
    net = _mlp(12)
    lin = linearize(net, X, y, loss="half-sum")
    lr = 1.5 / float(np.linalg.eigvalsh(lin.kernel.K).max())
    steps = 8
    record = probe(lin, f"gd:lr={lr!r}", steps, checkpoints=[4, 8])
    assert record.checkpoints.tolist() == [0, 4, 8]

    model = copy.deepcopy(lin.model)
    params = dict(model.named_parameters())
    W0 = torch.cat([p.detach().reshape(-1).clone() for p in params.values()])
    optimizer = torch.optim.SGD(params.values(), lr=lr)
    kernels, gates, moved, losses = [], [], [], []
    for k in range(steps + 1):
        out = model(X).reshape(-1)
        loss = 0.5 * ((out - y) ** 2).sum()
        losses.append(float(loss.detach()))
        if k in (0, 4, 8):
            kernels.append(_jacobian_gram(model, X))
            gates.append(model[0](X) > 0)
            W = torch.cat([p.detach().reshape(-1) for p in params.values()])
            moved.append(float((W - W0).norm() / W0.norm()))
        if k < steps:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    H0 = kernels[0]
    drift = [np.linalg.norm(H - H0) / np.linalg.norm(H0) for H in kernels]
    lmin0 = np.linalg.eigvalsh(H0)[0]
    lam = [np.linalg.eigvalsh(H)[0] / lmin0 - 1.0 for H in kernels]
    flips = [float((g != gates[0]).double().mean()) for g in gates]
    np.testing.assert_allclose(record.network_loss, losses, rtol=MEASURE_RTOL)
    np.testing.assert_allclose(record.kernel_drift, drift, rtol=MEASURE_RTOL, atol=1e-14)
    np.testing.assert_allclose(record.lambda_min_drift, lam, rtol=MEASURE_RTOL, atol=1e-12)
    np.testing.assert_allclose(record.weight_movement, moved, rtol=MEASURE_RTOL)
    np.testing.assert_array_equal(record.pattern_flips, flips)
    assert record.pattern_flips[-1] > 0  # the case is not vacuous: gates did flip
    predicted = lin.predict(f"gd:lr={lr!r}", steps).loss
    np.testing.assert_allclose(record.loss_ratio, np.asarray(losses) / predicted, rtol=1e-12)


def _jacobian_gram(model, X) -> np.ndarray:
    params = {k: p.detach() for k, p in model.named_parameters()}
    jac = jacrev(lambda p: functional_call(model, p, (X,)).reshape(-1))(params)
    J = torch.cat([j.reshape(X.shape[0], -1) for j in jac.values()], dim=1)
    return (J @ J.T).numpy()


def test_probe_agrees_with_the_training_engine():
    """ntkdyn's own TwoLayerReLU (functional torch.relu): the probe's losses, gate flips and
    least-eigenvalue drift are those the training engine records on its own path."""
    X, y = _data()
    net = TwoLayerReLU(D, 32, generator=torch.Generator().manual_seed(3))
    lin = linearize(net, X, y, loss="half-sum")
    rule = _gd(lin, 1.5)
    record = probe(lin, rule, 30, checkpoints=[10, 20, 30])
    run = train([net], X, y, [parse(rule)], 30, diagnostics_every=10)[0]
    engine = run.diagnostics
    assert engine.steps.tolist() == record.checkpoints.tolist()
    np.testing.assert_allclose(record.network_loss, run.losses, rtol=ENGINE_RTOL)
    np.testing.assert_array_equal(record.pattern_flips, engine.pattern_change)
    assert record.pattern_flips[-1] > PATTERN_FLIP_THRESHOLD  # gates did flip
    lam = engine.lambda_min / engine.lambda_min[0] - 1.0
    np.testing.assert_allclose(record.lambda_min_drift, lam, rtol=ENGINE_RTOL, atol=1e-12)
    # the same run read back from the engine: the same verdict, with its spectral drift
    replay = from_run(lin.predict(rule, 30), run)
    assert replay.kernel_norm == "spectral" and record.kernel_norm == "frobenius"
    assert (replay.departure_step, replay.warning_step) == (
        record.departure_step,
        record.warning_step,
    )
    assert not replay.holds


def test_a_model_linear_in_its_parameters_holds_at_any_stable_step():
    """A linear model is its own linearisation: no drift, no flips, the loss on the prediction
    (multi-output, cross-entropy, full and trace kernels alike), even at a large step."""
    X, _ = _data()
    labels = torch.arange(N) % 3
    torch.manual_seed(1)
    net = torch.nn.Linear(D, 3)
    for structure in ("full", "block-diagonal", "trace"):
        lin = linearize(net, X, labels, loss="cross-entropy", structure=structure)
        record = probe(lin, "hb:lr=2.0,beta=0.9", 40)
        assert record.holds, record.summary()
        assert record.pattern_flips is None  # no ReLU in the forward pass
        assert np.max(record.kernel_drift) <= 1e-12
        np.testing.assert_allclose(record.loss_ratio, 1.0, rtol=0, atol=LINEAR_MODEL_RTOL)


# ------------------------------------------------------------------------------------------
# A finished run against its prediction.


def test_run_against_its_own_prediction_holds_and_against_another_departs(wide):
    lin, rule, record = wide
    right = lin.predict(rule, 30)
    assert from_run(right, record.network_loss).holds
    # the prediction of another rule (heavy ball at the same lr): the network cannot follow it
    wrong = lin.predict(f"hb:lr={parse(rule).lr!r},beta=0.9", 30)
    departed = from_run(wrong, record.network_loss)
    assert not departed.holds
    assert departed.departure_step is not None and departed.departure_step > 0
    assert abs(departed.loss_ratio[departed.departure_step] - 1.0) > VALIDITY_BAND
    assert "band" in departed.summary()


def _synthetic(ratios, floor=0.0):
    """A prediction ``2^-k`` and a network ``2^-k * ratio_k``: every ratio exact in float64."""
    ratios = np.asarray(ratios, dtype=np.float64)
    predicted = 2.0 ** -np.arange(ratios.size, dtype=np.float64)
    prediction = FunctionPrediction(
        "gd:lr=0.1", predicted, np.array([0]), np.zeros((1, 1, 1)), None, floor=floor
    )
    return prediction, predicted * ratios


def test_band_semantics_are_exact():
    inside = [1.0, 1.0625, 0.90625, 1.09375]  # |r - 1| = 0, 1/16, 3/32, 3/32: all <= 0.10
    prediction, curve = _synthetic(inside + [1.125, 1.0])
    record = from_run(prediction, curve)
    assert record.departure_step == 4 and not record.holds
    assert record.loss_ratio.tolist() == inside + [1.125, 1.0]
    prediction, curve = _synthetic(inside + [0.875])
    assert from_run(prediction, curve).departure_step == 4  # below the band too
    prediction, curve = _synthetic(inside)
    held = from_run(prediction, curve)
    assert held.holds and held.departure_step is None
    # on the band is inside, a hair beyond it is out (band and ratios exact in binary)
    edge, on_edge = _synthetic([1.0, 1.125, 0.875, 1.125 + 2.0**-40])
    assert from_run(edge, on_edge, band=0.125).departure_step == 3
    # a band of 1/16 is left at the first |r - 1| = 3/32
    assert from_run(prediction, curve, band=0.0625).departure_step == 2
    assert from_run(prediction, curve, band=0.0625).band == 0.0625


def test_unresolved_and_diverged_steps():
    # below the prediction's floor nothing is judged, however far the network is
    prediction, curve = _synthetic([1.0, 1.0, 1.0, 5.0, 9.0], floor=0.2)
    record = from_run(prediction, curve)
    assert record.holds and np.isnan(record.loss_ratio[3:]).all()
    # a floor of the run's own (float32) is honoured the same way
    prediction, curve = _synthetic([1.0, 1.0, 1.0, 5.0, 9.0])
    assert from_run(prediction, curve, floor=0.2).holds
    assert from_run(prediction, curve).departure_step == 3
    # a non-finite network loss is a departure at that step
    prediction, curve = _synthetic([1.0, 1.0, 1.0, 1.0])
    curve[2] = np.nan
    record = from_run(prediction, curve)
    assert record.departure_step == 2 and record.diverged_at == 2
    assert "diverged at step 2" in record.summary()


def _diagnostics(kernel_change=0.0, lambda_min=1.0, flips=0.0):
    steps = np.array([0, 10, 20])
    return Diagnostics(
        steps=steps,
        lambda_min=np.array([1.0, 1.0, lambda_min]),
        lambda_max=np.full(3, 10.0),
        kernel_change=np.array([0.0, 0.0, kernel_change]),
        weight_change=np.zeros(3),
        pattern_change=np.array([0.0, 0.0, flips]),
    )


@pytest.mark.parametrize(
    ("name", "over", "under", "label"),
    [
        # kernel_change is ||H(t) - H(0)||_2, relative to lambda_max(H(0)) = 10
        (
            "kernel_change",
            10.0 * KERNEL_DRIFT_THRESHOLD * 1.01,
            10.0 * KERNEL_DRIFT_THRESHOLD,
            "kernel drift 5%",
        ),
        ("lambda_min", 1.0 - LAMBDA_MIN_DRIFT_THRESHOLD * 1.01, 1.0 - 0.04, "lambda_min 5%"),
        ("flips", PATTERN_FLIP_THRESHOLD * 1.01, PATTERN_FLIP_THRESHOLD, "ReLU patterns 2.5%"),
    ],
)
def test_each_threshold_alone_fails_the_record_inside_the_band(name, over, under, label):
    prediction, curve = _synthetic([1.0] * 21)
    flagged = from_run(prediction, curve, _diagnostics(**{name: over}))
    assert flagged.departure_step is None  # the loss is exactly on the prediction ...
    assert not flagged.holds and flagged.warning_step == 20  # ... and still flagged
    assert flagged.exceeded == (label,) and label in flagged.summary()
    assert flagged.kernel_norm == "spectral"
    assert from_run(prediction, curve, _diagnostics(**{name: under})).holds


def test_a_run_result_carries_its_diagnostics():
    prediction, curve = _synthetic([1.0] * 21)

    class Run:  # the two attributes of ntkdyn.training.RunResult that from_run reads
        losses = curve
        diagnostics = _diagnostics(flips=0.5)

    record = from_run(prediction, Run())
    assert record.warning_step == 20 and record.pattern_flips is not None


# ------------------------------------------------------------------------------------------
# Adam: drift only.


def test_adam_is_judged_on_drift_only(narrow):
    lin, _ = narrow
    calm = probe(lin, "adam:lr=1e-6", 20)
    assert calm.loss_ratio is None and calm.predicted_loss is None and not calm.judged
    assert calm.holds and "not judged" in calm.summary()
    wild = probe(lin, "adam:lr=0.1", 20)
    assert not wild.holds and wild.warning_step is not None and wild.departure_step is None
    assert "not judged" in wild.summary() and "lr <=" in wild.summary()


# ------------------------------------------------------------------------------------------
# Bad input.


def test_bad_input_names_the_field(narrow):
    lin, rule = narrow
    with pytest.raises(ValueError, match="`steps`"):
        probe(lin, rule, 0)
    with pytest.raises(ValueError, match="`checkpoints`"):
        probe(lin, rule, 10, checkpoints=[3, 11])
    with pytest.raises(ValueError, match="`checkpoints`"):
        probe(lin, rule, 10, checkpoints=[1.5])
    with pytest.raises(ValueError, match="`band`"):
        probe(lin, rule, 10, band=-0.1)
    bare = Linearized.from_kernels(np.eye(3), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="`lin`"):
        probe(bare, rule, 10)
    prediction, curve = _synthetic([1.0] * 5)
    with pytest.raises(ValueError, match="`losses`"):
        from_run(prediction, curve[:-1])
    with pytest.raises(ValueError, match="`floor`"):
        from_run(prediction, curve, floor=-1.0)
