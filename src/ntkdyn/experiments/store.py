"""The results store of a sweep: one SQLite file ``DIR/results.sqlite`` (standard library only).

Layout (schema version :data:`SCHEMA_VERSION`):

* ``meta(key, value)``: ``schema_version``, ``runs_tally`` (below), ``config`` (the normalised config JSON),
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

Damage (docs/design.md, "The results store"): every row of ``runs``, ``kernels`` and ``meta``
carries a SHA-256 ``checksum`` of its columns (``records.row_checksum``), verified on every
read, and meta ``runs_tally`` holds the number of runs and the sum of their checksums, so a
run lost from the table is noticed too. A damaged row is never turned into numbers: reading
raises :class:`StoreDamaged` naming it; ``ntkdyn doctor DIR`` salvages the intact runs. Every
SQLite error becomes one :class:`StoreError` line with its cause and remedy.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .records import (
    KERNEL_COLUMNS,
    RUN_COLUMNS,
    KernelRecord,
    RunRecord,
    StoreDamaged,
    StoreError,
    corrupted,
    damage_line,
    explain,
    kernel_from_row,
    quick_check,
    results_dir,
    row_checksum,
    run_from_row,
)

__all__ = ["SCHEMA_VERSION", "STORE_NAME", "Store", "StoreDamaged", "StoreError"]

#: Version of the table layout below; a store with another version is refused.
SCHEMA_VERSION = "3"
#: File name of the store inside a results directory.
STORE_NAME = "results.sqlite"
#: Milliseconds a connection waits for a lock held by another process.
BUSY_TIMEOUT_MS = 30_000
#: Meta entries the store manages itself (never set by callers, not returned by ``meta()``).
_MANAGED = ("schema_version", "runs_tally")
_MOD = 1 << 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, checksum TEXT NOT NULL);
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
    finished TEXT NOT NULL,
    checksum TEXT NOT NULL
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
    eigenvalues BLOB NOT NULL,
    checksum TEXT NOT NULL
);
"""

#: The columns each table must have (a table with others is not ntkdyn's).
_LAYOUT = {
    "meta": ("key", "value", "checksum"),
    "runs": (*RUN_COLUMNS, "checksum"),
    "kernels": (*KERNEL_COLUMNS, "checksum"),
}


def _text(raw: bytes) -> str:
    # Text SQLite cannot decode keeps its bytes: the checksum then fails instead of a crash.
    return raw.decode("utf-8", "surrogateescape")


class Store:
    """The SQLite results store (module docstring). Use as a context manager.

    Args:
        path: the ``.sqlite`` file, or a results directory (``DIR/results.sqlite``).
        readonly: open an existing store for reading only (never creates or migrates); works
            on a read-only file and in a read-only directory.
        check: run SQLite's ``PRAGMA quick_check`` on open and refuse a corrupted file.

    Raises StoreError (a ValueError) when the file is not an ntkdyn store, has another
    ``schema_version``, or cannot be opened; StoreDamaged when a row read fails its checksum.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, readonly: bool = False, check: bool = False
    ) -> None:
        given = Path(path)
        self.path = given / STORE_NAME if given.is_dir() else given
        self.readonly = readonly
        self._where = f"`store` {str(self.path)!r}"
        if readonly and not self.path.is_file():
            raise StoreError(f"{self._where} does not exist")
        self._conn: sqlite3.Connection | None = None
        try:
            with self._guard("opening it"):
                self._conn = self._connect()
                self._conn.text_factory = _text
                self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if not readonly:
                    self._conn.execute("PRAGMA journal_mode = WAL")
                    # NORMAL in WAL mode: a commit survives the process being killed (SIGKILL).
                    self._conn.execute("PRAGMA synchronous = NORMAL")
                self._check_or_create()
                problems = self.quick_check() if check else []
                if problems:
                    raise StoreError(corrupted(self.path, problems[0]))
        except ValueError:  # StoreError included: the connection is closed first
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        timeout = BUSY_TIMEOUT_MS / 1000
        if not self.readonly:
            return sqlite3.connect(self.path, timeout=timeout)
        uri = self.path.resolve().as_uri()
        # Where the files are writable, a query-only read-write connection: closing it as the
        # last connection checkpoints and removes the -wal/-shm files (a mode=ro one would
        # leave them behind). Elsewhere SQLite's read-only mode.
        if os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK):
            conn = sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=timeout)
            conn.execute("PRAGMA query_only = ON")
            return conn
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.is_file() and wal.stat().st_size > 0:
                raise  # committed pages wait in the WAL: immutable=1 would not see them
        # A WAL store in a read-only directory cannot create its -shm file: read the file as
        # immutable (nothing else can be writing it there).
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout)

    def _check_or_create(self) -> None:
        conn = self._db
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "meta" not in tables:
            if tables or self.readonly:
                raise StoreError(f"{self._where} is not an ntkdyn store (no `meta` table)")
            version = ("schema_version", SCHEMA_VERSION)
            tally = ("runs_tally", "0:" + "0" * 64)
            # One script, one transaction: the tables never exist without their version.
            rows = " ".join(
                f"INSERT INTO meta VALUES ('{k}', '{v}', '{row_checksum('meta', (k, v))}');"
                for k, v in (version, tally)
            )
            conn.executescript(f"BEGIN; {_SCHEMA} {rows} COMMIT;")
            return
        sql = "SELECT value FROM meta NOT INDEXED WHERE key = 'schema_version'"
        row = conn.execute(sql).fetchone()
        found = None if row is None else row[0]
        if found != SCHEMA_VERSION:
            raise StoreError(
                f"`schema_version` of store {str(self.path)!r} is {found!r}; this ntkdyn reads "
                f"schema_version {SCHEMA_VERSION!r} (use a fresh --out directory, or read it "
                "with the ntkdyn version that wrote it)"
            )
        for table, columns in _LAYOUT.items():
            found_cols = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
            if found_cols != columns:
                what = "has no" if not found_cols else "has a foreign"
                raise StoreError(
                    f"{self._where} {what} `{table}` table (columns {list(found_cols)}): it is "
                    f"damaged or not written by ntkdyn; run `ntkdyn doctor {results_dir(self.path)}`"
                    " to salvage what is intact, or use a fresh --out directory"
                )

    # ----------------------------------------------------------------------------------------
    # Context manager and errors.

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "the store is closed"
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check`` (``records.quick_check``): [] when sound."""
        return quick_check(self.path)

    def _explain(self, exc: sqlite3.Error, doing: str) -> StoreError:
        return explain(exc, self.path, doing, self._stored_count)

    def _stored_count(self) -> str:
        try:
            return str(self._db.execute("SELECT count(*) FROM runs").fetchone()[0])
        except sqlite3.Error:
            return "the earlier"

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._explain(exc, doing) from None
        except UnicodeDecodeError as exc:  # SQLite's message quotes a damaged schema
            raise StoreError(corrupted(self.path, f"undecodable text, {exc.reason}")) from None

    # ----------------------------------------------------------------------------------------
    # Writing (each call is one transaction).

    def set_meta(self, items: dict[str, str]) -> None:
        """Insert or replace meta entries (values are strings; JSON for structured ones)."""
        if managed := [k for k in _MANAGED if k in items]:
            raise ValueError(f"`{managed[0]}` is managed by the store")
        rows = [(k, str(v)) for k, v in items.items()]
        with self._guard("writing meta"), self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
                [(*r, row_checksum("meta", r)) for r in rows],
            )

    def write_batch(self, records: Sequence[RunRecord]) -> None:
        """Insert (or replace) the runs of one finished batch in one transaction."""
        rows = [r._row() for r in records]
        with self._guard("storing a batch of runs"):
            self._write_rows(rows)

    def _write_rows(self, rows: Sequence[tuple]) -> None:
        conn = self._db
        marks = ", ".join("?" * (len(RUN_COLUMNS) + 1))
        with conn:
            count, total = self._tally()
            for row in rows:
                old = conn.execute("SELECT checksum FROM runs WHERE id = ?", (row[0],)).fetchone()
                if old is not None:
                    count, total = count - 1, total - int(old[0], 16)
                checksum = row_checksum("runs", row)
                conn.execute(f"INSERT OR REPLACE INTO runs VALUES ({marks})", (*row, checksum))
                count, total = count + 1, total + int(checksum, 16)
            self._set_tally(count, total)

    def write_kernels(self, records: Iterable[KernelRecord]) -> None:
        """Insert or replace H^inf spectra, one transaction."""
        rows = [k._row() for k in records]
        with self._guard("writing kernels"), self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO kernels VALUES (?,?,?,?,?,?,?,?,?)",
                [(*r, row_checksum("kernels", r)) for r in rows],
            )

    def delete_runs(self, ids: Iterable[str] | None = None) -> None:
        """Remove the runs ``ids`` (default: every run, a sweep started again)."""
        conn = self._db
        with self._guard("deleting runs"), conn:
            if ids is None:
                conn.execute("DELETE FROM runs")
                self._set_tally(0, 0)
                return
            count, total = self._tally()
            for rid in ids:
                old = conn.execute("SELECT checksum FROM runs WHERE id = ?", (rid,)).fetchone()
                if old is not None:
                    conn.execute("DELETE FROM runs WHERE id = ?", (rid,))
                    count, total = count - 1, total - int(old[0], 16)
            self._set_tally(count, total)

    def _tally(self) -> tuple[int, int]:
        """(number of runs, sum of their checksums) as recorded with the last write."""
        value = self._meta_rows().get("runs_tally")
        if value is None:
            raise StoreDamaged(
                damage_line(self.path, ["runs_tally"], "meta entries"), ["runs_tally"]
            )
        count, total = value.split(":")
        return int(count), int(total, 16)

    def _set_tally(self, count: int, total: int) -> None:
        row = ("runs_tally", f"{count}:{total % _MOD:064x}")
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", (*row, row_checksum("meta", row))
        )

    # ----------------------------------------------------------------------------------------
    # Reading: every row is verified against its checksum first.

    def _verified(self, table: str, columns: Sequence[str]) -> Iterator[tuple]:
        """Rows of ``table`` whose checksum holds, checksum last; StoreDamaged at the end if
        any did not."""
        damaged: list[str] = []
        query = f"SELECT {', '.join(columns)}, checksum FROM {table} NOT INDEXED"
        with self._guard(f"reading `{table}`"):
            for row in self._db.execute(query):
                if row_checksum(table, row[:-1]) == row[-1]:
                    yield tuple(row)
                else:
                    damaged.append(str(row[0]))
        if damaged:
            what = {"runs": "runs", "kernels": "kernels of data keys", "meta": "meta entries"}
            raise StoreDamaged(damage_line(self.path, damaged, what[table]), damaged)

    def _run_rows(self) -> Iterator[tuple]:
        """Every verified run row; also checks that none is missing or repeated (tally)."""
        count, total, seen = 0, 0, set()
        expected = self._tally()
        for row in self._verified("runs", RUN_COLUMNS):
            seen.add(row[0])
            count, total = count + 1, (total + int(row[-1], 16)) % _MOD
            yield row[:-1]
        if (count, total) != expected or len(seen) != count:
            what = f"it recorded {expected[0]} runs, {count} were read back ({len(seen)} distinct)"
            raise StoreDamaged(damage_line(self.path, [], what))

    def _meta_rows(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._verified("meta", ("key", "value"))}

    def meta(self) -> dict[str, str]:
        """All meta entries as strings (``config`` and ``environment`` hold JSON)."""
        return {k: v for k, v in self._meta_rows().items() if k != "runs_tally"}

    def finished_ids(self) -> set[str]:
        """Ids of the runs already stored."""
        return {row[0] for row in self._run_rows()}

    def finished_times(self) -> dict[str, str]:
        """Run id -> its ``finished`` stamp."""
        at = RUN_COLUMNS.index("finished")
        return {row[0]: row[at] for row in self._run_rows()}

    def load_runs(self, experiment: str | None = None) -> list[RunRecord]:
        """Stored runs (optionally of one experiment), ordered by experiment then id."""
        rows = [r for r in self._run_rows() if experiment is None or r[1] == experiment]
        return [run_from_row(r) for r in sorted(rows, key=lambda r: (r[1], r[0]))]

    def kernels(self) -> dict[str, KernelRecord]:
        """Data key -> H^inf spectrum (see ``runs.data_key``)."""
        rows = sorted(r[:-1] for r in self._verified("kernels", KERNEL_COLUMNS))
        return {r[0]: kernel_from_row(r) for r in rows}

    def journal_mode(self) -> str:
        return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    # ----------------------------------------------------------------------------------------
    # Export.

    def export(self, directory: str | os.PathLike[str], format: str = "csv") -> list[Path]:
        """Write ``runs`` (one row per run) and ``curves`` (long format: ``step, run_id, loss,
        pred_discrete, pred_discrete_inf, pred_ode``) as CSV, or as Parquet with pyarrow
        (a ValueError says so when it is missing). Every run is read and verified before
        anything is written. Returns the written paths."""
        from ._export import export_runs

        return export_runs(self.load_runs(), Path(directory), format)
