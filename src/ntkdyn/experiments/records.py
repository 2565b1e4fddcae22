"""The records a sweep stores, and their encoding as rows of the store (``store``).

A run's curves are float64 little-endian BLOBs of ``steps + 1`` values in the units of the
loss actually minimised; its kernel model at initialisation (the eigenvalues of ``K = c H(0)``
and ``xi_0 = Q^T e_0``) is stored with it, so that the exact kernel prediction of any rule
can be recomputed (``ntkdyn.verdicts``).

Every row carries a SHA-256 checksum over a canonical encoding of its columns
(:func:`row_checksum`; docs/design.md, "The results store"): SQLite does not checksum its
pages, so a flipped byte would otherwise turn into different numbers silently.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from .runs import RunConfigView

__all__ = [
    "KernelRecord",
    "RunRecord",
    "StoreDamaged",
    "StoreError",
    "decode_curve",
    "encode_curve",
    "kernel_from_row",
    "row_checksum",
    "run_from_row",
]

#: The columns of the ``runs`` table, in order (the schema is in ``store``).
RUN_COLUMNS = (
    "id",
    "experiment",
    "config",
    "status",
    "diverged_at",
    "steps",
    "final_loss",
    "losses",
    "diagnostics",
    "pred_discrete",
    "pred_discrete_inf",
    "pred_ode",
    "lambda_min_k",
    "lambda_max_k",
    "h0",
    "kernel_eigenvalues",
    "kernel_modes",
    "elapsed",
    "finished",
)
#: Columns declared REAL / INTEGER: values are normalised to float / int before they are
#: stored, so that what SQLite gives back encodes (and checksums) the same.
_REALS = ("final_loss", "lambda_min_k", "lambda_max_k", "h0", "elapsed", "lambda_min", "lambda_max")
_INTEGERS = ("diverged_at", "steps", "n", "data_seed")
#: The columns of the ``kernels`` table, in order.
KERNEL_COLUMNS = (
    "key",
    "data",
    "n",
    "data_seed",
    "mode",
    "lambda_min",
    "lambda_max",
    "eigenvalues",
)
_CURVES = ("losses", "pred_discrete", "pred_discrete_inf", "pred_ode")
#: Every float64 array column: the curves and the kernel model at initialisation.
_ARRAYS = _CURVES + ("kernel_eigenvalues", "kernel_modes")


def encode_curve(values: ArrayLike | None) -> bytes | None:
    """float64 little-endian bytes of a 1-D curve (None stays None, i.e. SQL NULL)."""
    if values is None:
        return None
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64).ravel(), dtype="<f8").tobytes()


def decode_curve(blob: bytes | None) -> np.ndarray | None:
    """Inverse of :func:`encode_curve`; the array is read-only."""
    if blob is None:
        return None
    arr = np.frombuffer(blob, dtype="<f8").astype(np.float64)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class RunRecord(RunConfigView):
    """One finished run as stored (curves in the units of the loss actually minimised).

    Attributes:
        id: stable run id (``runs.run_id``).
        experiment: id of the experiment the run belongs to.
        config: the normalised run config (``RunSpec.config``).
        status: ``"ok"`` or ``"diverged"``.
        diverged_at: first step with a non-finite or exploding loss, or None.
        steps: optimizer steps; ``losses`` has ``steps + 1`` entries.
        final_loss: ``losses[-1]`` for an ``ok`` run, None for a diverged one.
        losses: measured training loss per step.
        diagnostics: dict of equal-length arrays (``step``, ``lambda_min``, ``lambda_max``,
            ``h_drift``, ``w_drift``, ``flipped``) or None.
        pred_discrete: exact kernel prediction with ``K = c H(0)`` of the run's own init.
        pred_discrete_inf: the same with ``K = c H^inf``.
        pred_ode: the limiting ODE with ``c H^inf`` at the run's step times, or None.
        lambda_min_k, lambda_max_k: extreme eigenvalues of ``K = c H(0)``.
        h0: ``lr * lambda_min_k`` (linear rules only).
        kernel_eigenvalues: ascending eigenvalues of ``K = c H(0)`` (``(n,)``), or None.
        kernel_modes: ``xi_0 = Q^T e_0``, the initial residual in that eigenbasis, or None.
        elapsed: this run's share of its batch's wall time, seconds.
        finished: UTC ISO time at which its batch was committed.
    """

    id: str
    experiment: str
    config: dict
    status: str
    diverged_at: int | None
    steps: int
    final_loss: float | None
    losses: np.ndarray
    diagnostics: dict | None = None
    pred_discrete: np.ndarray | None = None
    pred_discrete_inf: np.ndarray | None = None
    pred_ode: np.ndarray | None = None
    lambda_min_k: float | None = None
    lambda_max_k: float | None = None
    h0: float | None = None
    kernel_eigenvalues: np.ndarray | None = None
    kernel_modes: np.ndarray | None = None
    elapsed: float | None = None
    finished: str = ""

    @property
    def optimizer(self) -> str:
        """Canonical spec of the run's rule (``optim.parse`` rebuilds it)."""
        return self.config["optimizer"]

    def _row(self) -> tuple:
        diagnostics = None
        if self.diagnostics is not None:
            diagnostics = json.dumps(
                {k: np.asarray(v).tolist() for k, v in self.diagnostics.items()}, sort_keys=True
            )
        values = {
            "config": json.dumps(self.config, sort_keys=True, separators=(",", ":")),
            "diagnostics": diagnostics,
            "final_loss": _real(self.final_loss),
            **{name: encode_curve(getattr(self, name)) for name in _ARRAYS},
        }
        return _normalised(
            RUN_COLUMNS, [values[c] if c in values else getattr(self, c) for c in RUN_COLUMNS]
        )


@dataclass(frozen=True, eq=False)
class KernelRecord:
    """Spectrum of ``H^inf`` (loss factor not included) of one data key."""

    key: str
    data: str
    n: int
    data_seed: int
    mode: str
    lambda_min: float
    lambda_max: float
    eigenvalues: np.ndarray = field(repr=False)

    def _row(self) -> tuple:
        values = [getattr(self, c) for c in KERNEL_COLUMNS]
        values[-1] = encode_curve(self.eigenvalues)
        return _normalised(KERNEL_COLUMNS, values)


def kernel_from_row(values: Sequence) -> KernelRecord:
    """A KernelRecord from the ``KERNEL_COLUMNS`` values of a verified row."""
    fields = dict(zip(KERNEL_COLUMNS, values, strict=True))
    fields["eigenvalues"] = decode_curve(fields["eigenvalues"])
    return KernelRecord(**fields)


def _normalised(columns: Sequence[str], values: Sequence) -> tuple:
    out = []
    for name, v in zip(columns, values, strict=True):
        if v is not None and name in _REALS:
            v = float(v)
            v = v if not math.isnan(v) else None  # SQLite stores NaN as NULL
        elif v is not None and name in _INTEGERS:
            v = int(v)
        out.append(v)
    return tuple(out)


def row_checksum(table: str, values: Sequence) -> str:
    """SHA-256 (hex) of a row as stored: the table name, then per column a type tag, the
    payload's length and the payload (floats as IEEE bytes, text as UTF-8; text SQLite
    cannot decode keeps its raw bytes, so damage never matches)."""
    h = hashlib.sha256(f"ntkdyn-row:{table}".encode())
    for v in values:
        if v is None:
            tag, payload = b"N", b""
        elif isinstance(v, (bool, int)):
            tag, payload = b"I", str(int(v)).encode()
        elif isinstance(v, float):
            tag, payload = b"F", struct.pack("<d", v)
        elif isinstance(v, str):
            tag, payload = b"T", v.encode("utf-8", "surrogateescape")
        elif isinstance(v, (bytes, bytearray, memoryview)):
            tag, payload = b"B", bytes(v)
        else:
            raise TypeError(f"cannot checksum a {type(v).__name__} column value")
        h.update(tag + struct.pack("<Q", len(payload)) + payload)
    return h.hexdigest()


def _real(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run_from_row(row: sqlite3.Row | Sequence) -> RunRecord:
    """A RunRecord from the ``RUN_COLUMNS`` values of a verified row."""
    values = dict(zip(RUN_COLUMNS, tuple(row)[: len(RUN_COLUMNS)], strict=True))
    values["config"] = json.loads(values["config"])
    if values["diagnostics"] is not None:
        values["diagnostics"] = {
            k: np.asarray(v) for k, v in json.loads(values["diagnostics"]).items()
        }
    for name in _ARRAYS:
        values[name] = decode_curve(values[name])
    return RunRecord(**values)


# --------------------------------------------------------------------------------------------
# The store's errors: one line each, with the cause and the remedy (``store``).


class StoreError(ValueError):
    """A results store that cannot be read or written, as one line: cause and remedy."""


class StoreDamaged(StoreError):
    """Rows whose checksum fails (``ids``: the run ids, kernel keys or meta keys)."""

    def __init__(self, message: str, ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.ids = tuple(ids)


def results_dir(path: Path) -> str:
    """The directory ``ntkdyn doctor`` takes for the store file ``path``."""
    return str(path.parent if path.name == "results.sqlite" else path)


def quick_check(path: Path) -> list[str]:
    """SQLite's ``PRAGMA quick_check`` of ``path`` on a read-only connection of its own:
    [] when the file's structure is sound, else its findings (failing to run it is one)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    problems: list[str] = []
    for suffix in ("", "&immutable=1"):  # immutable: no -shm can be made in a read-only dir
        try:
            conn = sqlite3.connect(uri + suffix, uri=True)
            conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
            try:
                rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
            finally:
                conn.close()
            return [] if rows == ["ok"] else [str(r) for r in rows]
        except sqlite3.OperationalError as exc:
            problems = [str(exc)]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        except UnicodeDecodeError as exc:  # SQLite's message quotes damaged bytes
            return [f"undecodable text, {exc.reason}"]
    return problems


def corrupted(path: Path, cause: str) -> str:
    return (
        f"`store` {str(path)!r} is corrupted (SQLite: {cause}); run `ntkdyn doctor "
        f"{results_dir(path)}` to salvage the intact runs into a new store"
    )


def damage_line(path: Path, ids: Sequence[str], what: str) -> str:
    shown = ", ".join(repr(i) for i in ids[:5])
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return (
        f"`store` {str(path)!r} is damaged: {what} {shown}{more} fail their checksum; run "
        f"`ntkdyn doctor {results_dir(path)}` to salvage the intact runs into a new store"
    )


def explain(exc: sqlite3.Error, path: Path, doing: str, stored: Callable[[], str]) -> StoreError:
    """One line for a SQLite error: the cause and what to do (``stored()`` counts the runs
    kept, for a disk that filled up while writing)."""
    msg, where = str(exc), f"`store` {str(path)!r}"
    low = msg.lower()
    if "full" in low:
        return StoreError(
            f"stopped: disk full while {doing}; {stored()} runs are stored in {where}, "
            "free space and run again with --resume"
        )
    if "readonly" in low or "read-only" in low:
        return StoreError(
            f"{where} is read-only ({msg}) while {doing}: make the file and its directory "
            "writable, or use another --out directory"
        )
    if "locked" in low or "busy" in low:
        return StoreError(f"{where} is locked by another process ({msg}); try again")
    if "no such table" in low or "no such column" in low:
        return StoreError(
            f"{where} lacks a table or column of an ntkdyn store ({msg}); run `ntkdyn doctor "
            f"{results_dir(path)}` or use a fresh --out directory"
        )
    if "not a database" in low:
        return StoreError(f"{where} is not an ntkdyn store, or is corrupted ({msg})")
    if "unable to open" in low:
        return StoreError(
            f"{where} cannot be opened ({msg}): check the permissions of the file and its directory"
        )
    problems = quick_check(path)  # say "corrupted" only when SQLite finds it so
    if problems or "malformed" in low or "corrupt" in low:
        return StoreError(corrupted(path, problems[0] if problems else msg))
    return StoreError(f"{where}: SQLite error while {doing}: {msg}")
