"""``ntkdyn doctor DIR``, and the row checksums it relies on: every column of a run is covered,
a healthy store exits 0, a damaged one is salvaged (docs/design.md, "The results store")."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ntkdyn.cli import main
from ntkdyn.experiments.doctor import diagnose, doctor
from ntkdyn.experiments.records import RUN_COLUMNS, KernelRecord, row_checksum
from ntkdyn.experiments.store import STORE_NAME, Store, StoreDamaged
from test_store import record


@pytest.fixture()
def store_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with Store(out / STORE_NAME) as s:
        s.set_meta({"config": '{"name": "t"}', "created": "now"})
        s.write_batch([record("a"), record("b", seed=1), record("c", seed=2, preds=False)])
    return out


def _sql(out, statement, *args):
    con = sqlite3.connect(out / STORE_NAME)
    with con:
        con.execute(statement, args)
    con.close()


@pytest.mark.parametrize("column", RUN_COLUMNS)
def test_every_column_of_a_run_is_covered_by_its_checksum(column, store_dir):
    with Store(store_dir, readonly=True) as s:
        assert len(s.load_runs()) == 3  # passes before the change
    value = {"steps": 5, "losses": b"\0" * 8, "finished": "x", "config": "{}"}.get(column, "x")
    _sql(store_dir, f"UPDATE runs SET {column} = ? WHERE id = 'b'", value)
    name = "x" if column == "id" else "b"  # a changed id is named as read
    with Store(store_dir, readonly=True) as s:
        with pytest.raises(StoreDamaged, match=f"runs '{name}' fail their checksum") as err:
            s.load_runs()
        assert err.value.ids == (name,)
        with pytest.raises(StoreDamaged):
            s.finished_ids()  # a resume never counts a damaged run as finished


def test_a_swapped_id_and_a_damaged_meta_or_kernel_row_are_named(store_dir):
    _sql(store_dir, "UPDATE runs SET id = 'z' WHERE id = 'c'")
    with Store(store_dir, readonly=True) as s, pytest.raises(StoreDamaged, match="runs 'z'"):
        s.load_runs()
    _sql(store_dir, "UPDATE meta SET value = 'x' WHERE key = 'created'")
    with Store(store_dir, readonly=True) as s, pytest.raises(StoreDamaged, match="'created'"):
        s.meta()


def test_nan_and_integral_values_round_trip_without_false_damage(tmp_path):
    r = record("a")
    object.__setattr__(r, "lambda_min_k", float("nan"))  # SQLite stores NaN as NULL
    object.__setattr__(r, "h0", 1)  # an int in a REAL column comes back as 1.0
    with Store(tmp_path / STORE_NAME) as s:
        s.write_batch([r])
        (got,) = s.load_runs()
    assert got.lambda_min_k is None and got.h0 == 1.0
    row = ("a", None, 1.0, b"\x00", "t")
    assert row_checksum("runs", row) != row_checksum("runs", ("a", None, 1, b"\x00", "t"))


def test_a_healthy_store_exits_0_and_writes_nothing(store_dir, capsys):
    assert main(["doctor", str(store_dir)]) == 0
    assert capsys.readouterr().out.startswith("healthy: 3 runs intact")
    assert not (store_dir / "salvaged").exists()


def test_a_damaged_store_is_salvaged(store_dir, tmp_path, capsys):
    _sql(store_dir, "UPDATE runs SET losses = ? WHERE id = 'b'", b"\1" * 40)
    new = tmp_path / "new"
    assert main(["doctor", str(store_dir), "--to", str(new)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "run 'b': fails its checksum"
    assert lines[-2] == "intact: 2 runs 'a', 'c'"
    assert lines[-1].startswith("damaged: salvaged 2 of 3 runs (damaged or lost: 'b'), 0 kernels")
    with Store(new, readonly=True) as s:
        assert [r.id for r in s.load_runs()] == ["a", "c"]
        assert s.meta() == {"config": '{"name": "t"}', "created": "now", "schema_version": "3"}
        a = s.load_runs()[0]
    assert a.losses.tobytes() == record("a").losses.tobytes()
    # the target now holds a store: a second salvage there is refused, nothing written
    assert main(["doctor", str(store_dir), "--to", str(new)]) == 2
    assert "already holds a results.sqlite" in capsys.readouterr().err


def test_a_run_lost_from_the_table_is_counted(store_dir):
    _sql(store_dir, "DELETE FROM runs WHERE id = 'c'")
    d = diagnose(store_dir)
    assert not d.healthy and [r.id for r in d.runs] == ["a", "b"] and d.recorded == 3
    assert d.problems == ["the store recorded 3 runs; 2 are intact"]
    healthy = diagnose(store_dir.parent / "missing")
    assert not healthy.healthy and "does not exist" in healthy.problems[0]


def test_doctor_of_a_directory_without_a_store_is_one_line(tmp_path, capsys):
    assert main(["doctor", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no results.sqlite" in err[0]


def test_kernels_survive_the_salvage(tmp_path):
    with Store(tmp_path / STORE_NAME) as s:
        ev = np.array([0.1, 0.2])
        s.write_kernels([KernelRecord("k", "gaussian:d=5", 2, 0, "theory", 0.1, 0.2, ev)])
        s.write_batch([record("a")])
    _sql(tmp_path, "UPDATE runs SET status = 'diverged'")
    lines, healthy = doctor(tmp_path)
    assert not healthy and lines[-1].startswith("damaged: salvaged 0 of 1 runs")
    with Store(tmp_path / "salvaged", readonly=True) as s:
        assert s.kernels()["k"].eigenvalues.tobytes() == ev.tobytes()
