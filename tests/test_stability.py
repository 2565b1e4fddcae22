"""Stability limits, optimal parameters and the NAG-C crossover (docs/mathematics.md §3).

References: bisection on the spectral radius of the per-mode *companion* matrices written by
hand from docs/mathematics.md §3's recurrences (independent of the rules' register matrices), the exact
iteration (predict_discrete) and docs/mathematics.md's observed values on its n=20 H^inf spectrum.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkdyn.conventions import LATE_STEP
from ntkdyn.dynamics import (
    OptimalParameters,
    StabilityReport,
    discrete_modes,
    max_stable_h_numeric,
    optimal_parameters,
    predict_discrete,
    spectral_radius,
    stability,
    stability_table,
)
from ntkdyn.kernels import spectrum
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

#: issue bound (docs/mathematics.md §3 observed <= 1e-13 HB/NAG-SC, 2.2e-12 HOM)
THRESHOLD_MATCH = 1e-10
#: The optimal HB pair puts double roots on both extreme modes; eigvals of a defective matrix
#: are accurate only to ~sqrt(eps).
DOUBLE_ROOT_MATCH = 1e-7
#: Scheduled rules bisected at the library's k -> infinity stand-in: beta_k = 1 - r/(k + r - 1)
#: moves the bound by O(r/k).
ASYMPTOTIC_K = LATE_STEP
ASYMPTOTIC_MATCH = 1e-8
BETAS = [0.0, 0.3, 0.6, 0.9, 0.99]
HOM_PAIRS = [
    (0.6, 0.2),
    (0.5, -0.2),
    (0.0, 0.5),
    (0.3, -0.5),
    (0.9, 0.05),
    (0.1, -0.8),
    (0.8, -0.6),
    (0.2, 0.7),
]


def _mathmd_spectrum():
    """H^inf of docs/mathematics.md §6: n=20 unit Gaussian rows in d=5 (numpy default_rng(0))."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.sign(rng.standard_normal(20))
    G = np.clip(X @ X.T, -1.0, 1.0)
    H = G * (np.pi - np.arccos(G)) / (2 * np.pi)
    return H, y


def _companion(name, p, h):
    """docs/mathematics.md §3 per-mode recurrences as companion matrices, stacked over h."""
    h = np.asarray(h, float)[..., None, None]
    one, zero = np.ones_like(h), np.zeros_like(h)
    if name == "gd":
        return 1 - h
    if name == "hb":
        (beta,) = p
        return np.block([[1 + beta - h, -beta * one], [one, zero]])
    if name == "nesterov-sc":
        (beta,) = p
        return np.block([[(1 + beta) * (1 - h), -beta * (1 - h)], [one, zero]])
    b1, b2 = p
    return np.block(
        [[1 + b1 - h, (b2 - b1) * one, -b2 * one], [one, zero, zero], [zero, one, zero]]
    )


def _bisect_companion(name, p):
    """First h where the companion matrix's spectral radius reaches 1 (scan, then bisect)."""

    def unstable(h):
        return np.max(np.abs(np.linalg.eigvals(_companion(name, p, h))), axis=-1) >= 1

    grid = np.linspace(0, 8, 8001)[1:]
    i = int(np.argmax(unstable(grid)))
    lo, hi = grid[i - 1], grid[i]
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if unstable(mid) else (mid, hi)
    return lo


CASES = (
    [("gd", (), GD(1.0))]
    + [("hb", (b,), HeavyBall(1.0, beta=b)) for b in BETAS]
    + [("nesterov-sc", (b,), NesterovSC(1.0, beta=b)) for b in BETAS]
    + [("hom", p, HigherOrderMomentum(1.0, b1=p[0], b2=p[1])) for p in HOM_PAIRS]
)


@pytest.mark.parametrize("name,p,rule", [pytest.param(*c, id=c[2].spec) for c in CASES])
def test_threshold_equals_companion_bisection(name, p, rule):
    reference = _bisect_companion(name, p)
    assert abs(rule.max_stable_h() - reference) <= THRESHOLD_MATCH
    assert abs(max_stable_h_numeric(rule) - reference) <= THRESHOLD_MATCH


@pytest.mark.parametrize("rule", rule_params(LINEAR_RULES))
def test_declared_threshold_equals_register_bisection(rule):
    if rule.constant_from is None:
        numeric = max_stable_h_numeric(rule, k=ASYMPTOTIC_K)
        assert abs(numeric - rule.max_stable_h()) <= ASYMPTOTIC_MATCH
    else:
        assert abs(max_stable_h_numeric(rule) - rule.max_stable_h()) <= THRESHOLD_MATCH
    # just inside / outside the bound: spectral radius below / above 1
    k = ASYMPTOTIC_K if rule.constant_from is None else None
    rho = spectral_radius(rule, rule.max_stable_h() * np.array([0.999, 1.001]), k=k)
    assert rho[0] < 1 < rho[1]


def test_optimal_heavy_ball_rate_on_mathmd_spectrum():
    H, _ = _mathmd_spectrum()
    rep = optimal_parameters(H)
    assert isinstance(rep, OptimalParameters)
    kappa = rep.lambda_max / rep.lambda_min
    # docs/mathematics.md §6: lambda_0 0.04473, max 1.956
    assert kappa == pytest.approx(43.715, abs=1e-3)
    expected = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    assert rep.hb_rate == pytest.approx(expected, rel=1e-14)
    assert abs(rep.hb_rate - 0.73724827) < 1e-8  # docs/mathematics.md §3: formula 0.73724827
    assert rep.hb_beta == pytest.approx(expected**2, rel=1e-14)
    best = HeavyBall(rep.hb_lr, beta=rep.hb_beta)
    h_ext = rep.hb_lr * np.array([rep.lambda_min, rep.lambda_max])
    rho = spectral_radius(best, h_ext)
    assert np.max(np.abs(rho - expected)) <= DOUBLE_ROOT_MATCH  # docs/mathematics.md: 0.73724828
    # a grid search over (lr, beta) on all 20 modes does not beat it (docs/mathematics.md: best 0.7383)
    lam = np.linalg.eigvalsh(H)
    lrs = rep.hb_lr * np.linspace(0.6, 1.4, 41)
    grid_best = min(
        np.max(spectral_radius(HeavyBall(1.0, beta=b), lrs[:, None] * lam), axis=1).min()
        for b in np.linspace(0.3, 0.9, 41)
    )
    assert grid_best >= expected - DOUBLE_ROOT_MATCH


def test_optimal_gd_rate_is_worst_mode_contraction():
    H, _ = _mathmd_spectrum()
    rep = optimal_parameters(H)
    kappa = rep.condition
    rho = spectral_radius(GD(rep.gd_lr), rep.gd_lr * np.linalg.eigvalsh(H)).max()
    assert rho == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-13)
    assert rep.gd_rate == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-13)


def test_report_fields_and_stable_flag():
    H, _ = _mathmd_spectrum()
    lam = np.linalg.eigvalsh(H)
    for lr, stable in ((0.9 * 3.8 / lam[-1], True), (1.1 * 3.8 / lam[-1], False)):
        rep = stability(lam, HeavyBall(lr, beta=0.9))
        assert isinstance(rep, StabilityReport) and rep.stable is stable
        assert rep.max_stable_lr == pytest.approx(3.8 / lam[-1], rel=1e-14)
        assert rep.h_max == pytest.approx(lr * lam[-1], rel=1e-14)
        assert rep.bound == "closed form" and not rep.asymptotic
        assert rep.crossover_step is None and rep.crossover_loss is None
    # the same through unsorted eigenvalues, a Spectrum and an (n, n) kernel
    rep = stability(lam[::-1], GD(0.1))
    assert stability(spectrum(lam), GD(0.1)) == rep
    assert (rep.lambda_min, rep.lambda_max) == (lam[0], lam[-1])
    assert stability(H, GD(0.1)).lambda_min == pytest.approx(lam[0], rel=1e-12)


@pytest.mark.parametrize("h,blows_up", [(1.30, False), (1.33, False), (1.34, True), (1.36, True)])
@pytest.mark.parametrize("cls", [Nesterov, NesterovTorch])
def test_nesterov_bound_four_thirds_by_iteration(cls, h, blows_up):
    # docs/mathematics.md §3, r=3: |xi_20000| = 7e-323 / 2e-72 / 8e122 / inf at h = 1.30 / 1.33 / 1.34 / 1.36
    pred = discrete_modes(np.array([[h]]), np.ones(1), cls(1.0, r=3.0), 20000)
    final = abs(pred.xi[-1, 0])
    assert (not np.isfinite(final) or final > 1e50) if blows_up else final < 1e-50
    assert stability(np.array([h]), cls(1.0, r=3.0)).stable is not blows_up


@pytest.mark.parametrize("r", [2.0, 3.0, 6.0, 8.0])
@pytest.mark.parametrize("cls", [Nesterov, NesterovTorch])
def test_nesterov_crossover_level(cls, r):
    # docs/mathematics.md §3: at k_x = r/h the slowest mode's loss is ~ A_r^2 e^-r (sqrt(h)/r)^r L0.
    # Measured here: the envelope (max over one oscillation period around k_x) relative to L0;
    # ratio 0.93-1.10 at h = 1e-3 (0.98-1.03 at h = 1e-4).
    h = 1e-3
    rule = cls(1.0, r=r)
    rep = stability(np.array([h]), rule)
    assert rep.crossover_step == pytest.approx(r / h, rel=1e-14) and rep.asymptotic
    kx, half = round(rep.crossover_step), math.ceil(math.pi / math.sqrt(h) / 2)
    L = predict_discrete(np.array([[h]]), np.ones(1), rule, kx + half)
    measured = L[kx - half :].max() / L[0]
    assert 0.85 <= measured / rep.crossover_loss <= 1.2


def test_crossover_formula_values():
    # r=3: A_3 = 2 sqrt(2/pi); level = A^2 e^-3 (sqrt(h0)/3)^3 by hand
    rep = stability(np.array([4.5e-5, 1.0]), Nesterov(1.0, r=3.0))
    a3 = 2 * math.sqrt(2 / math.pi)
    assert rep.crossover_loss == pytest.approx(
        a3**2 * math.exp(-3) * (math.sqrt(4.5e-5) / 3) ** 3, rel=1e-13
    )
    assert rep.crossover_step == pytest.approx(3 / 4.5e-5, rel=1e-14)


def _nag_two_seq_vs_torch(hmax):
    H, y = _mathmd_spectrum()
    spec = spectrum(H, vectors=True)
    lam = spec.eigenvalues
    lr = hmax / lam[-1]
    steps = int(6 / math.sqrt(lr * lam[0]) * 3)
    a = predict_discrete(spec, -y, Nesterov(lr, r=3.0), steps)
    b = predict_discrete(spec, -y, NesterovTorch(lr, r=3.0), steps)
    return np.max(np.abs(a - b)) / a[0]


def test_torch_nesterov_differs_from_two_sequence_but_is_close():
    # docs/mathematics.md §3: max|dL|/L0 = 1.3e-2 at h_max = 0.1 (e0 unspecified there; e0 = -y here: 1.6e-2)
    for hmax in (1e-1, 1e-2):
        assert 1e-3 < _nag_two_seq_vs_torch(hmax) < 5e-2


@pytest.mark.slow
def test_torch_nesterov_difference_vanishes_like_sqrt_h():
    # docs/mathematics.md §3: 1.1e-2 / 4.9e-3 / 1.8e-3 at h_max 1e-2 / 1e-3 / 1e-4 (slope ~0.39 per decade)
    d = [_nag_two_seq_vs_torch(h) for h in (1e-2, 1e-3, 1e-4)]
    slope = np.polyfit([-2, -3, -4], np.log10(d), 1)[0]
    assert 0.3 < slope < 0.5


def test_stability_table_rows():
    H, _ = _mathmd_spectrum()
    lmax = np.linalg.eigvalsh(H)[-1]
    rows = stability_table(H)
    labels = [row.label for row in rows]
    assert labels[:3] == ["gd", "hb beta=0.5", "hb beta=0.9"]
    assert "nesterov r=3" in labels and "hom b1=0.5,b2=-0.2" in labels
    for row in rows:
        assert row.max_stable_lr == pytest.approx(row.max_stable_h / lmax, rel=1e-14)
    nag = rows[labels.index("nesterov r=3")]
    assert nag.max_stable_h == pytest.approx(4 / 3) and "k -> inf" in nag.bound


@pytest.mark.filterwarnings("ignore:kernel is ill-conditioned")  # the zero kernel
def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="`rule` 'adam'.*adam has no linear prediction"):
        stability(np.eye(2), Adam(0.01))
    with pytest.raises(ValueError, match="`k` is required"):
        spectral_radius(Nesterov(0.1), 0.5)
    with pytest.raises(ValueError, match="`k` must be an integer >= 1"):
        max_stable_h_numeric(GD(0.1), k=0)
    with pytest.raises(ValueError, match="`K` must be positive semi-definite"):
        stability(np.array([-1.0, 1.0]), GD(0.1))
    with pytest.raises(ValueError, match="`K` must be symmetric"):
        stability(np.array([[1.0, 0.5], [0.0, 1.0]]), GD(0.1))
    with pytest.raises(ValueError, match="`K` must have a positive eigenvalue"):
        stability(np.zeros((2, 2)), GD(0.1))
    with pytest.raises(ValueError, match="`K` must have a positive eigenvalue"):
        optimal_parameters(np.zeros((2, 2)))


def test_notebook_hom_uses_constant_regime():
    rule = HigherOrderMomentumNotebook(1.0, b1=0.2, b2=0.5)
    assert abs(max_stable_h_numeric(rule) - _bisect_companion("hom", (0.2, 0.5))) <= 1e-10
