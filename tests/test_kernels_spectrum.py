"""Tests for ntkdyn.kernels.spectrum: eigen-decomposition against scipy, symmetrisation, warnings
on ill-conditioned kernels, the rounding-negative policy (docs/mathematics.md §0), scaling and
bad kernels.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from ntkdyn.conventions import EIG_FLOOR_RTOL
from ntkdyn.kernels import IllConditionedKernelWarning, Spectrum, spectrum, two_layer_gram

from kernel_cases import assert_reordered_close

# --------------------------------------------------------------------------------------------
# Spectrum.


def test_spectrum_matches_scipy(test_set):
    h_inf = two_layer_gram(test_set)
    result = spectrum(h_inf, vectors=True)
    reference = scipy.linalg.eigh(h_inf, eigvals_only=True)
    np.testing.assert_allclose(result.eigenvalues, reference, rtol=1e-12, atol=1e-14)
    assert np.all(np.diff(result.eigenvalues) >= 0)
    Q, lam = result.eigenvectors, result.eigenvalues
    np.testing.assert_allclose(Q @ np.diag(lam) @ Q.T, h_inf, atol=1e-13)
    np.testing.assert_allclose(Q.T @ Q, np.eye(result.n), atol=1e-13)
    assert result.lambda_min == lam[0] and result.lambda_max == lam[-1]
    assert result.condition == pytest.approx(lam[-1] / lam[0], rel=1e-15)
    # docs/mathematics.md §6: lambda_0 = 0.04473, lambda_max(H^inf) = 1.956 for this set.
    assert result.lambda_min == pytest.approx(0.04473, abs=5e-6)
    assert result.lambda_max == pytest.approx(1.956, abs=5e-4)
    assert spectrum(result) is result
    values_only = spectrum(h_inf)
    assert values_only.eigenvectors is None
    assert_reordered_close(spectrum(torch.as_tensor(h_inf)).eigenvalues, values_only.eigenvalues)


def test_spectrum_symmetrises_rounding_asymmetry(test_set):
    h_inf = two_layer_gram(test_set)
    noisy = h_inf.copy()
    noisy[0, 1] += 1e-13
    np.testing.assert_allclose(spectrum(noisy).eigenvalues, spectrum(h_inf).eigenvalues, atol=1e-13)


def test_spectrum_warns_on_duplicated_rows(test_set):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spectrum(two_layer_gram(test_set))  # well-conditioned: no warning
    duplicated = np.vstack([test_set, test_set[:1]])
    with pytest.warns(IllConditionedKernelWarning, match="lambda_min"):
        result = spectrum(two_layer_gram(duplicated))
    assert abs(result.lambda_min) <= 1e-10 * result.lambda_max
    assert issubclass(IllConditionedKernelWarning, UserWarning)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda K: K + np.triu(np.full_like(K, 1e-6), 1), id="non-symmetric"),
        pytest.param(lambda K: K[:, :-1], id="non-square"),
        pytest.param(lambda K: np.where(np.eye(len(K)) > 0, np.inf, K), id="inf"),
    ],
)
def test_spectrum_rejects_bad_kernels(test_set, bad):
    with pytest.raises(ValueError, match="`K`"):
        spectrum(bad(two_layer_gram(test_set)))


def test_spectrum_clips_rounding_negatives_once_and_rejects_real_ones():
    # The policy of docs/mathematics.md §0: [-EIG_FLOOR_RTOL lambda_max, 0) is rounding.
    Q = np.linalg.qr(np.random.default_rng(30).standard_normal((4, 4)))[0]
    tiny = -0.5 * EIG_FLOOR_RTOL * 2.0
    K = (Q * np.array([tiny, 0.1, 1.0, 2.0])) @ Q.T
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = spectrum(K, vectors=True)
    assert [w.category for w in caught] == [IllConditionedKernelWarning]
    assert "clipped to 0" in str(caught[0].message)
    assert result.eigenvalues[0] == 0.0 and result.lambda_min == 0.0
    assert result.condition == math.inf
    assert np.all(result.eigenvalues >= 0)
    for bad in (np.diag([-2.0 * EIG_FLOOR_RTOL, 1.0]), np.array([1.0, -1e-3]), -np.eye(2)):
        with pytest.raises(ValueError, match="`K` must be positive semi-definite"):
            spectrum(bad)


def test_spectrum_of_eigenvalues_sorts_and_refuses_vectors():
    result = spectrum(np.array([2.0, 0.5, 1.0]))
    np.testing.assert_array_equal(result.eigenvalues, [0.5, 1.0, 2.0])
    assert (result.lambda_min, result.lambda_max, result.condition) == (0.5, 2.0, 4.0)
    with pytest.raises(ValueError, match="`K` is a 1-D array of eigenvalues"):
        spectrum([1.0, 2.0], vectors=True)
    with pytest.raises(ValueError, match="`K`"):
        spectrum([])


def test_spectrum_scaled_is_the_spectrum_of_the_scaled_kernel(test_set):
    h_inf = two_layer_gram(test_set)
    base = spectrum(h_inf, vectors=True)
    c = 2.0 / 20  # the mse loss factor on n = 20 (docs/mathematics.md §0)
    scaled = base.scaled(c)
    assert scaled.eigenvectors is base.eigenvectors
    np.testing.assert_array_equal(scaled.eigenvalues, c * base.eigenvalues)  # one product each
    assert (scaled.lambda_min, scaled.lambda_max) == (c * base.lambda_min, c * base.lambda_max)
    assert scaled.condition == pytest.approx(base.condition, rel=1e-15)
    direct = spectrum(c * h_inf)  # decomposing c H again: the same up to eigh's rounding
    np.testing.assert_allclose(scaled.eigenvalues, direct.eigenvalues, rtol=1e-12)
    for bad in (0.0, -1.0, math.inf, math.nan, True, "2"):
        with pytest.raises(ValueError, match="`c`"):
            base.scaled(bad)


def test_spectrum_without_vectors_refuses_vector_request(test_set):
    result = spectrum(two_layer_gram(test_set))
    assert isinstance(result, Spectrum)
    with pytest.raises(ValueError, match="`K`"):
        spectrum(result, vectors=True)
