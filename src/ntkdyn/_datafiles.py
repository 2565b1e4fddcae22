"""Readers for local data files: MNIST (IDX or ``.npz``) and numeric CSV, with their validation.

Private helpers of :func:`ntkdyn.data.load_dataset`; the spec syntax, the meaning of ``n``, the
pixel scale and the no-download / no-unpickling rule are stated there. Conventions here:

* A reader takes the path as written in the spec and ``n`` (None: every row) and returns
  ``(X, y)``: ``X`` (n, d) and ``y`` (n,), the first ``n`` rows in file order. It does not
  normalise, check finiteness or look for degeneracy; :mod:`ntkdyn.data` validates that next.
* Every problem with a file is a ValueError that names the source in backticks (`` `mnist` ``,
  `` `csv` ``), shows the path and says what was expected; OS and decompression errors included.
* Reads are bounded before they start: a path that is not a regular file (a FIFO, a device
  such as ``/dev/zero``, a folder where a file is needed) is refused from ``os.stat`` without
  being opened; CSV and ``.npz`` files (and the arrays an ``.npz`` declares) are capped at
  :data:`MAX_FILE_BYTES`; an IDX header's dims must agree with the file size (gzip: with what
  the compressed size can hold) before the data are read, and the read asks for exactly that.

Formats (the precise rules behind the summary in :mod:`ntkdyn.data`):

* IDX: big-endian int32 magic ``0x0800 + ndim`` (2051 images, 2049 labels: unsigned bytes),
  ``ndim`` int32 dimensions, then exactly ``prod(dims)`` bytes; gzip-compressed files are
  recognised by their magic bytes, whatever their name. A folder is searched for
  ``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte`` (each optionally ``.gz``); the
  labels file sits beside the images file, its name with ``images`` -> ``labels`` and
  ``idx3`` -> ``idx1``.
* ``.npz``: arrays ``x_train``/``y_train``, else ``X``/``y``; images (n, ...) flattened to rows,
  labels (n,); integer pixels must lie in [0, 255].
* CSV: ``,``, else ``;``, else whitespace separated (decided on the first data line); the label is
  the last column; a first line that is not all numbers is a header; blank lines and lines
  starting with ``#`` are skipped; a UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["MAX_FILE_BYTES", "read_csv", "read_mnist", "regular_file", "too_many_rows"]

_IDX_IMAGES = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
#: Largest data file read (CSV, .npz and its arrays, IDX data), in bytes. The file is held in
#: memory and becomes float64 rows (8x an IDX byte) whose n x n kernel follows; MNIST's 47 MB
#: training images are far below, and a wrong path to a huge file fails at once, not by
#: exhausting memory. Use ``n`` on a smaller extract for more.
MAX_FILE_BYTES = 2 * 2**30
#: deflate expands at most ~1032:1, so a gzip file of s bytes holds at most this many times s.
_GZIP_MAX_RATIO = 1032
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def too_many_rows(source: str, n: int, available: int) -> ValueError:
    """The error for ``n`` larger than the rows of ``source`` (shared with ``digits``)."""
    return ValueError(f"`n` = {n} exceeds the {available} rows available in {source}")


def _where(source: str, path) -> str:
    return f"`{source}` file {str(path)!r}"


def _existing(path: str, source: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"`{source}` path {path!r} does not exist")
    return p


def regular_file(where: str, path: str | os.PathLike[str]) -> int:
    """Size in bytes of ``path`` if it is a regular file (symlinks followed); else a ValueError
    starting with ``where`` that says what it is. Never opens it: opening a FIFO blocks, and
    a device such as /dev/zero never ends."""
    try:
        mode = os.stat(path)
    except OSError as exc:
        raise ValueError(f"{where} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode.st_mode):
        kind = next((k for test, k in _KINDS if test(mode.st_mode)), "not a regular file")
        raise ValueError(f"{where} cannot be read: it is {kind}, not a regular file")
    return mode.st_size


def _capped(where: str, size: int, what: str = "is") -> None:
    if size > MAX_FILE_BYTES:
        raise ValueError(
            f"{where} {what} {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit "
            "(MAX_FILE_BYTES, ntkdyn._datafiles: the data are held in memory); "
            "use an extract of the rows you need"
        )


# --------------------------------------------------------------------------------------------
# MNIST: IDX files or an .npz.


def read_mnist(path: str, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST images as rows of ``X`` (pixel scale: ``ntkdyn.data``) and labels."""
    p = _existing(path, "mnist")
    if p.suffix.lower() == ".npz":
        images, labels = _read_npz(p)
    else:
        images, labels = _read_idx_pair(p, path)
    if n is not None and n > images.shape[0]:
        raise too_many_rows(f"mnist {path!r}", n, images.shape[0])
    if images.shape[0] == 0:
        raise ValueError(f"`mnist` file {path!r} holds no images (zero rows)")
    images, labels = images[:n], labels[:n]
    X = images.reshape(images.shape[0], -1)
    X = X / 255.0 if X.dtype.kind in "biu" else X.astype(np.float64)  # uint8 pixels -> [0, 1]
    return X, labels.astype(np.float64)


def _read_idx_pair(p: Path, path: str) -> tuple[np.ndarray, np.ndarray]:
    if p.is_dir():
        img = _find(p, _IDX_IMAGES)
        if img is None:
            raise ValueError(
                f"`mnist` folder {path!r} holds no 'train-images-idx3-ubyte' (or '.gz'); "
                "give the folder of the standard IDX files, one images file, or an .npz"
            )
    else:
        img = p
    images = _read_idx(img, 3)  # first, so a labels file given by mistake fails on its magic
    stem = img.name.removesuffix(".gz")
    label_stem = stem.replace("images", "labels").replace("idx3", "idx1")
    lab = _find(img.parent, (label_stem,)) if label_stem != stem else None
    if lab is None:
        raise ValueError(
            f"`mnist` labels file {label_stem!r} (or '.gz') not found beside {str(img)!r}; "
            "the images file name must contain 'images' (and 'idx3')"
        )
    labels = _read_idx(lab, 1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"`mnist` labels file {str(lab)!r} has {labels.shape[0]} labels but the images "
            f"file has {images.shape[0]} images"
        )
    return images, labels


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in ("", ".gz"):
            if (folder / (stem + suffix)).is_file():
                return folder / (stem + suffix)
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """IDX: int32 magic 0x0000_08_ndim (unsigned bytes), ndim big-endian int32 dims, data.
    The header is read and checked against the file size first; then exactly its data."""
    where = _where("mnist", path)
    size_on_disk = regular_file(where, path)
    header = 4 + 4 * ndim
    try:
        with path.open("rb") as raw_fh:
            gz = raw_fh.read(2) == b"\x1f\x8b"
            raw_fh.seek(0)
            fh = gzip.GzipFile(fileobj=raw_fh) if gz else raw_fh
            head = fh.read(header)
            size = _idx_promise(where, head, ndim, size_on_disk, gz)
            data = fh.read(size)
            extra = fh.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{where} cannot be read: {exc}") from None
    dims = struct.unpack(f">{ndim}i", head[4:])
    if len(data) < size:  # a gzip file, or a file that changed since its size was checked
        raise ValueError(f"{where} is truncated: {len(data)} data bytes, dims {dims} need {size}")
    if extra:
        raise ValueError(f"{where} has trailing bytes after the {size} data bytes of dims {dims}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _idx_promise(where: str, head: bytes, ndim: int, size_on_disk: int, gz: bool) -> int:
    """Data bytes the header promises, refused when the file cannot hold them."""
    header = 4 + 4 * ndim
    if len(head) < header:
        raise ValueError(
            f"{where} is truncated: {len(head)} bytes, shorter than its {header}-byte header"
        )
    magic_expected = 0x0800 + ndim  # 2051 for images, 2049 for labels
    (magic,) = struct.unpack(">i", head[:4])
    if magic != magic_expected:
        raise ValueError(
            f"{where} has magic number {magic}, expected {magic_expected} "
            f"(IDX unsigned bytes with {ndim} dimension(s))"
        )
    dims = struct.unpack(f">{ndim}i", head[4:])
    if any(k <= 0 for k in dims):
        raise ValueError(f"{where} declares dims {dims}; every dimension must be >= 1")
    size = int(np.prod(dims, dtype=object))  # object: exact, no int64 overflow on bad headers
    _capped(where, size, f"declares dims {dims}:")
    if gz:
        if size > _GZIP_MAX_RATIO * size_on_disk:
            raise ValueError(
                f"{where} is truncated: dims {dims} need {size} data bytes, more than a "
                f"{size_on_disk}-byte gzip file can hold"
            )
    elif size_on_disk - header != size:
        problem = "is truncated" if size_on_disk - header < size else "has trailing bytes"
        raise ValueError(
            f"{where} {problem}: {size_on_disk - header} data bytes, dims {dims} need {size}"
        )
    return size


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    where = _where("mnist", path)
    _capped(where, regular_file(where, path))
    if not zipfile.is_zipfile(path):  # np.load would otherwise try .npy or pickle formats
        raise ValueError(f"{where} cannot be read as .npz: not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:  # what the arrays will take once inflated
            _capped(where, sum(i.file_size for i in archive.infolist()), "holds arrays of")
        with np.load(path, allow_pickle=False) as z:  # never unpickle user files
            for xk, yk in (("x_train", "y_train"), ("X", "y")):
                if xk in z.files and yk in z.files:
                    images, labels = z[xk], z[yk]
                    break
            else:
                raise ValueError(
                    f"{where} must hold arrays 'x_train'/'y_train' or 'X'/'y', found {z.files}"
                )
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{where} cannot be read as .npz: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(where):
            raise
        # numpy refuses object arrays with allow_pickle=False; they are never loaded here
        raise ValueError(
            f"{where} holds object (pickled) arrays; save plain numeric arrays"
        ) from None
    if images.ndim < 2 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{where} needs images (n, ...) and labels (n,), got {images.shape} and {labels.shape}"
        )
    if images.dtype.kind not in "biuf" or labels.dtype.kind not in "biuf":
        raise ValueError(f"{where} must hold real numbers, got {images.dtype} and {labels.dtype}")
    if images.dtype.kind in "biu" and images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"{where}: integer pixels must lie in [0, 255]")
    return images, labels


# --------------------------------------------------------------------------------------------
# CSV.


def read_csv(path: str, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` data rows of a numeric CSV: features, then the label in the last column."""
    p = _existing(path, "csv")
    where = _where("csv", path)
    _capped(where, regular_file(where, p))
    try:
        with p.open(encoding="utf-8-sig") as fh:
            lines = enumerate(fh)
            at, first = next(((i, ln) for i, ln in lines if ln.strip() and ln[0] != "#"), (0, ""))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where} cannot be read: {exc}") from None
    delimiter = "," if "," in first else (";" if ";" in first else None)
    header = not all(_is_number(f) for f in first.strip().split(delimiter))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": see below
            data = np.loadtxt(
                p,
                dtype=np.float64,
                delimiter=delimiter,
                skiprows=at + 1 if header else 0,
                ndmin=2,
                max_rows=n,
                encoding="utf-8-sig",
                comments="#",
            )
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where} is not numeric: {exc}") from None
    if data.shape[0] == 0:
        raise ValueError(f"{where} holds no data rows")
    if data.shape[1] < 2:
        raise ValueError(f"{where} needs at least 2 columns (features, then the label)")
    if n is not None and data.shape[0] < n:
        raise too_many_rows(where, n, data.shape[0])
    return data[:, :-1], data[:, -1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
