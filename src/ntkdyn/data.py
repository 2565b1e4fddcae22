"""Datasets: embedded sources, local MNIST/CSV files, row normalisation and input validation.

Specs accepted by :func:`load_dataset` and parsed by :func:`parse_data_spec` (the grammar of
``ntkdyn.specs``: the name is case-insensitive; ``name:key=value,...`` or ``name:PATH``):

* ``synthetic``             the paper's toy regression: ``x1, x2 ~ N(0, 1)``,
                            ``x3 = linspace(-4, 4, n)``, ``y = -0.5 x1 + 1.2 x2 + 10 sin(x3)``.
* ``gaussian:d=5``          rows ``x_i ~ N(0, I_d)``, labels ``y_i = sign(N(0, 1))`` (docs/mathematics.md §6).
* ``digits``                scikit-learn's bundled 8x8 digits (1797 x 64, no download), target =
  ``digits:classes=3/8``    digit value; two classes give labels -1 (first) / +1 (second); three
  ``digits:classes=0/1/2``  or more keep the digit value.
* ``mnist:PATH``            local MNIST: a folder with ``train-images-idx3-ubyte`` and
                            ``train-labels-idx1-ubyte`` (each optionally ``.gz``), one IDX images
                            file (labels beside it), or an ``.npz`` (``x_train/y_train`` or
                            ``X/y``). Integer pixels (IDX bytes, integer npz: 0..255) are divided
                            by 255, floating-point pixels are used as stored.
* ``csv:PATH``              numeric CSV, label in the last column, optional header row.

Only the first ``:`` separates the name, so ``csv:C:\\data\\x.csv`` works. Nothing is ever
downloaded, executed or unpickled. The file readers and the exact IDX/npz/CSV rules they
enforce are in :mod:`ntkdyn._datafiles`, the generated and bundled sources in
:mod:`ntkdyn._datasources`. Every source then passes the checks of
:func:`validate_dataset` and yields a :class:`Dataset` of read-only float64 arrays; bad input
is a ValueError naming the field (or the source) in backticks.

``normalize=True`` (the paper's setting, ``||x_i|| = 1``, docs/mathematics.md §0) scales every row to unit
Euclidean norm. Labels are never transformed.

Degenerate inputs: ``lambda_min(H^inf) = 0`` exactly when two rows have the same direction
(duplicates, positive multiples, a zero row) or antiparallel pairs have linearly dependent
directions; :func:`find_degeneracy` detects exactly these cases (docs/mathematics.md §1.2
derives them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import _datasources as generated
from ._datafiles import read_csv, read_mnist
from ._validate import integer
from .specs import parse_spec

__all__ = [
    "SOURCES",
    "DataSpec",
    "Dataset",
    "Degeneracy",
    "DegenerateDataWarning",
    "find_degeneracy",
    "load_dataset",
    "parse_data_spec",
    "validate_dataset",
]

#: Known spec names and the option keys each accepts (mnist/csv take a path instead).
SOURCES: dict[str, tuple[str, ...]] = {
    "synthetic": (),
    "gaussian": ("d",),
    "digits": ("classes",),
    "mnist": (),
    "csv": (),
}
_PATH_SOURCES = ("mnist", "csv")
_DEFAULT_N = {"synthetic": 50, "gaussian": 20}

#: Rows i, j count as parallel when cos(x_i, x_j) > 1 - PARALLEL_COS_TOL. Two unit rows at angle
#: theta give lambda_min(H^inf) ~ theta / (2 pi), here <= 2.3e-7.
PARALLEL_COS_TOL = 1e-12
#: Antiparallel directions count as dependent when s_min <= DEPENDENCE_RTOL * s_max; measured
#: lambda_min(H^inf) ~ 0.04 s_min^2 (three pairs in a plane of R^5), so <= ~1e-13 here.
DEPENDENCE_RTOL = 1e-6
#: Memory bound for one block of the pairwise cosine matrix.
_GRAM_BLOCK_BYTES = 32 * 2**20


class DegenerateDataWarning(UserWarning):
    """The inputs make lambda_min of the NTK Gram ~0: no linear-rate guarantee (docs/mathematics.md §1.2)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Validated inputs ``X`` (n, d) and labels ``y`` (n,), both float64 and read-only."""

    X: np.ndarray
    y: np.ndarray
    name: str = "data"

    def __post_init__(self) -> None:
        for field, arr, ndim in (("X", self.X, 2), ("y", self.y, 1)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.ndim != ndim:
                raise ValueError(
                    f"`{field}` must be a float64 array with {ndim} dimension(s); "
                    f"use validate_dataset() to convert, got {type(arr).__name__} "
                    f"{getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}"
                )
        if self.X.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"`y` has {self.y.shape[0]} entries but `X` has {self.X.shape[0]} rows"
            )
        for field in ("X", "y"):
            view = getattr(self, field).view()
            view.flags.writeable = False  # a record: the caller's array stays writable
            object.__setattr__(self, field, view)

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.X.shape[1]

    def content_hash(self) -> str:
        """SHA-256 (hex) of the shapes and the little-endian float64 bytes of ``X`` then ``y``:
        what a sweep records per data key to see that resumed runs train on the same data
        (docs/design.md, "The results store")."""
        digest = hashlib.sha256(f"X{self.X.shape};y{self.y.shape};".encode())
        for arr in (self.X, self.y):
            digest.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Degeneracy:
    """Why lambda_min(H^inf) is ~0: ``kind`` in {"zero", "duplicate", "parallel",
    "antiparallel"}, the offending ``rows`` (a pair, or the pairs of a dependent antiparallel
    set flattened), and a readable ``message``."""

    kind: str
    rows: tuple[int, ...]
    message: str


# --------------------------------------------------------------------------------------------
# Validation.


def _as_numeric(field: str, name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"`{field}` of {name!r} must be real numbers, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64)  # always a copy: callers keep their arrays


def _row_norms(X: np.ndarray) -> np.ndarray:
    # Scale by the largest entry first so that 1e-200 or 1e200 rows neither under- nor overflow.
    scale = np.max(np.abs(X), axis=1)
    safe = np.where(scale > 0, scale, 1.0)
    return scale * np.linalg.norm(X / safe[:, None], axis=1)


def _first_nonfinite(field: str, name: str, arr: np.ndarray) -> None:
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        value = arr[idx]
        where = f"row {idx[0]}, column {idx[1]}" if len(idx) == 2 else f"index {idx[0]}"
        raise ValueError(
            f"`{field}` of {name!r} contains {value} at {where} "
            f"({len(bad)} non-finite value(s)); every value must be finite"
        )


def validate_dataset(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    name: str = "data",
    normalize: bool = True,
    check_degenerate: bool = True,
) -> Dataset:
    """Check user arrays and return a float64 :class:`Dataset` (rows unit-norm if ``normalize``).

    Raises ValueError for non-numeric or non-finite values (naming the array and the first bad
    index), empty data, ``X`` not 2-D, ``y`` not of shape (n,) or (n, 1), mismatched lengths, and
    a zero row when ``normalize`` (no direction to scale). Emits :class:`DegenerateDataWarning`
    when :func:`find_degeneracy` finds a reason for ``lambda_min(H^inf) = 0``: duplicated or
    positively parallel rows, a zero row (``normalize=False``), or antiparallel pairs with
    linearly dependent directions. A lone antiparallel pair is fine (docs/mathematics.md §1.2).
    """
    return _validate(X, y, name, normalize, check_degenerate, stacklevel=3)


def _validate(X, y, name, normalize, check_degenerate, stacklevel) -> Dataset:
    if not isinstance(normalize, (bool, np.bool_)):
        raise ValueError(f"`normalize` must be True or False, got {normalize!r}")
    X = _as_numeric("X", name, X)
    y = _as_numeric("y", name, y)
    if X.ndim != 2:
        raise ValueError(f"`X` of {name!r} must be 2-D (n, d), got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[
            :, 0
        ]  # (n, 1) is unambiguous; anything else would broadcast wrongly (docs/mathematics.md §0)
    if y.ndim != 1:
        raise ValueError(f"`y` of {name!r} must have shape (n,) or (n, 1), got {y.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"`X` of {name!r} is empty (shape {X.shape}); need n >= 1 and d >= 1")
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"`y` of {name!r} has {y.shape[0]} entries but `X` has {X.shape[0]} rows; "
            "they must match"
        )
    _first_nonfinite("X", name, X)
    _first_nonfinite("y", name, y)
    if normalize:
        norms = _row_norms(X)
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            raise ValueError(
                f"`X` of {name!r} has a zero row at index {int(zero[0])} ({zero.size} in all); "
                "normalize=True needs every row to have a nonzero norm"
            )
        X = X / norms[:, None]
    if check_degenerate:
        found = find_degeneracy(X, y)
        if found is not None:
            warnings.warn(
                f"{name!r}: {found.message}", DegenerateDataWarning, stacklevel=stacklevel
            )
    return Dataset(X, y, name)


def find_degeneracy(X: npt.ArrayLike, y: npt.ArrayLike | None = None) -> Degeneracy | None:
    """First reason found for ``lambda_min(H^inf) = 0`` in the rows of ``X`` (module docstring).

    Checks, on row directions ``u_i = x_i / ||x_i||``: a zero row; a pair with
    ``cos > 1 - PARALLEL_COS_TOL`` (smallest indices first); then whether the antiparallel pairs
    (``cos < -1 + PARALLEL_COS_TOL``) have linearly dependent directions (``DEPENDENCE_RTOL``).
    Cosines come from the Gram ``U U^T`` in row blocks of at most 32 MiB, upper triangle only:
    ``n^2 d / 2`` flops, stopping at the first parallel pair. ``y``, if given, is only used to
    say that duplicates with different labels cannot be fitted.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"`X` must be 2-D (n, d), got shape {X.shape}")
    n, d = X.shape
    norms = _row_norms(X)
    zero = np.flatnonzero(norms == 0)
    tail = "so lambda_min of the NTK Gram H^inf is ~0 and there is no linear rate guarantee"
    if zero.size:
        i = int(zero[0])
        return Degeneracy(
            "zero", (i,), f"row {i} of `X` is zero, {tail} (docs/mathematics.md §1.2)"
        )
    U = X / norms[:, None]
    block = max(1, _GRAM_BLOCK_BYTES // (8 * n))
    anti: list[tuple[int, int]] = []  # more than d pairs are always dependent: keep d + 1
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        G = U[i0:i1] @ U[i0:].T  # rows i0..i1-1 against columns i0..n-1
        upper = np.arange(G.shape[1])[None, :] > np.arange(i1 - i0)[:, None]
        G = np.where(upper, G, 0.0)  # keep pairs j > i only
        hits = np.argwhere(G > 1.0 - PARALLEL_COS_TOL)
        if hits.size:
            i, j = int(hits[0, 0]) + i0, int(hits[0, 1]) + i0
            return _parallel(X, y, i, j, tail)
        if len(anti) <= d:
            pairs = np.argwhere(G < -1.0 + PARALLEL_COS_TOL)[: d + 1 - len(anti)]
            anti.extend((int(a) + i0, int(b) + i0) for a, b in pairs)
    return _dependent_antiparallel(U, anti, tail) if anti else None


def _parallel(X, y, i: int, j: int, tail: str) -> Degeneracy:
    kind = "duplicate" if np.array_equal(X[i], X[j]) else "parallel"
    what = "are duplicates" if kind == "duplicate" else "are parallel (positive multiples)"
    msg = f"rows {i} and {j} of `X` {what}, {tail} (docs/mathematics.md §1.2)"
    if y is not None and y[i] != y[j]:
        msg += f"; with y[{i}]={y[i]:g} != y[{j}]={y[j]:g} the loss cannot reach 0"
    return Degeneracy(kind, (i, j), msg)


def _dependent_antiparallel(U, anti, tail) -> Degeneracy | None:
    # phi(x) - phi(-x) = x: a null vector of H^inf exists iff the directions are dependent.
    R = U[[i for i, _ in anti]]
    left, s, _ = np.linalg.svd(R)
    if len(anti) <= U.shape[1] and s[-1] > DEPENDENCE_RTOL * s[0]:
        return None
    c = left[:, -1]  # c^T R ~ 0
    involved = [pair for pair, ci in zip(anti, c, strict=True) if abs(ci) > 1e-8 * np.abs(c).max()]
    rows = tuple(k for pair in involved for k in pair)
    listed = ", ".join(f"({i}, {j})" for i, j in involved)
    msg = (
        f"antiparallel row pairs {listed} of `X` have linearly dependent directions, {tail} "
        "(a lone antiparallel pair is fine; docs/mathematics.md §1.2)"
    )
    return Degeneracy("antiparallel", rows, msg)


# --------------------------------------------------------------------------------------------
# Entry point.


def load_dataset(
    spec: str, *, n: int | None = None, seed: int = 0, normalize: bool = True
) -> Dataset:
    """Load a dataset from a spec string (module docstring) and validate it.

    ``n`` means, per source: ``synthetic`` / ``gaussian``: how many rows to generate (defaults
    50 / 20); ``digits``: a random subset of ``n`` rows drawn without replacement with
    ``np.random.default_rng(seed)``, kept in the original order (all rows when ``n`` is None or
    equals the count); ``mnist`` / ``csv``: the first ``n`` rows (the paper uses the first 600
    MNIST training images). ``n`` larger than what is available is a ValueError. ``seed`` drives
    every random draw; no global state is touched.

    Examples:
        >>> import numpy as np
        >>> from ntkdyn import load_dataset
        >>> data = load_dataset("gaussian:d=5", n=20)  # the data set of docs/mathematics.md §6
        >>> data.name, data.X.shape, sorted(set(data.y.tolist()))
        ('gaussian:d=5', (20, 5), [-1.0, 1.0])
        >>> np.linalg.norm(data.X, axis=1).round(12).tolist() == [1.0] * 20  # normalize=True
        True
        >>> load_dataset("digits:classes=3/8").X.shape
        (357, 64)
    """
    parsed = parse_data_spec(spec)
    source, options, path = parsed.source, parsed.options, parsed.path
    n = None if n is None else integer("n", n, minimum=1)
    seed = integer("seed", seed, minimum=0)
    if source == "synthetic":
        X, y = generated.synthetic(_DEFAULT_N[source] if n is None else n, seed)
    elif source == "gaussian":
        d = _int_option(options, "d", 5)
        X, y = generated.gaussian(_DEFAULT_N[source] if n is None else n, seed, d)
    elif source == "digits":
        X, y = generated.digits(n, seed, options.get("classes"))
    else:
        assert path is not None  # parse_data_spec requires one for mnist and csv
        X, y = (read_mnist if source == "mnist" else read_csv)(path, n)
    return _validate(X, y, parsed.canonical, normalize, True, stacklevel=3)


@dataclass(frozen=True)
class DataSpec:
    """A parsed dataset spec: ``source`` (a name of :data:`SOURCES`), its ``options`` (values as
    strings) or, for ``mnist`` / ``csv``, its ``path``."""

    source: str
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    path: str | None = None

    @property
    def canonical(self) -> str:
        """The spec with the options sorted: ``source[:k=v,...]`` or ``source:PATH``."""
        suffix = self.path if self.path is not None else _join(self.options)
        return f"{self.source}:{suffix}" if suffix else self.source


def parse_data_spec(spec: str) -> DataSpec:
    """Parse a dataset spec (module docstring; grammar of ``ntkdyn.specs``) without loading
    anything; ValueError naming the field (``data`` or the option)."""
    parsed = parse_spec(
        spec, field="data", example="digits:classes=3/8", names=SOURCES, path_names=_PATH_SOURCES
    )
    if parsed.path is not None:
        return DataSpec(parsed.name, path=parsed.path)
    return DataSpec(parsed.name, parsed.options(SOURCES[parsed.name], noun="an option"))


def _join(options: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(options.items()))


def _int_option(options: dict[str, str], key: str, default: int) -> int:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"`{key}` must be an integer >= 1, got {options[key]!r}")
    return value
