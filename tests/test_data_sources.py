"""Tests for ntkdyn.data: every source (synthetic, gaussian, scikit-learn digits, MNIST from
hand-written IDX and npz files, CSV) and normalisation.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ntkdyn.data import load_dataset

from data_cases import h_inf, write_mnist

UNIT_NORM_TOL = 1e-14  # |  ||x_i|| - 1 | after normalisation, float64


# --------------------------------------------------------------------------------------------
# Generated sources.


def test_synthetic_matches_the_paper_formula():
    ds = load_dataset("synthetic", seed=3, normalize=False)
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal(50), rng.standard_normal(50)
    x3 = np.linspace(-4, 4, 50)
    assert ds.name == "synthetic" and (ds.n, ds.d) == (50, 3)
    np.testing.assert_array_equal(ds.X, np.column_stack([x1, x2, x3]))
    np.testing.assert_allclose(ds.y, -0.5 * x1 + 1.2 * x2 + 10 * np.sin(x3), rtol=0, atol=1e-14)


def test_normalisation_gives_unit_rows_with_the_same_direction():
    raw = load_dataset("synthetic", n=30, seed=1, normalize=False)
    unit = load_dataset("synthetic", n=30, seed=1)
    norms = np.linalg.norm(raw.X, axis=1)
    assert np.max(np.abs(np.linalg.norm(unit.X, axis=1) - 1)) < UNIT_NORM_TOL
    np.testing.assert_allclose(unit.X * norms[:, None], raw.X, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(unit.y, raw.y)  # labels are never transformed


@pytest.mark.parametrize("spec", ["synthetic", "gaussian:d=4", "digits:classes=3/8"])
def test_same_seed_same_data_other_seed_other_data(spec):
    a, b = load_dataset(spec, n=40, seed=7), load_dataset(spec, n=40, seed=7)
    c = load_dataset(spec, n=40, seed=8)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_gaussian_is_the_math_md_section6_problem():
    ds = load_dataset("gaussian")
    assert (ds.n, ds.d) == (20, 5) and set(np.unique(ds.y)) == {-1.0, 1.0}
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    np.testing.assert_allclose(ds.X, X / np.linalg.norm(X, axis=1, keepdims=True), atol=1e-15)
    np.testing.assert_array_equal(ds.y, np.sign(rng.standard_normal(20)))
    # docs/mathematics.md §6: lambda_0 = 0.04473, lambda_max(H^inf) = 1.956; docs/mathematics.md §1.3: V = 18.16.
    ev = np.linalg.eigvalsh(h_inf(ds.X))
    assert abs(ev[0] - 0.04473) < 5e-6 and abs(ev[-1] - 1.956) < 5e-4
    G = ds.X @ ds.X.T
    p = (np.pi - np.arccos(np.clip(G, -1, 1))) / (2 * np.pi)
    assert abs(np.sum(G**2 * p * (1 - p)) - 18.16) < 5e-3


def test_gaussian_dimension_option():
    ds = load_dataset("gaussian:d=3", n=11, seed=2)
    assert (ds.n, ds.d) == (11, 3) and ds.name == "gaussian:d=3"


# --------------------------------------------------------------------------------------------
# scikit-learn digits.


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.data.astype(float) / 16.0, bunch.target  # pixels 0..16 -> [0, 1]


def test_digits_full_set(digits):
    X, target = digits
    ds = load_dataset("digits", normalize=False)
    assert (ds.n, ds.d) == (1797, 64)
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.y, target.astype(float))
    assert set(np.unique(ds.y)) == set(range(10))
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0  # raw pixels on the same scale as MNIST's


def test_digits_two_classes_are_minus_one_and_plus_one(digits):
    X, target = digits
    ds = load_dataset("digits:classes=3/8", normalize=False)
    keep = (target == 3) | (target == 8)
    np.testing.assert_array_equal(ds.X, X[keep])
    np.testing.assert_array_equal(ds.y, np.where(target[keep] == 3, -1.0, 1.0))
    flipped = load_dataset("digits:classes=8/3", normalize=False)
    np.testing.assert_array_equal(flipped.y, -ds.y)  # the first class listed is -1


def test_digits_class_subset_keeps_digit_values(digits):
    _, target = digits
    ds = load_dataset("digits:classes=0/1/2")
    assert set(np.unique(ds.y)) == {0.0, 1.0, 2.0}
    assert ds.n == int(np.isin(target, [0, 1, 2]).sum())


def test_digits_subset_is_seeded_without_replacement_in_original_order(digits):
    X, target = digits
    ds = load_dataset("digits", n=200, seed=5, normalize=False)
    # Locate every returned row in the full set: distinct indices, increasing, labels match.
    idx = np.array([np.flatnonzero((X == row).all(axis=1))[0] for row in ds.X])
    assert len(set(idx)) == 200 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(ds.y, target[idx])
    expected = np.sort(np.random.default_rng(5).choice(1797, size=200, replace=False))
    np.testing.assert_array_equal(idx, expected)


# --------------------------------------------------------------------------------------------
# MNIST from hand-written IDX files.


def assert_is_mnist(ds, images, labels, n=None):
    n = len(labels) if n is None else n
    assert (ds.n, ds.d) == (n, 784)
    np.testing.assert_array_equal(ds.X, images[:n].reshape(n, 784) / 255.0)
    np.testing.assert_array_equal(ds.y, labels[:n].astype(float))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_folder_plain_and_gzipped(tmp_path, mnist_arrays, gz):
    images, labels = mnist_arrays
    write_mnist(tmp_path, images, labels, gz=gz)
    assert_is_mnist(load_dataset(f"mnist:{tmp_path}", normalize=False), images, labels)
    first = load_dataset(f"mnist:{tmp_path}", n=4, normalize=False)  # the first n rows
    assert_is_mnist(first, images, labels, n=4)
    unit = load_dataset(f"mnist:{tmp_path}")
    assert np.max(np.abs(np.linalg.norm(unit.X, axis=1) - 1)) < UNIT_NORM_TOL


def test_mnist_single_images_file_finds_labels_beside_it(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    img, _ = write_mnist(tmp_path, images, labels, gz=True, stem="t10k-{}-idx{}-ubyte")
    assert_is_mnist(load_dataset(f"mnist:{img}", normalize=False), images, labels)
    dotted = tmp_path / "dotted"
    write_mnist(dotted, images, labels, stem="train-{}.idx{}-ubyte")
    assert_is_mnist(load_dataset(f"mnist:{dotted}", normalize=False), images, labels)


@pytest.mark.parametrize("keys", [("x_train", "y_train"), ("X", "y")])
def test_mnist_npz(tmp_path, mnist_arrays, keys):
    images, labels = mnist_arrays
    path = tmp_path / "mnist.npz"
    np.savez(path, **{keys[0]: images, keys[1]: labels})
    assert_is_mnist(load_dataset(f"mnist:{path}", normalize=False), images, labels)


# --------------------------------------------------------------------------------------------
# CSV.

CSV_ROWS = np.array([[1.0, 2.0, 0.5], [-3.0, 4.0, 1.5], [5.0, -6.5, -2.0], [0.25, 1e-3, 7.0]])


@pytest.mark.parametrize(
    "header,sep", [("", ","), ("a,b,label\n", ","), ("# comment\nf1;f2;y\n", ";"), ("", " ")]
)
def test_csv_with_and_without_header(tmp_path, header, sep):
    path = tmp_path / "data.csv"
    body = "\n".join(sep.join(repr(float(v)) for v in row) for row in CSV_ROWS)
    path.write_text(header + body + "\n")
    ds = load_dataset(f"csv:{path}", normalize=False)
    np.testing.assert_array_equal(ds.X, CSV_ROWS[:, :-1])
    np.testing.assert_array_equal(ds.y, CSV_ROWS[:, -1])
    first = load_dataset(f"csv:{path}", n=2, normalize=False)
    np.testing.assert_array_equal(first.X, CSV_ROWS[:2, :-1])
