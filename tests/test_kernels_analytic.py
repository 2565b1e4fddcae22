"""Tests for ntkdyn.kernels: analytic limits (two_layer_gram, deep_relu_ntk, ntk_gram) vs
closed-form cases, Monte Carlo and hand-written recursions, and against 40-digit references at
angles near 0 and pi (docs/mathematics.md §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import ntkdyn.kernels as kernels_module
from ntkdyn.kernels import deep_relu_ntk, ntk_gram, two_layer_gram

from kernel_cases import _unit_rows, assert_reordered_close

#: Monte-Carlo estimates must lie within this many standard errors of the formula.
MC_Z_MAX = 4.0
#: Neurons per Monte-Carlo estimate, drawn in chunks.
MC_NEURONS, MC_CHUNK = 1_000_000, 50_000


#: arccos is square-root sensitive at +-1: an angle there is only known to ~1e-8.
ARCCOS_ATOL = 1e-7


def _mc_set(unit: bool) -> np.ndarray:
    """8 rows in d = 5 with an antipodal and an orthogonal pair; norms 0.3..3 if not unit."""
    X = np.random.default_rng(1).standard_normal((8, 5))
    X[7] = -X[0]
    X[6] -= (X[6] @ X[5]) / (X[5] @ X[5]) * X[5]
    X = _unit_rows(X)
    return X if unit else X * np.linspace(0.3, 3.0, 8)[:, None]


# --------------------------------------------------------------------------------------------
# two_layer_gram: closed-form cases, invariants, Monte Carlo.


def test_two_layer_gram_hand_cases():
    # Rows: e1, 3 e2 (orthogonal), 2 e1 (parallel), -3 e1 (antipodal), 2 (cos 60, sin 60).
    X = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0], [-3.0, 0.0], [1.0, math.sqrt(3.0)]])
    first = two_layer_gram(X, layer="first")
    second = two_layer_gram(X, layer="second")
    both = two_layer_gram(X, layer="both")
    np.testing.assert_allclose(np.diag(first), [0.5, 4.5, 2.0, 4.5, 2.0], rtol=1e-15)
    np.testing.assert_allclose(np.diag(second), [0.5, 4.5, 2.0, 4.5, 2.0], rtol=1e-15)
    # orthogonal: x.x' = 0 and |x||x'| / (2 pi) (sin(pi/2) + 0)
    assert first[0, 1] == 0.0
    assert second[0, 1] == pytest.approx(3 / (2 * math.pi), rel=1e-15)
    # parallel: theta = 0
    assert first[0, 2] == pytest.approx(1.0, abs=ARCCOS_ATOL)
    assert second[0, 2] == pytest.approx(1.0, abs=ARCCOS_ATOL)
    # antipodal: theta = pi, both vanish
    assert first[0, 3] == pytest.approx(0.0, abs=ARCCOS_ATOL)
    assert second[0, 3] == pytest.approx(0.0, abs=ARCCOS_ATOL)
    # 60 degrees, |x'| = 2: x.x' = 1, (pi - pi/3) / (2 pi) = 1/3
    assert first[0, 4] == pytest.approx(1 / 3, rel=1e-13)
    assert second[0, 4] == pytest.approx((math.sqrt(3) / 2 + math.pi / 3) / math.pi, rel=1e-13)
    np.testing.assert_allclose(both, first + second, rtol=1e-15)


@pytest.mark.parametrize("layer", ["first", "second", "both"])
@pytest.mark.parametrize("unit", [True, False], ids=["unit", "general"])
def test_two_layer_gram_invariants(layer, unit):
    X = _mc_set(unit)
    gram = two_layer_gram(X, layer=layer)
    norms2 = np.sum(X * X, axis=1)
    factor = 1.0 if layer == "both" else 0.5
    np.testing.assert_allclose(np.diag(gram), factor * norms2, rtol=1e-14)
    np.testing.assert_array_equal(gram, gram.T)  # exact: symmetric by construction (promised)
    assert np.linalg.eigvalsh(gram)[0] >= -1e-12 * np.abs(gram).max()
    torch_gram = two_layer_gram(torch.as_tensor(X), layer=layer)
    assert_reordered_close(torch_gram, gram)


def test_two_layer_gram_zero_row_is_zero_not_nan():
    X = np.array([[1.0, 2.0], [0.0, 0.0], [-1.0, 0.5]])
    gram = two_layer_gram(X, layer="both")
    assert np.all(np.isfinite(gram))
    np.testing.assert_array_equal(gram[1], 0.0)  # exact: every term has the zero row's norm


@dataclass(frozen=True)
class _MonteCarlo:
    """Per-entry means over M neurons and their standard errors (docs/mathematics.md §1.1, 1.4)."""

    first: np.ndarray
    first_se: np.ndarray
    second: np.ndarray
    second_se: np.ndarray


def _monte_carlo(X: np.ndarray, seed: int) -> _MonteCarlo:
    """Finite-width Grams with M neurons w ~ N(0, I): first layer x_i.x_j 1{..}1{..} (a
    Bernoulli mean, exact SE |x_i.x_j| sqrt(p(1-p)/M)); output layer relu(z_i) relu(z_j)
    (SE from the sample second moment)."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    both_active = np.zeros((n, n))
    product = np.zeros((n, n))
    product_sq = np.zeros((n, n))
    for _ in range(MC_NEURONS // MC_CHUNK):
        Z = X @ rng.standard_normal((d, MC_CHUNK))
        active = (Z > 0).astype(np.float64)
        both_active += active @ active.T
        R = np.maximum(Z, 0.0)
        product += R @ R.T
        product_sq += (R * R) @ (R * R).T
    M = float(MC_NEURONS)
    p = both_active / M
    G = X @ X.T
    mean2 = product / M
    var2 = np.clip(product_sq / M - mean2**2, 0.0, None)
    return _MonteCarlo(G * p, np.abs(G) * np.sqrt(p * (1 - p) / M), mean2, np.sqrt(var2 / M))


def _max_z(estimate: np.ndarray, se: np.ndarray, formula: np.ndarray) -> float:
    """Largest |estimate - formula| / se over the upper triangle; entries with zero variance
    (antipodal/orthogonal pairs) must match exactly instead."""
    upper = np.triu_indices_from(formula)
    est, err, ref = estimate[upper], se[upper], formula[upper]
    degenerate = err == 0
    np.testing.assert_allclose(est[degenerate], ref[degenerate], atol=ARCCOS_ATOL)
    return float(np.max(np.abs(est - ref)[~degenerate] / err[~degenerate]))


@pytest.mark.parametrize("unit", [True, False], ids=["unit", "general"])
def test_two_layer_gram_matches_monte_carlo(unit):
    X = _mc_set(unit)
    mc = _monte_carlo(X, seed=2 if unit else 3)
    first, second = two_layer_gram(X, layer="first"), two_layer_gram(X, layer="second")
    assert _max_z(mc.first, mc.first_se, first) < MC_Z_MAX
    assert _max_z(mc.second, mc.second_se, second) < MC_Z_MAX
    # Power: the same samples reject a kernel that is off by 1%.
    assert _max_z(mc.first, mc.first_se, 1.01 * first) > MC_Z_MAX
    assert _max_z(mc.second, mc.second_se, 1.01 * second) > MC_Z_MAX


# --------------------------------------------------------------------------------------------
# Deep recursion (docs/mathematics.md §1.5).


def _ntk_pair(x: np.ndarray, y: np.ndarray, depth: int) -> float:
    """The docs/mathematics.md §1.5 recursion for one pair, scalar by scalar."""
    sxx, syy, sxy = float(x @ x), float(y @ y), float(x @ y)
    theta = sxy
    for _ in range(depth):
        rho = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
        angle = math.acos(rho)
        dot = (math.pi - angle) / math.pi
        sxy = math.sqrt(sxx * syy) / math.pi * (math.sin(angle) + (math.pi - angle) * rho)
        # Sigma^h(x, x) = Sigma^{h-1}(x, x): theta = 0 in the same formula.
        theta = theta * dot + sxy
    return theta


def test_deep_ntk_depth_one_is_twice_two_layer(test_set):
    diff = deep_relu_ntk(test_set, 1) - 2 * two_layer_gram(test_set, layer="both")
    assert np.max(np.abs(diff)) <= 1e-14


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_deep_ntk_matches_pairwise_recursion(depth):
    X = _mc_set(unit=False)[:6]  # general norms, includes no antipodal pair
    kernel = deep_relu_ntk(X, depth)
    reference = np.array([[_ntk_pair(x, y, depth) for y in X] for x in X])
    np.testing.assert_allclose(kernel, reference, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(kernel, kernel.T)  # exact: symmetric by construction (promised)
    assert np.linalg.eigvalsh(kernel)[0] > 0


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_deep_ntk_unit_diagonal_and_homogeneity(test_set, depth):
    kernel = deep_relu_ntk(test_set, depth)
    np.testing.assert_allclose(np.diag(kernel), depth + 1, rtol=1e-14)  # Theta_ii = L + 1
    scale = np.linspace(0.5, 2.0, test_set.shape[0])
    scaled = deep_relu_ntk(scale[:, None] * test_set, depth)
    np.testing.assert_allclose(scaled, np.outer(scale, scale) * kernel, rtol=1e-13, atol=1e-14)


def test_ntk_gram_dispatch(test_set):
    # exact: ntk_gram runs the very same function on the same input
    np.testing.assert_array_equal(ntk_gram(test_set), two_layer_gram(test_set))
    np.testing.assert_array_equal(
        ntk_gram(test_set, layer="both"), two_layer_gram(test_set, layer="both")
    )
    np.testing.assert_array_equal(ntk_gram(test_set, depth=3), deep_relu_ntk(test_set, 3))
    with pytest.raises(ValueError, match="`layer`"):
        ntk_gram(test_set, depth=2, layer="second")


# --------------------------------------------------------------------------------------------
# Angles near 0 and pi (parallel, duplicated and antipodal rows).

#: Kernel entries must match a 40-digit reference to this, relative to |x_i||x_j| (times
#: L + 1 for the deep kernel, whose entries grow to that size): a few eps, as the Gram X X^T
#: and each recursion step round at eps. arccos(clip(cos)) was off by 5e-9 next to 0 and pi.
ANGLE_EDGE_RTOL = 2e-15
#: Parallel rows make the kernel singular: lambda_min must vanish to rounding of lambda_max.
SINGULAR_RTOL = 1e-14

_KERNELS = {
    "first": lambda X: two_layer_gram(X, layer="first"),
    "second": lambda X: two_layer_gram(X, layer="second"),
    "both": lambda X: two_layer_gram(X, layer="both"),
    "deep1": lambda X: deep_relu_ntk(X, 1),
    "deep3": lambda X: deep_relu_ntk(X, 3),
}


def test_antipodal_rows_give_zero(test_set):
    # x and -x: theta = pi exactly, so H^inf, H^{a,inf} and 2 (H^inf + H^{a,inf}) (the L = 1
    # NTK) vanish. -2.5 x is antipodal up to the rounding of its entries (theta = pi - O(eps)).
    n = test_set.shape[0]
    X = np.vstack([test_set, -test_set, -2.5 * test_set])
    pairs = np.arange(n)
    for name in ("first", "second", "both", "deep1"):
        gram = _KERNELS[name](X)
        assert np.max(np.abs(gram[pairs, pairs + n])) <= 1e-15, name
        assert np.max(np.abs(gram[pairs, pairs + 2 * n])) <= 2.5 * ANGLE_EDGE_RTOL, name


@pytest.mark.parametrize("name", list(_KERNELS))
def test_parallel_row_gives_singular_kernel(test_set, name):
    # One extra row c x_k: parallel to row k, so the kernel has an exact null vector. With
    # arccos(clip(cos)), cos = 1 - eps gave theta = 1.5e-8 and lambda_min ~ 1e-9 lambda_max.
    for k in range(test_set.shape[0]):
        for scale in (1.0, 3.0, 0.7, 2.5):
            eigenvalues = np.linalg.eigvalsh(
                _KERNELS[name](np.vstack([test_set, scale * test_set[k : k + 1]]))
            )
            assert abs(eigenvalues[0]) <= SINGULAR_RTOL * eigenvalues[-1], (k, scale)


def _reference_kernels(X: np.ndarray, depth: int) -> dict[str, np.ndarray]:
    """docs/mathematics.md §1.2, 1.4, 1.5 pair by pair in 40-digit arithmetic (mpmath) on the stored rows,
    with their norm products."""
    mpmath = pytest.importorskip("mpmath")
    n = X.shape[0]
    out = {k: np.zeros((n, n)) for k in ("first", "second", "deep", "norm")}
    with mpmath.workdps(40):
        rows = [[mpmath.mpf(float(v)) for v in x] for x in X]
        sq = [mpmath.fsum(v * v for v in r) for r in rows]
        for i in range(n):
            for j in range(n):
                dot = mpmath.fsum(a * b for a, b in zip(rows[i], rows[j], strict=True))
                norm = mpmath.sqrt(sq[i] * sq[j])
                theta = mpmath.acos(max(-1, min(1, dot / norm)))
                out["first"][i, j] = dot * (mpmath.pi - theta) / (2 * mpmath.pi)
                arc = norm * (mpmath.sin(theta) + (mpmath.pi - theta) * mpmath.cos(theta))
                out["second"][i, j] = arc / (2 * mpmath.pi)
                sigma, ntk = dot, dot
                for _ in range(depth):
                    angle = mpmath.acos(max(-1, min(1, sigma / norm)))
                    sigma = norm * (mpmath.sin(angle) + (mpmath.pi - angle) * sigma / norm)
                    sigma /= mpmath.pi
                    ntk = ntk * (mpmath.pi - angle) / mpmath.pi + sigma
                out["deep"][i, j] = ntk
                out["norm"][i, j] = norm
    return out


@pytest.mark.parametrize("spread", [True, False], ids=["with-spread-rows", "all-clustered"])
def test_kernels_near_zero_and_pi_match_high_precision(spread):
    # A cluster of rows at angles 0 .. 0.1 from one direction (exact duplicate included),
    # with negated and rescaled copies: every pair is at theta ~ 0 or ~ pi, through all three
    # routes (Gram cosine, split-row Gram, row differences). With spread rows, only some rows
    # take part in the near-pair correction.
    rng = np.random.default_rng(21)
    d = 40
    base = _unit_rows(rng.standard_normal((1, d)))[0]
    offsets = [0.0, 0.0, 1e-13, 1e-9, 1e-6, 1e-4, 3e-3, 0.1]
    cluster = np.array([base + t * _unit_rows(rng.standard_normal((1, d)))[0] for t in offsets])
    parts = [cluster, -1.7 * cluster[::2]]
    if spread:
        parts.append(rng.standard_normal((3, d)))
    X = np.vstack(parts) * rng.uniform(0.5, 2.0, (sum(len(p) for p in parts), 1))
    depth = 3
    reference = _reference_kernels(X, depth)
    norm = reference["norm"]
    for name, computed in (
        ("first", two_layer_gram(X, layer="first")),
        ("second", two_layer_gram(X, layer="second")),
        ("deep", deep_relu_ntk(X, depth) / (depth + 1)),
    ):
        target = reference[name] / (depth + 1 if name == "deep" else 1)
        error = np.max(np.abs(computed - target) / norm)
        assert error <= ANGLE_EDGE_RTOL, (name, error)
        np.testing.assert_array_equal(computed, computed.T)  # exact: symmetric by construction


def test_near_pair_row_blocks_do_not_change_the_result(monkeypatch):
    # Near-duplicates are recomputed from the rows in blocks of _ANGLE_CHUNK_ELEMENTS entries;
    # one row per block must give the same kernel (up to the order of its sums).
    rng = np.random.default_rng(22)
    X = np.repeat(rng.standard_normal((6, 7)), 4, axis=0) * rng.uniform(0.5, 2, (24, 1))
    X[::5] *= -1
    whole = {name: kernel(X) for name, kernel in _KERNELS.items()}
    monkeypatch.setattr(kernels_module, "_ANGLE_CHUNK_ELEMENTS", 1)
    for name, kernel in _KERNELS.items():
        assert_reordered_close(kernel(X), whole[name])
        assert np.linalg.eigvalsh(whole[name])[0] >= -SINGULAR_RTOL * np.abs(whole[name]).max()
