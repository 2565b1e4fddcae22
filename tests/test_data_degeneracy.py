"""Tests for ntkdyn.data degeneracy checks: the warning fires exactly when lambda_min(H^inf) = 0
(docs/mathematics.md §1.2), checked against an independent H^inf.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ntkdyn import data as D
from ntkdyn.data import DegenerateDataWarning, find_degeneracy, load_dataset, validate_dataset

from data_cases import h_inf

LAMBDA_ZERO_TOL = 1e-12  # lambda_min(H^inf) of a singular Gram: rounding level


def lambda_min(X: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(h_inf(X))[0])


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------------------------
# Degenerate inputs: the warning fires exactly when lambda_min(H^inf) = 0 (docs/mathematics.md §1.2).


@pytest.fixture(scope="module")
def base():
    X = np.random.default_rng(4).standard_normal((12, 5))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_clean_data_does_not_warn(base, no_warnings):
    validate_dataset(base, np.ones(12))
    assert lambda_min(base) > 1e-2


def test_duplicate_rows_warn_and_are_singular(base):
    X = np.vstack([base, base[3]])
    with pytest.warns(
        DegenerateDataWarning, match="rows 3 and 12 .* duplicates.*lambda_min"
    ) as rec:
        validate_dataset(X, np.r_[np.ones(12), 2.0])
    assert rec[0].filename == __file__  # points at the caller
    assert "loss cannot reach 0" in str(rec[0].message)
    assert abs(lambda_min(X)) < LAMBDA_ZERO_TOL


@pytest.mark.parametrize("normalize", [False, True])
def test_positive_multiple_warns(base, normalize):
    X = np.vstack([base, 2.5 * base[7]])
    # After scaling the rows may or may not be bit-identical: either word is right.
    with pytest.warns(DegenerateDataWarning, match="rows 7 and 12 .*(parallel|duplicates)"):
        validate_dataset(X, np.ones(13), normalize=normalize)
    assert abs(lambda_min(X)) < LAMBDA_ZERO_TOL


def test_zero_row_warns_without_normalisation(base):
    X = np.vstack([base, np.zeros(5)])
    with pytest.warns(DegenerateDataWarning, match="row 12 of `X` is zero"):
        validate_dataset(X, np.ones(13), normalize=False)
    assert abs(lambda_min(np.vstack([base, 1e-300 * base[0]]))) < LAMBDA_ZERO_TOL


def test_lone_antiparallel_pair_is_not_degenerate(base, no_warnings):
    X = np.vstack([base, -base[2], -3.0 * base[5]])  # two antiparallel pairs, independent
    validate_dataset(X, np.ones(14))
    validate_dataset(X, np.ones(14), normalize=False)
    assert h_inf(X)[2, 12] == pytest.approx(0.0, abs=1e-16)  # theta = pi
    assert lambda_min(X) > 1e-3


def test_dependent_antiparallel_pairs_warn_and_are_singular(base):
    c = base[0] + base[1]
    c /= np.linalg.norm(c)
    X = np.vstack([base, c, -base[0], -base[1], -c])  # three pairs whose directions span a plane
    with pytest.warns(DegenerateDataWarning, match=r"antiparallel row pairs \(0, 13\), \(1, 14\)"):
        validate_dataset(X, np.ones(16))
    assert abs(lambda_min(X)) < LAMBDA_ZERO_TOL
    # More than d pairs are always dependent: three pairs in the plane, d = 2.
    angles = np.array([0.1, 1.0, 2.0])
    V = np.column_stack([np.cos(angles), np.sin(angles)])
    with pytest.warns(DegenerateDataWarning, match="antiparallel"):
        validate_dataset(np.vstack([V, -V]), np.ones(6))
    assert abs(lambda_min(np.vstack([V, -V]))) < LAMBDA_ZERO_TOL


def test_blocked_check_agrees_with_brute_force(monkeypatch):
    """Tiny blocks (3 rows) so pairs straddle blocks; compare with the full cosine matrix."""
    monkeypatch.setattr(D, "_GRAM_BLOCK_BYTES", 8 * 3 * 40)
    rng = np.random.default_rng(9)
    for trial in range(30):
        X = rng.standard_normal((40, 3))
        i, j = sorted(rng.choice(40, size=2, replace=False))
        if trial % 3 == 0:
            X[j] = 0.5 * X[i]  # parallel
        elif trial % 3 == 1:
            X[j] = -X[i]  # antiparallel: a single pair is fine
        found = find_degeneracy(X)
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        cos = np.triu(U @ U.T, k=1)
        if trial % 3 == 0:
            assert found is not None and found.kind == "parallel"
            assert found.rows == tuple(int(k) for k in np.argwhere(cos > 1 - 1e-12)[0])
        else:
            assert found is None
            assert lambda_min(X) > 1e-6


def test_find_degeneracy_needs_a_matrix():
    with pytest.raises(ValueError, match="`X` must be 2-D"):
        find_degeneracy(np.ones(3))


def test_digits_and_gaussian_have_no_degeneracy(no_warnings):
    load_dataset("digits")
    load_dataset("gaussian:d=3", n=200)
