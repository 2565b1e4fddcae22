"""Adam's late phase (ntkdyn.adaptive): the exact correspondence with heavy ball on the
preconditioned kernel, and the prediction against the network on its window.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ntkdyn.adaptive import (
    PRECONDITIONER_DRIFT_THRESHOLD,
    LatePhase,
    _predict,
    _scale,
    adam_late_phase,
)
from ntkdyn.data import load_dataset
from ntkdyn.models import TwoLayerReLU
from ntkdyn.optim import Adam
from ntkdyn.validity import KERNEL_DRIFT_THRESHOLD, VALIDITY_BAND

pytestmark = pytest.mark.usefixtures("single_thread")

#: The recurrence against a parameter-space loop of the same algebra (float64, 300 steps):
#: two orderings of the same sums, each step contracting; rounding is ~1e-15 of L_s.
EXACT = 1e-12
#: Dropping the velocity u_s = J d_s must change the curve by far more than EXACT; with
#: beta1 = 0.9 the momentum carries ~1/(1 - beta1) steps' worth of displacement (measured
#: ~0.1 of L_s here), so 1e-3 is a safe floor.
VELOCITY_MATTERS = 1e-3
#: A window that tests something: the loss falls by at least this many decades on it.
MIN_DECADES = 3.0

# The wide setting: n = 20 unit Gaussian rows in d = 5, a theory two-layer net, float64.
N, D, WIDE, TINY = 20, 5, 4096, 16
RULE = Adam(1e-2)
START, STEPS = 100, 200


@pytest.fixture(scope="module")
def data():
    ds = load_dataset(f"gaussian:d={D}", n=N)
    return torch.tensor(ds.X), torch.tensor(ds.y)


def _net(width: int) -> TwoLayerReLU:
    return TwoLayerReLU(D, width, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def wide(data) -> LatePhase:
    return adam_late_phase(_net(WIDE), *data, RULE, start=START, steps=STEPS)


# --------------------------------------------------------------------------------------------
# The algebra: the per-mode recurrence is Adam with the denominators assumed, exactly.


def _linear_problem(seed=0, n=6, p=40):
    g = np.random.default_rng(seed)
    J = g.standard_normal((n, p)) / np.sqrt(p)
    D_s = np.exp(g.uniform(-1.0, 1.0, p))  # the denominators sqrt(v_hat_s) + eps
    e_s = g.standard_normal(n)
    m_s = 0.3 * g.standard_normal(p)  # Adam's first moment at s
    return J, D_s, e_s, m_s


def _adam_with_assumed_denominators(J, D_s, e_s, m_s, rule, start, steps, r, velocity=True):
    """Parameter space: m_k = beta1 m + (1 - beta1) g, p -= lr_k m_k / (r_k D_s), on the
    linear model e = e_s + J (p - p_s) with the loss 1/2 ||e||^2."""
    m = m_s.copy() if velocity else np.zeros_like(m_s)
    delta = np.zeros(J.shape[1])
    out = []
    for j in range(steps + 1):
        e = e_s + J @ delta
        out.append(0.5 * e @ e)
        k = start + j + 1
        m = rule.beta1 * m + (1 - rule.beta1) * (J.T @ e)
        delta -= rule.lr / (1 - rule.beta1**k) * m / (r[min(j + 1, steps)] * D_s)
    return np.array(out)


@pytest.mark.parametrize("decaying", [False, True], ids=["frozen", "decaying"])
def test_recurrence_is_adam_with_the_assumed_second_moment(decaying):
    J, D_s, e_s, m_s = _linear_problem()
    rule, start, steps = Adam(0.05, beta1=0.9, beta2=0.99), 20, 300
    k = np.arange(start, start + steps + 1, dtype=np.float64)
    r = _scale(rule, start, k) if decaying else np.ones(steps + 1)
    lam, Q = np.linalg.eigh(J @ np.diag(1 / D_s) @ J.T)
    lr_s = rule.lr / (1 - rule.beta1**start)
    u_s = J @ (-lr_s * m_s / D_s)  # the last step's displacement in function space
    pred = _predict(lam, Q.T @ e_s, Q.T @ u_s, rule, start, steps, r)
    ref = _adam_with_assumed_denominators(J, D_s, e_s, m_s, rule, start, steps, r)
    assert ref[-1] < 1e-3 * ref[0]  # it converges: not a comparison of two constants
    assert np.max(np.abs(pred - ref)) / ref[0] <= EXACT
    # must fail: without Adam's first moment carried over, the curve is another one
    still = _adam_with_assumed_denominators(J, D_s, e_s, m_s, rule, start, steps, r, False)
    assert np.max(np.abs(still - ref)) / ref[0] > VELOCITY_MATTERS


def test_threshold_is_the_kernel_drift_threshold():
    assert PRECONDITIONER_DRIFT_THRESHOLD == KERNEL_DRIFT_THRESHOLD == VALIDITY_BAND / 2


# --------------------------------------------------------------------------------------------
# The network.


def test_wide_network_follows_the_prediction_on_its_window(wide):
    """m = 4096: the late phase from step 100 holds over the whole 200 steps, 9 decades."""
    first, last = wide.window
    assert first == START and wide.predicted.shape == (STEPS + 1,)
    assert wide.measured.shape == (START + STEPS + 1,)
    assert wide.predicted[0] == pytest.approx(wide.measured[START], rel=1e-12)
    assert wide.window_error <= VALIDITY_BAND
    assert wide.window_decades >= MIN_DECADES
    assert wide.reason == "horizon" and last == START + STEPS
    assert np.all(wide.drift[: last - first + 1] <= PRECONDITIONER_DRIFT_THRESHOLD)
    assert wide.h_max < wide.heavy_ball.max_stable_h()
    assert wide.heavy_ball.beta == RULE.beta1
    assert wide.heavy_ball.lr == pytest.approx(RULE.lr * (1 - RULE.beta1))
    assert f"steps {START}..{last}" in wide.summary()


def test_frozen_second_moment_holds_on_a_short_window_only(data, wide):
    """v_hat frozen at step s moves by ~1/(2k) per step (a running mean while k << 1/(1 -
    beta2)): the window ends by the preconditioner after about 2 * threshold * s steps."""
    frozen = adam_late_phase(
        _net(WIDE), *data, RULE, start=START, steps=STEPS, second_moment="frozen"
    )
    first, last = frozen.window
    assert frozen.reason == "preconditioner"
    assert last - first <= 2 * 2 * PRECONDITIONER_DRIFT_THRESHOLD * START  # 2x margin
    assert frozen.window_error <= VALIDITY_BAND
    assert (last - first) * 5 < wide.window[1] - wide.window[0]


def test_before_the_second_moment_settles_the_window_is_empty(data):
    """Must fail: at start = 1, v_hat = g_1^2 moves at once; the window is the start alone."""
    early = adam_late_phase(_net(WIDE), *data, RULE, start=1, steps=50)
    assert early.window == (1, 1) and early.reason == "preconditioner"
    assert early.window_decades < 0.1


def test_a_tiny_network_leaves_the_window_early(data, wide):
    """Must fail: m = 16 from the same start; its window is short and tests little."""
    tiny = adam_late_phase(_net(TINY), *data, RULE, start=START, steps=STEPS)
    assert tiny.reason != "horizon"
    assert tiny.window[1] - tiny.window[0] < (wide.window[1] - wide.window[0]) / 4
    assert tiny.window_decades < 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rule": "gd:lr=0.1"}, "`rule`"),
        ({"rule": "rmsprop:lr=0.1"}, "`rule`"),
        ({"loss": "cross-entropy"}, "`loss`"),
        ({"start": 0}, "`start`"),
        ({"steps": 0}, "`steps`"),
        ({"second_moment": "fixed"}, "`second_moment`"),
        ({"model": "net"}, "`model`"),
    ],
)
def test_bad_arguments_name_the_field(data, kwargs, field):
    args = {"model": _net(8), "rule": RULE, "start": 2, "steps": 2} | kwargs
    model, rule = args.pop("model"), args.pop("rule")
    with pytest.raises(ValueError, match=field):
        adam_late_phase(model, *data, rule, **args)
