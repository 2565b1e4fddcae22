"""Tests for ntkdyn.data validation: every bad input (arrays, specs, paths, malformed IDX, npz and
CSV files) is a ValueError that names the problem; the shared spec grammar and message style.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ntkdyn.data import (
    Dataset,
    DataSpec,
    DegenerateDataWarning,
    load_dataset,
    parse_data_spec,
    validate_dataset,
)
from ntkdyn.optim import parse
from ntkdyn.specs import parse_spec

from data_cases import idx_bytes, write_mnist

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
