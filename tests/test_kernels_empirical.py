"""Tests for ntkdyn.kernels: empirical NTK (closed form vs docs/mathematics.md §1 formulas and
torch.func, tiling, float32, deep nets), finite-width laws (the fluctuation law of
docs/mathematics.md §1.3, deep-NTK convergence) and input validation.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
import torch

from ntkdyn.kernels import deep_relu_ntk, empirical_ntk, spectrum, two_layer_gram
from ntkdyn.models import DeepReLU, TwoLayerReLU

from kernel_cases import REORDERED_RTOL_FLOAT32, _unit_rows, assert_reordered_close

#: Rounding-level agreement between two float64 evaluations of the same quantity.
EXACT_RTOL = 1e-12


#: The fluctuation law rms||H(0) - H^inf||_F = sqrt(V/m) must hold to this relative accuracy.
FLUCTUATION_RTOL = 0.10
#: Accepted log-log slope of the deep-NTK error vs width (theory -1/2; docs/mathematics.md §1 observed
#: -0.44 .. -0.56).
SLOPE_RANGE = (-0.7, -0.35)
#: Mean single-net error levels must be within this factor of docs/mathematics.md §1's observed table.
LEVEL_FACTOR = 1.5

#: docs/mathematics.md §1 observed: mean relative Frobenius error of one net's NTK, m = 256 / 1024 / 2048.
OBSERVED_DEEP_ERROR = {
    1: {256: 0.117, 1024: 0.054, 2048: 0.037},
    2: {256: 0.157, 1024: 0.083, 2048: 0.064},
    3: {256: 0.228, 1024: 0.098, 2048: 0.073},
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Finite-width fluctuation (docs/mathematics.md §1.3).


def test_fluctuation_law(test_set):
    X = test_set
    h_inf = two_layer_gram(X)
    G = X @ X.T
    p = h_inf / np.where(G == 0, 1.0, G)  # (pi - theta) / (2 pi)
    V = float(np.sum(G**2 * p * (1 - p)))
    assert V == pytest.approx(18.16, abs=0.005)  # docs/mathematics.md §1 observed, same set
    lam0 = spectrum(h_inf).lambda_min
    seeds = range(64)
    for m in (256, 1024, 4096):
        sq_err, lam_err = [], []
        for seed in seeds:
            net = TwoLayerReLU(X.shape[1], m, generator=_gen(seed))
            h0 = empirical_ntk(net, X)
            diff = h0 - h_inf
            sq_err.append(np.sum(diff**2))
            lam_err.append(abs(spectrum(h0).lambda_min - lam0))
            assert lam_err[-1] <= np.linalg.norm(diff, 2) + 1e-14  # Weyl, docs/mathematics.md §1.3
        ratio = math.sqrt(np.mean(sq_err)) / math.sqrt(V / m)
        assert abs(ratio - 1) < FLUCTUATION_RTOL, (m, ratio)
        if (
            m == 1024
        ):  # docs/mathematics.md §1 observed: mean |lambda_min(H(0)) - lambda_0| = 2.4e-3
            assert 2.4e-3 / LEVEL_FACTOR < np.mean(lam_err) < 2.4e-3 * LEVEL_FACTOR


# --------------------------------------------------------------------------------------------
# Empirical NTK.


def _rel_max(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_empirical_theory_matches_math_formulas(test_set):
    X, m = test_set, 512
    net = TwoLayerReLU(X.shape[1], m, generator=_gen(4))
    W, a = net.W.detach().numpy(), net.a.numpy()
    active = (X @ W.T > 0).astype(np.float64)
    h_first = (X @ X.T) * (active @ active.T) / m  # docs/mathematics.md §1.1 (a_r^2 = 1)
    relu = np.maximum(X @ W.T, 0.0)
    h_second = relu @ relu.T / m  # docs/mathematics.md §1.4
    assert np.all(np.abs(a) == 1)
    assert _rel_max(empirical_ntk(net, X), h_first) < EXACT_RTOL
    assert _rel_max(empirical_ntk(net, X, params=["W", "a"]), h_first + h_second) < EXACT_RTOL
    # the default kernel is the first-layer one: only W is trainable
    assert _rel_max(empirical_ntk(net, X, params=["W"]), h_first) < EXACT_RTOL


@pytest.mark.parametrize(
    ("parameterization", "params"),
    [
        ("theory", None),
        ("theory", ["W", "a"]),
        ("theory", ["a"]),
        ("notebook", None),
        ("notebook", ["W"]),
        ("notebook", ["bias"]),
        ("notebook", ["a"]),
    ],
)
def test_empirical_closed_form_equals_autodiff(parameterization, params):
    d = 30 if parameterization == "notebook" else 5
    net = TwoLayerReLU(d, 300, parameterization=parameterization, generator=_gen(5))
    rng = np.random.default_rng(6)
    X = (
        rng.random((15, d))
        if parameterization == "notebook"
        else _unit_rows(rng.standard_normal((15, d)))
    )
    closed = empirical_ntk(net, X, params=params, method="closed_form")
    autodiff = empirical_ntk(net, X, params=params, method="autodiff")
    assert closed.dtype == np.float64 and closed.shape == (15, 15)
    assert _rel_max(closed, autodiff) < EXACT_RTOL
    if params is None:
        assert_reordered_close(empirical_ntk(net, X), closed)  # "auto" is closed form


@pytest.mark.parametrize("kind", ["notebook", "deep"])
def test_empirical_tiling_matches_untiled(kind):
    if kind == "deep":
        net = DeepReLU(4, 64, 2, generator=_gen(7))
    else:
        net = TwoLayerReLU(4, 64, parameterization="notebook", generator=_gen(7))
    X = np.random.default_rng(8).standard_normal((10, 4))
    untiled = empirical_ntk(net, X, method="autodiff", block_rows=10)
    for block_rows in (1, 3, 4):
        tiled = empirical_ntk(net, X, method="autodiff", block_rows=block_rows)
        assert _rel_max(tiled, untiled) < 1e-14, block_rows
    np.testing.assert_array_equal(untiled, untiled.T)  # exact: empirical_ntk symmetrises (promised)


def test_empirical_params_dict_evaluates_at_given_values(test_set):
    first = TwoLayerReLU(5, 128, generator=_gen(9))
    second = TwoLayerReLU(5, 128, generator=_gen(10))
    at_second = empirical_ntk(first, test_set, params={"W": second.W.detach()})
    assert_reordered_close(at_second, empirical_ntk(second, test_set))
    at_second_autodiff = empirical_ntk(
        first, test_set, params={"W": second.W.detach()}, method="autodiff"
    )
    assert _rel_max(at_second_autodiff, at_second) < EXACT_RTOL


def test_empirical_float32_model(test_set):
    net32 = TwoLayerReLU(
        5, 256, parameterization="notebook", generator=_gen(11), dtype=torch.float32
    )
    kernel32 = empirical_ntk(net32, torch.as_tensor(test_set), method="autodiff")
    read_only = test_set.copy()
    read_only.setflags(write=False)  # datasets hand out read-only arrays; no torch warning
    assert_reordered_close(
        empirical_ntk(net32, read_only, method="autodiff"), kernel32, rtol=REORDERED_RTOL_FLOAT32
    )
    assert kernel32.dtype == np.float64
    net64 = copy.deepcopy(net32).double()  # the same weights, evaluated in float64
    assert _rel_max(kernel32, empirical_ntk(net64, test_set)) < 1e-5


def _deep_errors(X: np.ndarray, depth: int, widths, seeds) -> dict[int, tuple[float, float]]:
    """Per width: (mean relative Frobenius error of single nets, error of the seed average)."""
    limit = deep_relu_ntk(X, depth)
    norm = np.linalg.norm(limit)
    result = {}
    for m in widths:
        kernels = [
            empirical_ntk(DeepReLU(X.shape[1], m, depth, generator=_gen(s)), X) for s in seeds
        ]
        single = np.mean([np.linalg.norm(k - limit) / norm for k in kernels])
        averaged = np.linalg.norm(np.mean(kernels, axis=0) - limit) / norm
        result[m] = (float(single), float(averaged))
    return result


def _slope(errors: dict[int, tuple[float, float]]) -> float:
    widths = sorted(errors)
    return float(np.polyfit(np.log(widths), np.log([errors[m][0] for m in widths]), 1)[0])


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_empirical_deep_closed_form_equals_autodiff(depth):
    net = DeepReLU(5, 64, depth, generator=_gen(depth))
    X = np.random.default_rng(14).standard_normal((12, 5))
    for params in (None, ["weights.0"], [f"weights.{depth}"], ["weights.0", f"weights.{depth}"]):
        closed = empirical_ntk(net, X, params=params, method="closed_form")
        autodiff = empirical_ntk(net, X, params=params, method="autodiff")
        assert _rel_max(closed, autodiff) < EXACT_RTOL, params


def test_empirical_deep_ntk_converges(test_set):
    widths, seeds = (128, 256, 512, 1024), range(12)
    errors = _deep_errors(test_set, 2, widths, seeds)
    slope = _slope(errors)
    assert SLOPE_RANGE[0] < slope < SLOPE_RANGE[1], (slope, errors)
    for m in (256, 1024):  # docs/mathematics.md §1 observed levels
        target = OBSERVED_DEEP_ERROR[2][m]
        assert target / LEVEL_FACTOR < errors[m][0] < target * LEVEL_FACTOR, (m, errors[m])
    # No bias beyond the fluctuation: averaging 12 nets shrinks the error ~sqrt(12)-fold.
    single, averaged = errors[1024]
    assert averaged < 0.5 * single, errors[1024]


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_empirical_deep_ntk_matches_observed_table(test_set, depth):
    errors = _deep_errors(test_set, depth, (256, 512, 1024, 2048), range(24))
    slope = _slope(errors)
    assert SLOPE_RANGE[0] < slope < SLOPE_RANGE[1], (slope, errors)
    for m, target in OBSERVED_DEEP_ERROR[depth].items():
        assert target / LEVEL_FACTOR < errors[m][0] < target * LEVEL_FACTOR, (m, errors[m])
    assert errors[2048][1] < 0.5 * errors[2048][0]
    print(f"depth {depth}: slope {slope:.3f}, errors {errors}")


@pytest.mark.slow
def test_empirical_ntk_n2000_tiled_autodiff():
    # notebook net, d = 64, m = 1024: the per-row Jacobian has 67,584 entries (0.5 MB), so
    # the whole Jacobian (1 GB) does not fit the 512 MB block budget and tiling is used.
    net = TwoLayerReLU(64, 1024, parameterization="notebook", generator=_gen(12))
    X = np.random.default_rng(13).random((2000, 64))
    start = time.perf_counter()
    autodiff = empirical_ntk(net, X, method="autodiff")
    elapsed = time.perf_counter() - start
    closed = empirical_ntk(net, X)
    assert _rel_max(autodiff, closed) < EXACT_RTOL
    print(f"n=2000 autodiff NTK: {elapsed:.1f} s")


class _SumOfRows(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.sum()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda net, X: empirical_ntk(net, X, method="jvp"), "method"),
        (lambda net, X: empirical_ntk(net, X, params=["nope"]), "params"),
        (lambda net, X: empirical_ntk(net, X, block_rows=0), "block_rows"),
        (lambda net, X: empirical_ntk(net, X[0]), "X"),
        (lambda net, X: empirical_ntk(net, np.full_like(X, np.nan)), "X"),
        (lambda net, X: empirical_ntk("net", X), "model"),
        (lambda net, X: empirical_ntk(torch.nn.Linear(5, 1), X, method="closed_form"), "method"),
        # one number for the whole batch, not a row of outputs per input row (multi-output
        # models such as nn.Linear(5, 2) are valid: tests/test_kernels_outputs.py)
        (lambda net, X: empirical_ntk(_SumOfRows(), X), "model"),
        (lambda net, X: two_layer_gram(X, layer="all"), "layer"),
        (lambda net, X: deep_relu_ntk(X, 0), "depth"),
    ],
)
def test_kernel_validation(test_set, call, field):
    net = TwoLayerReLU(5, 8, generator=_gen(0))
    with pytest.raises(ValueError, match=f"`{field}`"):
        call(net, test_set)
