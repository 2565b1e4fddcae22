"""Tests for ntkdyn.data: every source, normalisation, validation messages, degeneracy checks.

The MNIST tests write the IDX binary format by hand (big-endian int32 magic 2051 / 2049 and
dims, then unsigned bytes), so no download is ever needed.
"""

from __future__ import annotations

import gzip
import struct
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ntkdyn import data as D
from ntkdyn.data import (
    Dataset,
    DataSpec,
    DegenerateDataWarning,
    find_degeneracy,
    load_dataset,
    parse_data_spec,
    validate_dataset,
)
from ntkdyn.optim import parse
from ntkdyn.specs import parse_spec

UNIT_NORM_TOL = 1e-14  # |  ||x_i|| - 1 | after normalisation, float64
LAMBDA_ZERO_TOL = 1e-12  # lambda_min(H^inf) of a singular Gram: rounding level


def h_inf(X: np.ndarray) -> np.ndarray:
    """docs/mathematics.md §1.2, written out independently of the package: x_i.x_j (pi - theta_ij) / (2 pi)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    U = X / np.where(norms > 0, norms, 1.0)
    # theta = 2 atan2(|u - v|, |u + v|): arccos(cos) would lose ~8 digits near theta = 0, pi.
    diff = np.linalg.norm(U[:, None, :] - U[None, :, :], axis=2)
    summ = np.linalg.norm(U[:, None, :] + U[None, :, :], axis=2)
    theta = 2.0 * np.arctan2(diff, summ)
    return (X @ X.T) * (np.pi - theta) / (2 * np.pi)


def lambda_min(X: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(h_inf(X))[0])


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


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
    # docs/mathematics.md 6: lambda_0 = 0.04473, lambda_max(H^inf) = 1.956; docs/mathematics.md §1.3: V = 18.16.
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

IMG_SHAPE = (28, 28)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def mnist_arrays():
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, size=(9, *IMG_SHAPE), dtype=np.uint8)
    images[:, 0, 0] = 255  # no all-zero image
    labels = rng.integers(0, 10, size=9).astype(np.uint8)
    return images, labels


def write_mnist(folder, images, labels, *, gz=False, stem="train-{}-idx{}-ubyte"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, dim, arr, magic in (("images", 3, images, 2051), ("labels", 1, labels, 2049)):
        raw = idx_bytes(arr, magic)
        path = folder / (stem.format(kind, dim) + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths.append(path)
    return paths


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


# --------------------------------------------------------------------------------------------
# Validation: every bad input is a ValueError that names the problem.


@pytest.mark.parametrize(
    "X,y,words",
    [
        ([[1.0, 2.0], [3.0, np.nan]], [1.0, 2.0], ["`X`", "nan", "row 1, column 1"]),
        ([[1.0, 2.0], [3.0, 4.0]], [np.inf, 2.0], ["`y`", "inf", "index 0"]),
        (np.zeros((0, 3)), np.zeros(0), ["`X`", "empty"]),
        ([1.0, 2.0], [1.0, 2.0], ["`X`", "2-D"]),
        ([[1.0], [2.0], [3.0]], [1.0, 2.0], ["`y`", "2 entries", "3 rows"]),
        ([[1.0], [2.0]], [[1.0, 2.0], [3.0, 4.0]], ["`y`", "shape"]),
        ([[1.0, 2.0], [0.0, 0.0]], [1.0, 2.0], ["`X`", "zero row", "index 1"]),
        ([["a", "b"]], [1.0], ["`X`", "real numbers"]),
    ],
)
def test_validate_rejects(X, y, words):
    with pytest.raises(ValueError) as err:
        validate_dataset(X, y, name="mine")
    for word in words + ["'mine'"]:
        assert word in str(err.value), (word, str(err.value))


def test_validate_accepts_column_labels_and_returns_read_only_copies():
    X = np.array([[3.0, 4.0], [1.0, 0.0]])
    ds = validate_dataset(X, np.array([[1.0], [2.0]]))
    np.testing.assert_allclose(ds.X, [[0.6, 0.8], [1.0, 0.0]], atol=1e-16)
    assert ds.y.shape == (2,) and not ds.X.flags.writeable and X.flags.writeable
    np.testing.assert_array_equal(X, [[3.0, 4.0], [1.0, 0.0]])  # caller's array untouched
    with pytest.raises(ValueError, match="`X` must be a float64"):
        Dataset(X.astype(np.float32), np.ones(2))


def test_tiny_and_huge_rows_normalise_without_under_or_overflow():
    ds = validate_dataset([[1e-200, 2e-200], [3e200, -4e200]], [0.0, 1.0])
    np.testing.assert_allclose(ds.X, [[1 / 5**0.5, 2 / 5**0.5], [0.6, -0.8]], rtol=1e-15)


@pytest.mark.parametrize(
    "spec,kwargs,words",
    [
        ("imagenet", {}, ["imagenet", "unknown", "'digits'", "'mnist'"]),
        ("gaussian:k=3", {}, ["`k`", "gaussian", "'d'"]),
        ("synthetic:d=3", {}, ["`d`", "synthetic"]),
        ("gaussian:d", {}, ["key=value"]),
        ("gaussian:d=0", {}, ["`d`", "'0'"]),
        ("gaussian:d=2,d=3", {}, ["`d`", "twice"]),
        ("digits:classes=3", {}, ["`classes`", "'3'"]),
        ("digits:classes=3/3", {}, ["`classes`", "distinct"]),
        ("digits:classes=3/12", {}, ["`classes`", "0-9"]),
        ("digits", {"n": 5000}, ["`n`", "5000", "1797"]),
        ("digits", {"n": 0}, ["`n`", ">= 1"]),
        ("synthetic", {"n": True}, ["`n`"]),
        ("synthetic", {"seed": -1}, ["`seed`", "-1"]),
        ("synthetic", {"normalize": "yes"}, ["`normalize`"]),
        ("csv:", {}, ["path"]),
        ("", {}, ["`data`"]),
    ],
)
def test_load_rejects_bad_specs(spec, kwargs, words):
    with pytest.raises(ValueError) as err:
        load_dataset(spec, **kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_parse_data_spec_reads_the_shared_grammar_without_loading():
    assert parse_data_spec(" Digits : classes = 3/8 ") == DataSpec("digits", {"classes": "3/8"})
    assert parse_data_spec("gaussian:d=5").canonical == "gaussian:d=5"
    assert parse_data_spec("synthetic") == DataSpec("synthetic")
    spec = parse_data_spec(r"csv:C:\data\x,y.csv")  # only the first ':' separates the name
    assert spec.path == r"C:\data\x,y.csv" and spec.options == {}
    assert spec.canonical == r"csv:C:\data\x,y.csv"
    assert parse_data_spec("mnist:/no/such/folder").path == "/no/such/folder"  # not opened


@pytest.mark.parametrize(
    "spec,message",
    [
        ("gd:lr", r"^`optimizer` item 'lr' in 'gd:lr' must look like key=value$"),
        ("gaussian:d", r"^`data` item 'd' in 'gaussian:d' must look like key=value$"),
        ("gd:lr=1,lr=2", r"^`lr` is given twice in 'gd:lr=1,lr=2'$"),
        ("gaussian:d=2,d=3", r"^`d` is given twice in 'gaussian:d=2,d=3'$"),
        ("hb:lr=1,bta=2", r"^`bta` is not a parameter of hb; allowed keys: \['lr', 'beta'\]$"),
        ("gaussian:k=3", r"^`k` is not an option of gaussian; allowed keys: \['d'\]$"),
        ("sgd:lr=1", r"^`optimizer` name 'sgd' is unknown; choose one of \["),
        ("imagenet", r"^`data` name 'imagenet' is unknown; choose one of \["),
    ],
)
def test_optimizer_and_data_specs_share_one_grammar_and_message_style(spec, message):
    read = parse_data_spec if message.lstrip("^").startswith(("`data`", "`d`", "`k`")) else parse
    with pytest.raises(ValueError, match=message):
        read(spec)


def test_spec_grammar_keeps_items_in_order_with_their_text():
    spec = parse_spec("HB: lr = 0.1 ,, beta=critical", field="f", example="hb:lr=1")
    assert (spec.name, spec.items, spec.path) == ("hb", (("lr", "0.1"), ("beta", "critical")), None)
    assert spec.options() == {"lr": "0.1", "beta": "critical"}
    with pytest.raises(ValueError, match=r"^`f` must be a spec such as 'hb:lr=1', got 3$"):
        parse_spec(3, field="f", example="hb:lr=1")
    with pytest.raises(ValueError, match=r"^`f` spec 'csv: ' needs a path: 'csv:PATH'$"):
        parse_spec("csv: ", field="f", example="x", path_names=("csv",))


def test_unreadable_paths(tmp_path):
    for spec in (f"mnist:{tmp_path / 'nope'}", f"csv:{tmp_path / 'nope.csv'}"):
        with pytest.raises(ValueError, match="does not exist"):
            load_dataset(spec)
    with pytest.raises(ValueError, match="`csv` file .* cannot be read"):
        load_dataset(f"csv:{tmp_path}")  # a folder
    with pytest.raises(ValueError, match="no 'train-images-idx3-ubyte'"):
        load_dataset(f"mnist:{tmp_path}")  # empty folder


def corrupt(images_raw: bytes, labels_raw: bytes, name: str):
    """(images bytes, labels bytes, expected message) for a named defect."""
    if name == "wrong magic":
        return labels_raw, labels_raw, "magic number 2049, expected 2051"
    if name == "truncated data":
        return images_raw[:-5], labels_raw, "is truncated: .* need 7056"
    if name == "truncated header":
        return images_raw[:10], labels_raw, "shorter than its 16-byte header"
    if name == "trailing bytes":
        return images_raw + b"\x00", labels_raw, "has trailing bytes"
    if name == "zero dims":
        return struct.pack(">iiii", 2051, 0, 28, 28), labels_raw, "must be >= 1"
    if name == "label count":
        return images_raw, labels_raw[:-1], "truncated"  # header says 9 labels, 8 present
    if name == "fewer labels":
        return images_raw, idx_bytes(np.zeros(8), 2049), "8 labels but .* 9 images"
    if name == "bad gzip":
        return b"\x1f\x8b" + images_raw[:40], labels_raw, "cannot be read"
    raise AssertionError(name)


@pytest.mark.parametrize(
    "defect",
    [
        "wrong magic",
        "truncated data",
        "truncated header",
        "trailing bytes",
        "zero dims",
        "label count",
        "fewer labels",
        "bad gzip",
    ],
)
def test_malformed_idx(tmp_path, mnist_arrays, defect):
    images, labels = mnist_arrays
    img_raw, lab_raw, message = corrupt(idx_bytes(images, 2051), idx_bytes(labels, 2049), defect)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(img_raw)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(lab_raw)
    with pytest.raises(ValueError, match="`mnist` .*" + message) as err:
        load_dataset(f"mnist:{tmp_path}")
    assert "-ubyte" in str(err.value)  # the file is named


def test_missing_labels_file_and_n_too_large(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    img, lab = write_mnist(tmp_path, images, labels)
    with pytest.raises(ValueError, match="`n` = 10 exceeds the 9 rows"):
        load_dataset(f"mnist:{tmp_path}", n=10)
    lab.unlink()
    with pytest.raises(ValueError, match="labels file 'train-labels-idx1-ubyte'"):
        load_dataset(f"mnist:{img}")


def test_npz_float_pixels_are_used_as_stored(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    path = tmp_path / "f.npz"
    pixels = images.reshape(9, 784) / 255.0 * 0.5
    np.savez(path, X=pixels, y=labels)
    ds = load_dataset(f"mnist:{path}", normalize=False)
    np.testing.assert_array_equal(ds.X, pixels)


def test_labels_file_given_as_images_fails_on_its_magic(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    _, lab = write_mnist(tmp_path, images, labels)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte' has magic number 2049"):
        load_dataset(f"mnist:{lab}")
    odd = tmp_path / "pixels.bin"
    odd.write_bytes(idx_bytes(images, 2051))
    with pytest.raises(ValueError, match="must contain 'images'"):
        load_dataset(f"mnist:{odd}")


def test_bad_npz(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    path = tmp_path / "a.npz"
    np.savez(path, images=images, targets=labels)
    with pytest.raises(ValueError, match=r"'x_train'/'y_train' or 'X'/'y', found \['images'"):
        load_dataset(f"mnist:{path}")
    np.savez(path, X=np.array([{"evil": 1}] * 9, dtype=object), y=labels)
    with pytest.raises(ValueError, match="`mnist` file .*a.npz' holds object .pickled. arrays"):
        load_dataset(f"mnist:{path}")
    np.savez(path, X=images, y=labels[:5])
    with pytest.raises(ValueError, match=r"labels \(n,\)"):
        load_dataset(f"mnist:{path}")
    np.savez(path, X=images.astype(np.int64) * 2, y=labels)
    with pytest.raises(ValueError, match=r"integer pixels must lie in \[0, 255\]"):
        load_dataset(f"mnist:{path}")
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot be read as .npz"):
        load_dataset(f"mnist:{path}")


@pytest.mark.parametrize(
    "text,message",
    [
        ("1,2,3\n4,x,6\n", "not numeric"),
        ("1,2,3\n4,5\n", "not numeric"),
        ("1\n2\n", "at least 2 columns"),
        ("", "no data rows"),
        ("a,b,c\n", "no data rows"),
        ("1,2,nan\n3,4,5\n", "`y` .* contains nan at index 0"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_dataset(f"csv:{path}")


def test_degenerate_file_warns_at_the_callers_line(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("1,2,0\n3,1,1\n2,4,0\n")  # row 2 = 2 * row 0
    with pytest.warns(DegenerateDataWarning, match="rows 0 and 2") as rec:
        load_dataset(f"csv:{path}")
    assert rec[0].filename == __file__


def test_csv_n_too_large(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="`n` = 3 exceeds the 2 rows"):
        load_dataset(f"csv:{path}", n=3)


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
