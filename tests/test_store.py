"""The results store: exact round trips, schema version, WAL, transactions, export."""

from __future__ import annotations

import csv
import sqlite3
import struct

import numpy as np
import pytest

from ntkdyn.experiments.store import (
    BUSY_TIMEOUT_MS,
    SCHEMA_VERSION,
    STORE_NAME,
    KernelRecord,
    RunRecord,
    Store,
    StoreError,
)


def record(rid: str, *, steps: int = 4, status: str = "ok", preds: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    losses = np.cumprod(rng.uniform(0.1, 0.9, steps + 1))
    # values whose decimal forms do not round-trip through 15 digits, plus a subnormal
    losses[1] = 0.1 + 0.2
    losses[2] = 5e-324
    if status == "diverged":
        losses[3:] = np.nan
    return RunRecord(
        id=rid,
        experiment="E1",
        config={
            "width": 64,
            "seed": seed,
            "optimizer": "hb:lr=0.1,beta=0.9",
            "mode": "theory",
            "data": "gaussian:d=5",
            "n": 10,
            "steps": steps,
            "predict": preds,
        },
        status=status,
        diverged_at=3 if status == "diverged" else None,
        steps=steps,
        final_loss=float(losses[-1]) if status == "ok" else None,
        losses=losses,
        diagnostics={"step": np.array([0, steps]), "lambda_min": np.array([0.1, np.nan])},
        pred_discrete=losses * 1.01 if preds else None,
        pred_discrete_inf=losses * 0.99 if preds else None,
        pred_ode=None,
        lambda_min_k=0.0925,
        lambda_max_k=1.13,
        h0=0.00925,
        elapsed=0.5,
        finished="2026-01-01T00:00:00.000001+00:00",
    )


def same_bits(a, b) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and a.dtype == np.float64 and a.tobytes() == b.tobytes()
    )


def test_round_trip_is_bit_exact(tmp_path):
    recs = [record("a"), record("b", status="diverged", seed=1), record("c", preds=False, seed=2)]
    with Store(tmp_path / STORE_NAME) as s:
        s.write_batch(recs)
    with Store(tmp_path, readonly=True) as s:  # a directory resolves to DIR/results.sqlite
        loaded = {r.id: r for r in s.load_runs()}
        assert s.finished_ids() == {"a", "b", "c"}
    for r in recs:
        got = loaded[r.id]
        for name in ("losses", "pred_discrete", "pred_discrete_inf", "pred_ode"):
            assert same_bits(getattr(got, name), getattr(r, name)), name
        assert got.config == r.config and got.width == 64 and got.optimizer.startswith("hb:")
        for name in (
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
        ):
            assert getattr(got, name) == getattr(r, name), name
        np.testing.assert_array_equal(got.diagnostics["step"], [0, r.steps])
        np.testing.assert_array_equal(got.diagnostics["lambda_min"], [0.1, np.nan])
        assert not got.losses.flags.writeable  # records are read-only
    assert loaded["b"].final_loss is None and loaded["b"].diverged_at == 3


def test_curves_are_float64_little_endian_blobs(tmp_path):
    r = record("a")
    with Store(tmp_path / STORE_NAME) as s:
        s.write_batch([r])
    con = sqlite3.connect(tmp_path / STORE_NAME)
    blob, pred_ode = con.execute("SELECT losses, pred_ode FROM runs").fetchone()
    con.close()
    assert len(blob) == 8 * (r.steps + 1) and pred_ode is None
    assert struct.unpack(f"<{r.steps + 1}d", blob) == tuple(r.losses)


def test_schema_version_and_wal(tmp_path):
    path = tmp_path / STORE_NAME
    with Store(path) as s:
        assert s.meta() == {"schema_version": SCHEMA_VERSION}
        assert s.journal_mode() == "wal"
        assert s._conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    con = sqlite3.connect(path)  # WAL mode is a property of the file
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with con:
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    for readonly in (False, True):
        with pytest.raises(ValueError, match=r"`schema_version` of store .* is '1'"):
            Store(path, readonly=readonly)


def test_foreign_files_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(ValueError, match=r"not an ntkdyn store \(no `meta` table\)"):
        Store(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(ValueError, match=r"`store` .* is not an ntkdyn store"):
        Store(junk)
    with pytest.raises(ValueError, match=r"`store` .* does not exist"):
        Store(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_a_batch_is_one_transaction(tmp_path):
    good, bad = record("a"), record("b", seed=1)
    object.__setattr__(bad, "status", None)  # violates NOT NULL: the insert fails mid-batch
    with Store(tmp_path / STORE_NAME) as s:
        with pytest.raises(StoreError, match="NOT NULL constraint failed: runs.status"):
            s.write_batch([good, bad])
        assert s.finished_ids() == set()  # the good record was rolled back with the bad one
        s.write_batch([good])
        assert s.finished_ids() == {"a"}


def test_reader_sees_committed_batches_while_writer_is_open(tmp_path):
    path = tmp_path / STORE_NAME
    with Store(path) as writer:
        writer.write_batch([record("a")])
        with Store(path, readonly=True) as reader:
            assert reader.finished_ids() == {"a"}
            writer.write_batch([record("b", seed=1)])
            assert reader.finished_ids() == {"a", "b"}
            with pytest.raises(sqlite3.OperationalError):  # read-only really is read-only
                reader._conn.execute("DELETE FROM runs")


def test_replace_meta_kernels_and_filters(tmp_path):
    with Store(tmp_path / STORE_NAME) as s:
        s.write_batch([record("a"), record("b", seed=1)])
        s.write_batch([record("a", seed=3)])  # same id: replaced, not duplicated
        assert len(s.load_runs()) == 2 and s.load_runs("E1")[0].seed == 3
        assert s.load_runs("nope") == []
        s.set_meta({"config": "{}", "created": "t"})
        assert s.meta()["config"] == "{}"
        for managed in ("schema_version", "runs_tally"):
            with pytest.raises(ValueError, match=f"`{managed}` is managed by the store"):
                s.set_meta({managed: "9"})
        ev = np.array([0.0447, 0.5, 1.956])
        s.write_kernels([KernelRecord("k", "gaussian:d=5", 3, 0, "theory", 0.0447, 1.956, ev)])
        k = s.kernels()["k"]
        assert (k.n, k.data_seed, k.mode, k.lambda_min) == (3, 0, "theory", 0.0447)
        assert k.eigenvalues.tobytes() == ev.tobytes()
        s.delete_runs()
        assert s.finished_ids() == set()


def test_export_csv_contents(tmp_path):
    recs = [record("a"), record("b", status="diverged", seed=1, steps=6)]
    with Store(tmp_path / STORE_NAME) as s:
        s.write_batch(recs)
        paths = s.export(tmp_path / "export")
    assert [p.name for p in paths] == ["runs.csv", "curves.csv"]
    with paths[0].open() as fh:
        runs = list(csv.DictReader(fh))
    assert [r["run_id"] for r in runs] == ["a", "b"]
    assert runs[0]["status"] == "ok" and runs[1]["status"] == "diverged"
    assert runs[1]["diverged_at"] == "3" and runs[1]["final_loss"] == ""
    assert float(runs[0]["final_loss"]) == recs[0].final_loss
    assert (
        runs[0]["width"] == "64"
        and runs[0]["optimizer"] == "hb"
        and runs[0]["spec"] == "hb:lr=0.1,beta=0.9"
    )
    assert runs[0]["predict"] == "true"
    with paths[1].open() as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header[:3] == ["step", "run_id", "loss"]
    assert len(rows) == (4 + 1) + (6 + 1)  # long format: one row per (run, step)
    for r in recs:
        mine = [row for row in rows if row[1] == r.id]
        assert [int(row[0]) for row in mine] == list(range(r.steps + 1))
        loss = np.array([float(row[2]) for row in mine])
        assert loss.tobytes() == r.losses.tobytes()  # repr() round-trips float64 exactly
        pred = np.array([float(row[3]) for row in mine])
        assert pred.tobytes() == r.pred_discrete.tobytes()
        assert all(row[5] == "" for row in mine)  # pred_ode is NULL
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "export").iterdir())


def test_export_parquet(tmp_path):
    with Store(tmp_path / STORE_NAME) as s:
        s.write_batch([record("a")])
        try:
            import pyarrow.parquet as pq
        except ImportError:
            with pytest.raises(ValueError, match=r"`format` 'parquet' needs the pyarrow package"):
                s.export(tmp_path, format="parquet")
            assert not (tmp_path / "runs.parquet").exists()
            return
        paths = s.export(tmp_path, format="parquet")
    curves = pq.read_table(paths[1]).to_pydict()
    assert curves["loss"] == list(record("a").losses)
    with Store(tmp_path / STORE_NAME) as s, pytest.raises(ValueError, match="`format`"):
        s.export(tmp_path, format="xlsx")
