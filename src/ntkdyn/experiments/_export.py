"""Export of stored runs to CSV (always) and Parquet (when pyarrow is importable).

``runs``: one row per run (record fields and the run config's fields). ``curves``: long format,
one row per (run, step) with the measured loss and the three predictions (empty / null where a
prediction is absent). Floats are written with ``repr`` so CSV round-trips float64 exactly.
Every file is written under a temporary name and renamed: no partial file is left behind.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .._io import atomic_path

_RUN_FIELDS_CSV = (
    "id",
    "experiment",
    "status",
    "diverged_at",
    "steps",
    "final_loss",
    "lambda_min_k",
    "lambda_max_k",
    "h0",
    "elapsed",
    "finished",
)
_CONFIG_FIELDS_CSV = (
    "mode",
    "data",
    "n",
    "data_seed",
    "loss",
    "width",
    "seed",
    "optimizer",
    "steps",
    "dtype",
    "device",
    "predict",
    "diagnostics_every",
)
_CURVE_COLUMNS = ("step", "run_id", "loss", "pred_discrete", "pred_discrete_inf", "pred_ode")


def export_runs(runs: Sequence, directory: Path, format: str) -> list[Path]:
    """Write ``runs.{csv,parquet}`` and ``curves.{csv,parquet}`` into ``directory``."""
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
    directory.mkdir(parents=True, exist_ok=True)
    run_rows = [_run_summary(r) for r in runs]
    run_cols = list(_RUN_FIELDS_CSV) + [c for c in _CONFIG_FIELDS_CSV if c != "steps"]
    if format == "csv":
        paths = [directory / "runs.csv", directory / "curves.csv"]
        _write_csv(paths[0], run_cols, run_rows)
        _write_csv(paths[1], _CURVE_COLUMNS, _curve_rows(runs))
        return paths
    return _export_parquet(directory, run_cols, run_rows, _CURVE_COLUMNS, runs)


def _run_summary(r) -> dict:
    row = {c: getattr(r, c) for c in _RUN_FIELDS_CSV}
    row.update({c: r.config.get(c) for c in _CONFIG_FIELDS_CSV if c != "steps"})
    return row


def _curve_rows(runs: Sequence):
    for r in runs:
        preds = [r.pred_discrete, r.pred_discrete_inf, r.pred_ode]
        for k, loss in enumerate(r.losses):
            yield {
                "step": k,
                "run_id": r.id,
                "loss": float(loss),
                "pred_discrete": None if preds[0] is None else float(preds[0][k]),
                "pred_discrete_inf": None if preds[1] is None else float(preds[1][k]),
                "pred_ode": None if preds[2] is None else float(preds[2][k]),
            }


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # round-trips float64 exactly
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])


def _export_parquet(directory: Path, run_cols, run_rows, curve_cols, runs) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    runs_table = pa.Table.from_pylist([{c: r[c] for c in run_cols} for r in run_rows])
    curves = list(_curve_rows(runs))
    curves_table = pa.Table.from_pylist(curves) if curves else pa.table({c: [] for c in curve_cols})
    paths = [directory / "runs.parquet", directory / "curves.parquet"]
    for table, path in zip((runs_table, curves_table), paths, strict=True):
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    return paths
