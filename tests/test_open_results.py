"""Results as data: ``open_results(DIR)`` (one column per hyperparameter, curves in long form),
its CSV export and read-back, read-only reading, and the refusals (a missing or foreign
``path``, a damaged row, pandas missing)."""

from __future__ import annotations

import csv
import math
import os
import shutil
import stat
import sys

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from ntkdyn.cli import main
from ntkdyn.experiments import Results, open_results, read_results_csv
from ntkdyn.experiments._lock import out_dir_lock
from ntkdyn.experiments.records import RunRecord
from ntkdyn.experiments.store import STORE_NAME, Store, StoreDamaged
from ntkdyn.experiments.sweep import run_sweep
from ntkdyn.optim import parse

#: Six runs, one of every kind of parameter column, and one that diverges (lr far past
#: 2 / lambda_max). About 3 s on one core.
CONFIG = """
name = "results"
[[experiment]]
id = "R"
mode = "theory"
data = "gaussian:d=5"
n = 8
widths = [32]
seeds = [0]
steps = 100
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=critical", "nesterov:lr=0.5,r=3",
              "hom:lr=0.3,b1=0.5,b2=0.1", "adam:lr=0.01", "gd:lr=30"]
"""
#: The documented columns of ``Results.runs`` and ``runs.csv``, in order.
COLUMNS = [
    "run_id", "experiment", "optimizer", "family",
    "lr", "beta", "r", "b1", "b2", "beta1", "beta2", "eps", "alpha", "momentum",
    "width", "seed", "mode", "depth", "data", "n", "data_seed", "loss", "dtype", "device", "steps",
    "predict", "diagnostics_every",
    "status", "diverged_at", "initial_loss", "final_loss",
    "rate_kind", "rate_factor", "rate_exponent", "steps_to_1e3_drop", "steps_to_1e6_drop",
    "lambda_min_k", "lambda_max_k", "h0", "h_max", "elapsed", "finished", "spec",
]  # fmt: skip
HYPERPARAMETERS = ["lr", "beta", "r", "b1", "b2", "beta1", "beta2", "eps", "alpha", "momentum"]
#: fit_rate regresses log L on log k while (1 + k)^-2 is a power of 1 + k: on the fit's tail
#: (k >= steps / 4 = 75) the two logs differ by at most 1/75, which biases p by about 1%.
POWER_EXPONENT_TOL = 0.02
#: An exactly geometric curve: log E is a line, so least squares recovers q up to rounding
#: of a few hundred logs (about 1e-14 relative).
FACTOR_TOL = 1e-12


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The six-run sweep: (results dir, stored records by id)."""
    root = tmp_path_factory.mktemp("results")
    cfg = root / "results.toml"
    cfg.write_text(CONFIG)
    out = root / "out"
    result = run_sweep(cfg, out, progress=False)
    assert (result.total, result.diverged) == (6, 1)
    with Store(out, readonly=True) as s:
        records = {r.id: r for r in s.load_runs()}
    return out, records


def _by_id(frame):
    return {row.run_id: row for row in frame.itertuples(index=False)}


def _missing(value) -> bool:
    return value is pd.NA or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------
# The runs table against the stored runs.


def test_one_typed_column_per_hyperparameter(swept):
    out, records = swept
    res = open_results(out)
    runs = res.runs
    assert isinstance(res, Results) and len(res) == 6
    assert list(runs.columns) == COLUMNS
    assert sorted(runs.run_id) == sorted(records)
    for name in HYPERPARAMETERS + ["initial_loss", "final_loss", "rate_factor", "h0", "h_max"]:
        assert runs[name].dtype == np.float64, name
    for name in ["width", "seed", "n", "steps", "diverged_at", "steps_to_1e3_drop"]:
        assert runs[name].dtype == "Int64", name
    for name in ["run_id", "optimizer", "family", "status", "rate_kind", "data"]:
        assert runs[name].dtype == "string", name
    assert runs.predict.dtype == "boolean"
    # every cell of a parameter column is a number or NaN: nothing is left to parse
    assert not runs[HYPERPARAMETERS].map(lambda v: isinstance(v, str)).any().any()


def test_values_are_the_stored_ones(swept):
    out, records = swept
    rows = _by_id(open_results(out).runs)
    for rid, rec in records.items():
        row, rule = rows[rid], parse(rec.config["optimizer"])
        assert (row.optimizer, row.family) == (rule.name, rule.family.value)
        assert row.lr == rule.lr
        for p in HYPERPARAMETERS[1:]:
            value = getattr(row, p)
            assert value == getattr(rule, p) if p in rule.params else math.isnan(value), (rid, p)
        assert parse(row.spec) == rule
        for key in ["width", "seed", "mode", "data", "n", "data_seed", "loss", "dtype", "steps"]:
            assert getattr(row, key) == rec.config[key], key
        assert (row.experiment, row.status, row.finished) == ("R", rec.status, rec.finished)
        assert row.initial_loss == rec.losses[0]
        assert row.lambda_min_k == rec.lambda_min_k and row.lambda_max_k == rec.lambda_max_k
        if rule.is_linear:
            assert row.h0 == rec.h0 == rule.lr * rec.lambda_min_k
            assert row.h_max == rule.lr * rec.lambda_max_k
        else:
            assert math.isnan(row.h0) and math.isnan(row.h_max)
        if rec.status == "ok":
            assert row.final_loss == rec.final_loss == rec.losses[-1]
            assert _missing(row.diverged_at) and row.rate_kind != "diverged"
        else:
            assert math.isnan(row.final_loss) and row.diverged_at == rec.diverged_at
            assert row.rate_kind == "diverged" and math.isnan(row.rate_factor)
    by_rule = {(r.optimizer, r.lr): r for r in rows.values()}
    hom, adam = by_rule[("hom", 0.3)], by_rule[("adam", 0.01)]
    assert (hom.b1, hom.b2) == (0.5, 0.1) and math.isnan(hom.beta)
    assert (adam.beta1, adam.beta2, adam.eps) == (0.9, 0.999, 1e-8) and math.isnan(adam.b1)
    assert by_rule[("nesterov", 0.5)].r == 3.0
    assert by_rule[("gd", 30.0)].status == "diverged"


def test_steps_to_a_drop_follow_the_curve(swept):
    out, records = swept
    rows = _by_id(open_results(out).runs)
    reached = 0
    for rid, rec in records.items():
        for column, drop in (("steps_to_1e3_drop", 1e3), ("steps_to_1e6_drop", 1e6)):
            expected = None
            for k, loss in enumerate(rec.losses):  # by hand: the first k with L_k <= L_0 / drop
                if loss <= rec.losses[0] / drop:
                    expected = k
                    break
            got = getattr(rows[rid], column)
            if expected is None:
                assert _missing(got), (rid, column)
            else:
                reached += 1
                assert got == expected and rec.losses[got - 1] > rec.losses[0] / drop
    assert 0 < reached < 2 * len(records)  # both outcomes occur


def _synthetic(rid, losses, *, status="ok", optimizer="gd:lr=0.1"):
    losses = np.asarray(losses, dtype=np.float64)
    return RunRecord(
        id=rid,
        experiment="S",
        config={"width": 8, "seed": 0, "optimizer": optimizer, "steps": losses.size - 1},
        status=status,
        diverged_at=4 if status == "diverged" else None,
        steps=losses.size - 1,
        final_loss=float(losses[-1]) if status == "ok" else None,
        losses=losses,
        finished="t",
    )


def test_fitted_rates_and_drops_of_known_curves(tmp_path):
    k = np.arange(301.0)
    runs = [
        _synthetic("geometric", 0.9**k),
        _synthetic("power", (1.0 + k) ** -2.0, optimizer="hb:lr=0.1,beta=0.5"),
        _synthetic("exact", [1.0, 0.5, 1e-3, 1e-6, 2e-3]),  # equality counts
        _synthetic("stalls", [2.0, 1.0, 0.01, 0.005, 0.004]),  # never 1e-3 L_0
        _synthetic("diverged", [1.0, 1e-4, 10.0, math.inf, math.nan], status="diverged"),
    ]
    with Store(tmp_path) as s:
        s.write_batch(runs)
    rows = _by_id(open_results(tmp_path).runs)
    geo, power = rows["geometric"], rows["power"]
    assert geo.rate_kind == "linear" and abs(geo.rate_factor - 0.9) < FACTOR_TOL
    assert math.isnan(geo.rate_exponent)
    assert power.rate_kind == "sublinear" and abs(power.rate_exponent - 2.0) < POWER_EXPONENT_TOL
    assert math.isnan(power.rate_factor) and power.beta == 0.5
    assert (geo.steps_to_1e3_drop, geo.steps_to_1e6_drop) == (66, 132)  # 0.9^k <= 1e-3, 1e-6
    assert (rows["exact"].steps_to_1e3_drop, rows["exact"].steps_to_1e6_drop) == (2, 3)
    assert rows["stalls"].steps_to_1e3_drop is pd.NA
    # a diverged run: its steps before divergence count, no fit, no final loss
    d = rows["diverged"]
    assert (d.steps_to_1e3_drop, d.rate_kind, d.diverged_at) == (1, "diverged", 4)
    assert d.steps_to_1e6_drop is pd.NA and math.isnan(d.final_loss)
    # partial configs (no data, dtype, ...) give missing cells, not errors
    assert d.data is pd.NA and d.n is pd.NA
    # the curves keep inf and nan, and round-trip through CSV exactly
    res = open_results(tmp_path)
    res.to_csv(tmp_path / "csv")
    runs_back, curves_back = read_results_csv(tmp_path / "csv")
    assert_frame_equal(runs_back, res.runs, check_exact=True)
    assert_frame_equal(curves_back, res.curves, check_exact=True)
    tail = res.curves[res.curves.run_id == "diverged"].loss.to_numpy()
    assert np.isinf(tail[3]) and np.isnan(tail[4])


def test_curves_are_the_stored_curves_in_long_form(swept):
    out, records = swept
    curves = open_results(out).curves
    assert list(curves.columns) == [
        "step", "run_id", "loss", "pred_discrete", "pred_discrete_inf", "pred_ode",
    ]  # fmt: skip
    assert len(curves) == sum(r.losses.size for r in records.values())
    for rid, rec in records.items():
        mine = curves[curves.run_id == rid]
        assert mine.step.tolist() == list(range(rec.steps + 1))
        assert mine.loss.to_numpy().tobytes() == rec.losses.tobytes()
        for name in ["pred_discrete", "pred_discrete_inf", "pred_ode"]:
            stored = getattr(rec, name)
            got = mine[name].to_numpy()
            assert np.isnan(got).all() if stored is None else got.tobytes() == stored.tobytes()


# --------------------------------------------------------------------------------------------
# CSV: the export and the DataFrame are one table.


def test_export_csv_is_the_dataframe(swept, tmp_path, capsys):
    out, records = swept
    res = open_results(out)
    assert main(["export", str(out), "--to", str(tmp_path / "cli")]) == 0
    capsys.readouterr()
    res.to_csv(tmp_path / "api")
    for name in ("runs.csv", "curves.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()
    with (tmp_path / "cli" / "runs.csv").open(newline="") as fh:
        reader = csv.reader(fh)
        assert next(reader) == COLUMNS
        cells = list(reader)
    assert len(cells) == len(records)
    for row in cells:  # parameters are plain numbers (or empty): no spec string to parse
        for p in HYPERPARAMETERS:
            value = row[COLUMNS.index(p)]
            assert value == "" or math.isfinite(float(value))
    runs_back, curves_back = read_results_csv(tmp_path / "cli")
    assert_frame_equal(runs_back, res.runs, check_exact=True)
    assert_frame_equal(curves_back, res.curves, check_exact=True)


def test_export_needs_no_pandas_and_the_dataframes_say_what_to_install(
    swept, tmp_path, monkeypatch, capsys
):
    out, _ = swept
    with_pandas = open_results(out)
    with_pandas.to_csv(tmp_path / "before")
    ids = list(with_pandas.runs.run_id)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    assert main(["export", str(out), "--to", str(tmp_path / "after")]) == 0
    capsys.readouterr()
    for name in ("runs.csv", "curves.csv"):
        assert (tmp_path / "after" / name).read_bytes() == (tmp_path / "before" / name).read_bytes()
    res = open_results(out)  # reading and the plain rows need no pandas either
    assert [row["run_id"] for row in res.rows] == ids
    for view in ("runs", "curves"):
        with pytest.raises(ImportError, match=r"needs pandas.*pip install 'ntkdyn\[results\]'"):
            getattr(res, view)
    with pytest.raises(ImportError, match="ntkdyn"):
        read_results_csv(tmp_path / "after")


def test_read_results_csv_refuses_a_foreign_file(tmp_path):
    with pytest.raises(ValueError, match="`directory`.*holds no runs.csv"):
        read_results_csv(tmp_path)
    (tmp_path / "runs.csv").write_text("id,x\na,1\n")
    (tmp_path / "curves.csv").write_text("step,run_id,loss\n")
    with pytest.raises(ValueError, match="`directory`.*not those of an ntkdyn export"):
        read_results_csv(tmp_path)


def test_an_empty_store_gives_empty_tables(tmp_path):
    Store(tmp_path).close()
    res = open_results(tmp_path)
    assert len(res) == 0 and list(res.runs.columns) == COLUMNS and res.runs.empty
    assert res.curves.empty and res.runs.lr.dtype == np.float64
    res.to_csv(tmp_path / "csv")
    assert (tmp_path / "csv" / "runs.csv").read_text().strip() == ",".join(COLUMNS)
    with pytest.raises(ValueError, match="`directory` .* is not a directory"):
        res.to_csv(tmp_path / STORE_NAME)


# --------------------------------------------------------------------------------------------
# Read-only: no lock, nothing written.


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_a_read_only_store_is_read_and_nothing_is_written(swept, tmp_path, monkeypatch):
    out, _ = swept
    expected = open_results(out).runs
    copy = shutil.copytree(out, tmp_path / "ro")
    before = _files(copy)
    os.chmod(copy / STORE_NAME, stat.S_IRUSR)
    os.chmod(copy, stat.S_IRUSR | stat.S_IXUSR)
    simulated = os.access(copy, os.W_OK)  # root: chmod does not bind, the check is told so
    try:
        if simulated:
            real = os.access
            monkeypatch.setattr(
                os, "access", lambda p, mode, **kw: False if mode & os.W_OK else real(p, mode)
            )
        assert_frame_equal(open_results(copy).runs, expected, check_exact=True)
    finally:
        monkeypatch.undo()
        os.chmod(copy, stat.S_IRWXU)
        os.chmod(copy / STORE_NAME, stat.S_IRUSR | stat.S_IWUSR)
    after = _files(copy)
    if simulated:
        # As root the OS still lets SQLite's read-only connection create its shared-memory
        # index and an empty WAL next to the file, which a real read-only directory forbids
        # (there the store reads the file as immutable); not a page is written.
        extra = set(after) - set(before)
        assert extra <= {f"{STORE_NAME}-shm", f"{STORE_NAME}-wal"}
        assert after.get(f"{STORE_NAME}-wal", b"") == b""
        after = {name: data for name, data in after.items() if name not in extra}
    assert after == before  # same names, same bytes


def test_reading_never_takes_the_sweep_lock(swept, tmp_path):
    out, _ = swept
    copy = shutil.copytree(out, tmp_path / "locked")
    with out_dir_lock(copy):  # a sweep holds the directory
        before = _files(copy)
        assert len(open_results(copy).runs) == 6
        assert _files(copy) == before
        with pytest.raises(ValueError, match="in use by another sweep"):  # the lock is real
            with out_dir_lock(copy):
                pass


# --------------------------------------------------------------------------------------------
# Refusals.


def test_a_missing_or_foreign_path_is_one_line_naming_path(tmp_path):
    not_sqlite = tmp_path / "garbage"
    not_sqlite.mkdir()
    (not_sqlite / STORE_NAME).write_bytes(b"not a database" * 100)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path, match in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path, "holds no results.sqlite"),
        (not_sqlite, "is not a readable results store"),
        (text, "is not a readable results store"),
    ):
        with pytest.raises(ValueError, match="^`path` ") as err:
            open_results(path)
        assert match in str(err.value) and "\n" not in str(err.value)


def _flip_inside(path, chunk):
    data = bytearray(path.read_bytes())
    at = data.find(chunk)
    assert at > 0 and data.find(chunk, at + 1) == -1
    for i in range(at, at + len(chunk)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_row_refuses_the_store_naming_the_run(swept, tmp_path, capsys):
    """Policy: never a silently thinner table. The damaged run is named with the remedy;
    ``ntkdyn doctor`` salvages the intact runs, which then open."""
    out, records = swept
    victim = sorted(r for r in records if records[r].status == "ok")[0]
    copy = shutil.copytree(out, tmp_path / "damaged")
    _flip_inside(copy / STORE_NAME, records[victim].losses.tobytes()[400:464])
    with pytest.raises(StoreDamaged) as err:
        open_results(copy)
    assert err.value.ids == (victim,)
    assert victim in str(err.value) and f"ntkdyn doctor {copy}" in str(err.value)
    assert main(["export", str(copy), "--to", str(tmp_path / "x")]) == 2
    assert main(["doctor", str(copy)]) == 2
    capsys.readouterr()
    salvaged = open_results(copy / "salvaged").runs
    assert sorted(salvaged.run_id) == sorted(set(records) - {victim})
