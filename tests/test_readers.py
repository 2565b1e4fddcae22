"""Bounded readers (ntkdyn._datafiles): a path that is not a regular file is refused before it
is opened, an IDX header must agree with the file size before the data are read, and CSV /
.npz files are capped at MAX_FILE_BYTES. Each refusal is one ValueError naming the field.
"""

from __future__ import annotations

import gzip
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from ntkdyn import _datafiles, load_dataset
from ntkdyn.cli import main
from ntkdyn.experiments.config import load_config

from data_cases import idx_bytes, write_mnist

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no os.mkfifo here")
needs_dev_zero = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")


def _csv(path: Path, rows: int = 6) -> Path:
    rng = np.random.default_rng(0)
    np.savetxt(path, rng.standard_normal((rows, 4)), delimiter=",")
    return path


# --------------------------------------------------------------------------------------------
# IDX: the header's promise is checked against the file before the data are read.


def test_idx_header_promising_more_images_than_the_file_holds(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    write_mnist(tmp_path, images, labels)
    assert load_dataset(f"mnist:{tmp_path}").n == 9  # the honest header loads
    lying = struct.pack(">iiii", 2051, 1_000_000, 28, 28) + images.tobytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(lying)
    with pytest.raises(ValueError, match=r"`mnist` file .*train-images-idx3-ubyte.* is truncated"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_header_over_the_cap_is_refused_before_reading(tmp_path, mnist_arrays):
    images, _ = mnist_arrays
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">iiii", 2051, 2**30, 28, 28) + images.tobytes())
    with pytest.raises(ValueError, match=r"`mnist` file .*declares dims .* over the"):
        load_dataset(f"mnist:{path}")


def test_gzipped_idx_header_promising_more_than_gzip_can_hold(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    write_mnist(tmp_path, images, labels, gz=True)
    assert load_dataset(f"mnist:{tmp_path}").n == 9
    lying = struct.pack(">iiii", 2051, 100_000, 28, 28) + images.tobytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(lying))
    with pytest.raises(ValueError, match="more than a .*-byte gzip file can hold"):
        load_dataset(f"mnist:{tmp_path}")


def test_gzipped_idx_with_a_short_or_long_body(tmp_path, mnist_arrays):
    images, labels = mnist_arrays
    write_mnist(tmp_path, images, labels, gz=True)
    raw = idx_bytes(images, 2051)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    target.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(ValueError, match="is truncated: 7055 data bytes"):
        load_dataset(f"mnist:{tmp_path}")
    target.write_bytes(gzip.compress(raw + b"\x00"))
    with pytest.raises(ValueError, match="has trailing bytes"):
        load_dataset(f"mnist:{tmp_path}")


# --------------------------------------------------------------------------------------------
# Not a regular file: refused from os.stat, never opened.


class _Writer:
    """Opens ``fifo`` for writing (empty) for every reader, so that a reader which wrongly
    opens it gets EOF and fails the test instead of hanging; ``stop`` ends it."""

    def __init__(self, fifo: Path) -> None:
        self.fifo, self.done = fifo, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            os.close(os.open(self.fifo, os.O_WRONLY))  # blocks until a reader opens

    def stop(self) -> None:
        self.done.set()
        while self.thread.is_alive():  # the writer waits in open(): give it a reader
            os.close(os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK))
            self.thread.join(0.05)


@needs_fifo
@pytest.mark.parametrize("source", ["csv", "mnist"])
def test_fifo_is_refused_without_opening_it(tmp_path, source):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = _Writer(fifo)
    try:
        with pytest.raises(ValueError, match=rf"^`{source}` file .*pipe.* is a FIFO"):
            load_dataset(f"{source}:{fifo}")
    finally:
        writer.stop()


@needs_fifo
def test_fifo_in_a_config_is_refused_naming_the_field(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    good = _csv(tmp_path / "good.csv")
    exp = {"id": "A", "widths": [8], "steps": 2, "optimizers": ["gd:lr=0.1"]}
    load_config({"name": "ok", "experiment": [{**exp, "data": f"csv:{good}"}]})
    writer = _Writer(fifo)
    try:
        with pytest.raises(ValueError, match=r"^`experiment\[0\]\.data` csv path .* is a FIFO"):
            load_config({"name": "fifo", "experiment": [{**exp, "data": f"csv:{fifo}"}]})
    finally:
        writer.stop()


@needs_dev_zero
@pytest.mark.parametrize("source", ["csv", "mnist"])
def test_dev_zero_is_refused(source):
    with pytest.raises(ValueError, match=rf"^`{source}` file '/dev/zero' .* character device"):
        load_dataset(f"{source}:/dev/zero")


@needs_dev_zero
def test_dev_zero_on_the_command_line_is_one_error_line(capsys, tmp_path):
    rc = main(["reproduce", "--data", "mnist:/dev/zero", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "character device" in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_directory_where_a_file_is_needed(tmp_path):
    folder = tmp_path / "data.npz"
    folder.mkdir()
    for spec in (f"csv:{folder}", f"mnist:{folder}"):
        with pytest.raises(ValueError, match=r"cannot be read: it is a directory"):
            load_dataset(spec)
    assert _datafiles.regular_file("`x`", _csv(tmp_path / "f.csv")) > 0


# --------------------------------------------------------------------------------------------
# Size caps (checked with os.stat before reading).


def test_csv_over_the_cap(tmp_path, monkeypatch):
    path = _csv(tmp_path / "d.csv")
    assert load_dataset(f"csv:{path}").n == 6
    monkeypatch.setattr(_datafiles, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(ValueError, match=r"^`csv` file .* bytes, over the .*-byte limit"):
        load_dataset(f"csv:{path}")
    monkeypatch.setattr(_datafiles, "MAX_FILE_BYTES", path.stat().st_size)
    assert load_dataset(f"csv:{path}").n == 6  # at the cap is fine


def test_npz_file_and_its_inflated_arrays_over_the_cap(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    pixels = np.random.default_rng(1).integers(0, 2, size=(50, 784), dtype=np.uint8)
    np.savez_compressed(path, X=pixels, y=np.zeros(50))  # 0/1 pixels: compresses well
    size = path.stat().st_size
    monkeypatch.setattr(_datafiles, "MAX_FILE_BYTES", size - 1)
    with pytest.raises(ValueError, match=r"^`mnist` file .*m\.npz.* over the"):
        load_dataset(f"mnist:{path}")
    monkeypatch.setattr(_datafiles, "MAX_FILE_BYTES", size)  # the file fits, its arrays not
    with pytest.raises(ValueError, match="holds arrays of .* over the"):
        load_dataset(f"mnist:{path}")
    monkeypatch.setattr(_datafiles, "MAX_FILE_BYTES", 50 * 784 + 50 * 8 + 1000)
    assert load_dataset(f"mnist:{path}").n == 50
