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

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from .records import RUN_COLUMNS, KernelRecord, RunRecord, decode_curve, encode_curve, run_from_row

__all__ = ["SCHEMA_VERSION", "STORE_NAME", "Store"]

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


class Store:
    """The SQLite results store (module docstring). Use as a context manager.

    Args:
        path: the ``.sqlite`` file, or a results directory (``DIR/results.sqlite``).
        readonly: open an existing store for reading only (never creates or migrates).

    Raises ValueError when the file is not an ntkdyn store or has another ``schema_version``.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        given = Path(path)
        self.path = given / STORE_NAME if given.is_dir() else given
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

    def __exit__(self, *exc: object) -> None:
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
        marks = ", ".join("?" * len(RUN_COLUMNS))
        with self._conn:
            self._conn.executemany(
                f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({marks})", rows
            )

    def write_kernels(self, records: Iterable[KernelRecord]) -> None:
        """Insert or replace H^inf spectra, one transaction."""
        rows = [
            (
                k.key,
                k.data,
                int(k.n),
                int(k.data_seed),
                k.mode,
                float(k.lambda_min),
                float(k.lambda_max),
                encode_curve(k.eigenvalues),
            )
            for k in records
        ]
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
        query = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        args: tuple = ()
        if experiment is not None:
            query += " WHERE experiment = ?"
            args = (experiment,)
        query += " ORDER BY experiment, id"
        return [run_from_row(r) for r in self._conn.execute(query, args)]

    def kernels(self) -> dict[str, KernelRecord]:
        """Data key -> H^inf spectrum (see ``runs.data_key``)."""
        out = {}
        for r in self._conn.execute("SELECT * FROM kernels ORDER BY key"):
            eigenvalues = decode_curve(r["eigenvalues"])
            assert eigenvalues is not None  # the column is NOT NULL
            out[r["key"]] = KernelRecord(
                key=r["key"],
                data=r["data"],
                n=r["n"],
                data_seed=r["data_seed"],
                mode=r["mode"],
                lambda_min=r["lambda_min"],
                lambda_max=r["lambda_max"],
                eigenvalues=eigenvalues,
            )
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
