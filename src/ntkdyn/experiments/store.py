"""The results store of a sweep: one SQLite file ``DIR/results.sqlite`` (standard library only).

Layout (schema version :data:`SCHEMA_VERSION`):

* ``meta(key, value)``: ``schema_version``, ``config`` (the normalised config JSON),
  ``environment`` (JSON: versions, platform, device), ``created`` (UTC ISO time).
* ``runs``: one row per finished run, keyed by the stable run id. Curves are float64
  little-endian BLOBs of ``steps + 1`` values in the units of the loss actually minimised
  (half-sum ``1/2 ||e||^2``; mse ``1/n ||e||^2``); predictions are in the same units, or NULL.
  Every run also keeps its kernel model at initialisation: the eigenvalues of ``K = c H(0)``
  and the initial residual's coordinates ``xi_0 = Q^T e_0`` in that eigenbasis, from which
  the exact kernel prediction of any rule can be recomputed (``ntkdyn.verdicts``).
* ``kernels``: eigenvalues of ``H^inf`` (no loss factor) per data key.

Writers commit one transaction per finished batch, so a killed sweep loses at most the batch
it was computing and never leaves a half-written run. The file runs in WAL mode (readers never
block the writer) with a busy timeout.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "SCHEMA_VERSION",
    "STORE_NAME",
    "KernelRecord",
    "RunRecord",
    "Store",
    "decode_curve",
    "encode_curve",
]

#: Version of the table layout below; a store with another version is refused.
SCHEMA_VERSION = "2"
#: File name of the store inside a results directory.
STORE_NAME = "results.sqlite"
#: Milliseconds a connection waits for a lock held by another process.
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    diverged_at INTEGER,
    steps INTEGER NOT NULL,
    final_loss REAL,
    losses BLOB NOT NULL,
    diagnostics TEXT,
    pred_discrete BLOB,
    pred_discrete_inf BLOB,
    pred_ode BLOB,
    lambda_min_k REAL,
    lambda_max_k REAL,
    h0 REAL,
    kernel_eigenvalues BLOB,
    kernel_modes BLOB,
    elapsed REAL,
    finished TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment);
CREATE TABLE IF NOT EXISTS kernels (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    n INTEGER NOT NULL,
    data_seed INTEGER NOT NULL,
    mode TEXT NOT NULL,
    lambda_min REAL NOT NULL,
    lambda_max REAL NOT NULL,
    eigenvalues BLOB NOT NULL
);
"""

_RUN_COLUMNS = (
    "id", "experiment", "config", "status", "diverged_at", "steps", "final_loss", "losses",
    "diagnostics", "pred_discrete", "pred_discrete_inf", "pred_ode", "lambda_min_k",
    "lambda_max_k", "h0", "kernel_eigenvalues", "kernel_modes", "elapsed", "finished",
)  # fmt: skip
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
class RunRecord:
    """One finished run as stored (curves in the units of the loss actually minimised).

    Attributes:
        id: stable run id (``config.run_id``).
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
    def width(self) -> int:
        return self.config["width"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

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
        return tuple(values[c] if c in values else getattr(self, c) for c in _RUN_COLUMNS)


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


def _real(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    values = {c: row[c] for c in _RUN_COLUMNS}
    values["config"] = json.loads(values["config"])
    if values["diagnostics"] is not None:
        values["diagnostics"] = {
            k: np.asarray(v) for k, v in json.loads(values["diagnostics"]).items()
        }
    for name in _ARRAYS:
        values[name] = decode_curve(values[name])
    return RunRecord(**values)


class Store:
    """The SQLite results store (module docstring). Use as a context manager.

    Args:
        path: the ``.sqlite`` file, or a results directory (``DIR/results.sqlite``).
        readonly: open an existing store for reading only (never creates or migrates).

    Raises ValueError when the file is not an ntkdyn store or has another ``schema_version``.
    """

    def __init__(self, path, *, readonly: bool = False) -> None:
        path = Path(path)
        self.path = path / STORE_NAME if path.is_dir() else path
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise ValueError(f"`store` {str(self.path)!r} does not exist")
            # Where the files are writable, a query-only read-write connection: closing it as
            # the last connection checkpoints and removes the -wal/-shm files (a mode=ro one
            # would leave them behind). Elsewhere SQLite's read-only mode.
            writable = os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
            mode = "rw" if writable else "ro"
            uri = f"{self.path.resolve().as_uri()}?mode={mode}"
            self._conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            self._conn.execute("PRAGMA query_only = ON")
        else:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                self._conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode: a commit survives the process being killed (SIGKILL).
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._check_or_create()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ValueError(f"`store` {str(self.path)!r} is not an ntkdyn store: {exc}") from None
        except ValueError:
            self._conn.close()
            raise

    def _check_or_create(self) -> None:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        if "meta" not in tables:
            if tables or self.readonly:
                raise ValueError(
                    f"`store` {str(self.path)!r} is not an ntkdyn store (no `meta` table)"
                )
            # One script, one transaction: the tables never exist without their version.
            self._conn.executescript(
                f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                " COMMIT;"
            )
            return
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        found = None if row is None else row[0]
        if found != SCHEMA_VERSION:
            raise ValueError(
                f"`schema_version` of store {str(self.path)!r} is {found!r}; this ntkdyn reads "
                f"schema_version {SCHEMA_VERSION!r} (use a fresh --out directory)"
            )

    # ----------------------------------------------------------------------------------------
    # Context manager.

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------
    # Writing (each call is one transaction).

    def set_meta(self, items: dict[str, str]) -> None:
        """Insert or replace meta entries (values are strings; JSON for structured ones)."""
        if "schema_version" in items:
            raise ValueError("`schema_version` is managed by the store")
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in items.items()]
            )

    def write_batch(self, records: Sequence[RunRecord]) -> None:
        """Insert (or replace) the runs of one finished batch in one transaction."""
        rows = [r._row() for r in records]
        marks = ", ".join("?" * len(_RUN_COLUMNS))
        with self._conn:
            self._conn.executemany(
                f"INSERT OR REPLACE INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({marks})", rows
            )

    def write_kernels(self, records: Iterable[KernelRecord]) -> None:
        """Insert or replace H^inf spectra, one transaction."""
        rows = [
            (k.key, k.data, int(k.n), int(k.data_seed), k.mode, float(k.lambda_min),
             float(k.lambda_max), encode_curve(k.eigenvalues))
            for k in records
        ]  # fmt: skip
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO kernels VALUES (?,?,?,?,?,?,?,?)", rows)

    def delete_runs(self) -> None:
        """Remove every run (a sweep started again without resume)."""
        with self._conn:
            self._conn.execute("DELETE FROM runs")

    # ----------------------------------------------------------------------------------------
    # Reading.

    def meta(self) -> dict[str, str]:
        """All meta entries as strings (``config`` and ``environment`` hold JSON)."""
        return {r[0]: r[1] for r in self._conn.execute("SELECT key, value FROM meta")}

    def finished_ids(self) -> set[str]:
        """Ids of the runs already stored."""
        return {r[0] for r in self._conn.execute("SELECT id FROM runs")}

    def finished_times(self) -> dict[str, str]:
        """Run id -> its ``finished`` stamp."""
        return {r[0]: r[1] for r in self._conn.execute("SELECT id, finished FROM runs")}

    def load_runs(self, experiment: str | None = None) -> list[RunRecord]:
        """Stored runs (optionally of one experiment), ordered by experiment then id."""
        query = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"
        args: tuple = ()
        if experiment is not None:
            query += " WHERE experiment = ?"
            args = (experiment,)
        query += " ORDER BY experiment, id"
        return [_run_from_row(r) for r in self._conn.execute(query, args)]

    def kernels(self) -> dict[str, KernelRecord]:
        """Data key -> H^inf spectrum (see ``config.data_key``)."""
        out = {}
        for r in self._conn.execute("SELECT * FROM kernels ORDER BY key"):
            out[r["key"]] = KernelRecord(
                key=r["key"], data=r["data"], n=r["n"], data_seed=r["data_seed"], mode=r["mode"],
                lambda_min=r["lambda_min"], lambda_max=r["lambda_max"],
                eigenvalues=decode_curve(r["eigenvalues"]),
            )  # fmt: skip
        return out

    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    # ----------------------------------------------------------------------------------------
    # Export.

    def export(self, directory: str | os.PathLike[str], format: str = "csv") -> list[Path]:
        """Write ``runs`` (one row per run) and ``curves`` (long format: ``step, run_id, loss,
        pred_discrete, pred_discrete_inf, pred_ode``) as CSV, or as Parquet with pyarrow
        (a ValueError says so when it is missing). Returns the written paths."""
        from ._export import export_runs

        return export_runs(self.load_runs(), Path(directory), format)
