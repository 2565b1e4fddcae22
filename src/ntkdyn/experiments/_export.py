"""Export of stored runs to CSV (always) and Parquet (when pyarrow is importable).

``runs``: one row per run, one column per hyperparameter and per config field, the outcome
and its fitted rate (the table of ``_table``, documented in ``results``); the canonical
optimizer spec stays as the last column, ``spec``, for provenance only. ``curves``: long
format, one row per (run, step) with the measured loss and the three predictions (empty /
null where a prediction is absent). Floats are written with ``repr`` so CSV round-trips
float64 exactly; a missing value is an empty cell. Every file is written under a temporary
name and renamed: no partial file is left behind. No pandas is needed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_path
from ._table import CURVES_TABLE, RUNS_TABLE, curve_arrays, run_rows

if TYPE_CHECKING:
    from .records import RunRecord

__all__ = ["export_runs"]


def export_runs(
    runs: Sequence[RunRecord],
    directory: Path,
    format: str,
    *,
    rows: Sequence[Mapping[str, object]] | None = None,
) -> list[Path]:
    """Write ``runs.{csv,parquet}`` and ``curves.{csv,parquet}`` into ``directory``
    (``rows``: the runs table of ``runs`` when it is already built)."""
    if format not in ("csv", "parquet"):
        raise ValueError(f"`format` must be 'csv' or 'parquet', got {format!r}")
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(
                "`format` 'parquet' needs the pyarrow package, which is not installed; "
                "install pyarrow or use --format csv"
            ) from None
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"`directory` {str(directory)!r} is not a directory")
    if rows is None:
        rows = run_rows(runs)  # every run is tabulated before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        paths = [directory / "runs.csv", directory / "curves.csv"]
        _write_csv(paths[0], list(RUNS_TABLE), ([_cell(r[c]) for c in RUNS_TABLE] for r in rows))
        _write_csv(paths[1], list(CURVES_TABLE), _curve_cells(runs))
        return paths
    return _export_parquet(directory, rows, runs)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # round-trips float64 exactly
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def _curve_cells(runs: Sequence[RunRecord]) -> Iterator[tuple[str, ...]]:
    """The cells of the curves table, run by run, a column at a time (``_cell`` of every
    value; a prediction not stored is an empty column)."""
    for r in runs:
        arrays = curve_arrays(r)
        size = r.losses.size
        columns: list[list[str]] = []
        for name in CURVES_TABLE:
            values = arrays.get(name)
            if name == "run_id":
                columns.append([r.id] * size)
            elif values is None:
                columns.append([""] * size)
            else:
                columns.append([_cell(v) for v in values.tolist()])
        yield from zip(*columns, strict=True)


_ARROW_TYPES = {"int": "int64", "float": "float64", "str": "string", "bool": "bool_"}


def _arrow_table(columns: Mapping[str, str], data: Mapping[str, Sequence[object]]) -> Any:
    import pyarrow as pa

    # declared types, so that a column with no value yet keeps its type
    schema = pa.schema([(c, getattr(pa, _ARROW_TYPES[kind])()) for c, kind in columns.items()])
    return pa.table({c: list(data[c]) for c in columns}, schema=schema)


def _export_parquet(
    directory: Path, rows: Sequence[Mapping[str, object]], runs: Sequence[RunRecord]
) -> list[Path]:
    import pyarrow.parquet as pq

    curves: dict[str, list[object]] = {c: [] for c in CURVES_TABLE}
    for r in runs:
        arrays = curve_arrays(r)
        size = r.losses.size
        for name in CURVES_TABLE:
            values = arrays.get(name)
            if name == "run_id":
                curves[name] += [r.id] * size
            else:
                curves[name] += [None] * size if values is None else values.tolist()
    tables = (
        _arrow_table(RUNS_TABLE, {c: [row[c] for row in rows] for c in RUNS_TABLE}),
        _arrow_table(CURVES_TABLE, curves),
    )
    paths = [directory / "runs.parquet", directory / "curves.parquet"]
    for table, path in zip(tables, paths, strict=True):
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    return paths
