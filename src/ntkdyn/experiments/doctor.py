"""``ntkdyn doctor DIR``: check a results store and salvage its intact runs.

SQLite does not checksum its pages; the store does (``store``, docs/design.md, "The results
store"). The doctor reads every row it can reach, by every access path (the table itself and
its indexes, each row on its own so one unreadable row does not hide the others), keeps the
rows whose checksum verifies, and names the others. A damaged store is salvaged into a new one
(default ``DIR/salvaged``) holding the intact runs, kernels and meta, from which ``ntkdyn
report`` works and ``ntkdyn sweep --resume`` retrains exactly the lost runs. The original file
is only read.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .records import (
    KERNEL_COLUMNS,
    RUN_COLUMNS,
    KernelRecord,
    RunRecord,
    StoreError,
    kernel_from_row,
    row_checksum,
    run_from_row,
)
from .store import STORE_NAME, Store

__all__ = ["Diagnosis", "diagnose", "doctor", "salvage"]

#: Indexes that reach rows the table scan may miss (SQLite names a primary key's index so).
_INDEXES = {
    "runs": ("sqlite_autoindex_runs_1", "runs_experiment"),
    "kernels": ("sqlite_autoindex_kernels_1",),
    "meta": ("sqlite_autoindex_meta_1",),
}
_MANAGED = ("schema_version", "runs_tally")


@dataclass
class Diagnosis:
    """What :func:`diagnose` found: ``problems`` (one line each; none when healthy), the
    intact runs, the ids of runs that are known but damaged, and the intact meta/kernels."""

    path: Path
    problems: list[str] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    kernels: list[KernelRecord] = field(default_factory=list)
    recorded: int | None = None

    @property
    def healthy(self) -> bool:
        return not self.problems


def diagnose(path: str | os.PathLike[str]) -> Diagnosis:
    """Check the store at ``path`` (a results directory or its ``results.sqlite``)."""
    try:
        store = Store(path, readonly=True)
    except StoreError as exc:
        return Diagnosis(Path(path), problems=[str(exc)])
    with store:
        d = Diagnosis(store.path)
        d.problems += [f"SQLite quick_check: {p}" for p in store.quick_check()[:5]]
        conn = store._db
        meta = _intact(conn, "meta", ("key", "value"), d)
        d.meta = {r[0]: r[1] for r in meta}
        d.kernels = [kernel_from_row(r) for r in _intact(conn, "kernels", KERNEL_COLUMNS, d)]
        seen: set[str] = set()
        for values in _intact(conn, "runs", RUN_COLUMNS, d):
            if values[0] not in seen:
                seen.add(values[0])
                d.runs.append(run_from_row(values))
        d.runs.sort(key=lambda r: (r.experiment, r.id))
        # Runs the primary-key index still names but whose row is lost or damaged.
        named = _column(conn, "runs", "id", "sqlite_autoindex_runs_1")
        d.damaged = sorted(set(d.damaged) | (named - seen))
        for rid in sorted(named - seen):
            if f"run {rid!r}" not in " ".join(d.problems):
                d.problems.append(f"run {rid!r}: its row is lost (named by the index only)")
        tally = d.meta.get("runs_tally", "")
        if ":" in tally:
            d.recorded = int(tally.split(":")[0])
            if d.recorded != len(d.runs):
                d.problems.append(f"the store recorded {d.recorded} runs; {len(d.runs)} are intact")
        elif "runs_tally" not in d.meta:
            d.problems.append("meta 'runs_tally' (the number of runs stored) is missing")
    return d


def _rowids(conn: sqlite3.Connection, table: str, d: Diagnosis) -> list[int]:
    found: set[int] = set()
    for how in ("NOT INDEXED", *(f"INDEXED BY {i}" for i in _INDEXES[table])):
        try:
            for (rowid,) in conn.execute(f"SELECT rowid FROM {table} {how}"):
                found.add(rowid)
        except sqlite3.Error as exc:  # keep what came before the damage
            d.problems.append(f"`{table}` ({how.lower()}): cut short ({exc})")
    return sorted(found)


def _intact(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], d: Diagnosis):
    """Rows of ``table`` whose checksum verifies; each other row becomes a problem line."""
    query = f"SELECT {', '.join(columns)}, checksum FROM {table} WHERE rowid = ?"
    kind = {"runs": "run", "kernels": "kernel", "meta": "meta"}[table]
    out = []
    for rowid in _rowids(conn, table, d):
        try:
            row = conn.execute(query, (rowid,)).fetchone()
        except sqlite3.Error as exc:
            d.problems.append(f"{kind} at row {rowid}: unreadable ({exc})")
            continue
        if row is None:
            continue
        if row_checksum(table, row[:-1]) == row[-1]:
            out.append(tuple(row[:-1]))
            continue
        d.problems.append(f"{kind} {str(row[0])!r}: fails its checksum")
        if table == "runs":
            d.damaged.append(str(row[0]))
    return out


def _column(conn: sqlite3.Connection, table: str, column: str, index: str) -> set[str]:
    out: set[str] = set()
    try:
        for (value,) in conn.execute(f"SELECT {column} FROM {table} INDEXED BY {index}"):
            out.add(str(value))
    except sqlite3.Error:
        pass  # already reported by _rowids
    return out


def salvage(diagnosis: Diagnosis, to: str | os.PathLike[str]) -> Path:
    """Write the intact runs, kernels and meta of ``diagnosis`` into ``to/results.sqlite``
    (a new store; written under a temporary name and renamed). Returns its path."""
    folder = Path(to)
    target = folder / STORE_NAME
    if target.exists():
        raise ValueError(f"`--to` {str(folder)!r} already holds a {STORE_NAME}; choose another")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STORE_NAME}.{os.getpid()}.tmp"
    try:
        with Store(tmp) as new:
            new.set_meta({k: v for k, v in diagnosis.meta.items() if k not in _MANAGED})
            new.write_kernels(diagnosis.kernels)
            new.write_batch(diagnosis.runs)
        tmp.replace(target)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
    return target


def doctor(
    directory: str | os.PathLike[str], to: str | os.PathLike[str] | None = None
) -> tuple[list[str], bool]:
    """Diagnose ``directory``'s store and salvage it when damaged: ``(lines, healthy)``, one
    line per problem, then a summary."""
    directory = Path(directory)
    folder = Path(to) if to is not None else directory / "salvaged"
    if (folder / STORE_NAME).exists():
        raise ValueError(f"`--to` {str(folder)!r} already holds a {STORE_NAME}; choose another")
    d = diagnose(directory)
    if d.healthy:
        return [f"healthy: {len(d.runs)} runs intact in {str(d.path)!r}"], True
    lines = list(d.problems)
    lost = f" (damaged or lost: {', '.join(repr(i) for i in d.damaged)})" if d.damaged else ""
    of = f" of {d.recorded}" if d.recorded is not None else ""
    if not (d.runs or d.meta or d.kernels):
        lines.append(f"damaged: nothing could be recovered from {str(d.path)!r}")
        return lines, False
    ids = [r.id for r in d.runs]
    more = f" and {len(ids) - 20} more" if len(ids) > 20 else ""
    lines.append(f"intact: {len(ids)} runs {', '.join(repr(i) for i in ids[:20])}{more}".rstrip())
    target = salvage(d, folder)
    lines.append(
        f"damaged: salvaged {len(d.runs)}{of} runs{lost}, {len(d.kernels)} kernels and "
        f"{len(set(d.meta) - set(_MANAGED))} meta entries into {str(target)!r}; `ntkdyn sweep CONFIG --out "
        f"{folder} --resume` retrains the lost runs"
    )
    return lines, False
