"""A damaged results store is never read as numbers: every page of a small store flipped in
turn gives either the original export or one line and exit 2; corrupted, read-only and full
stores give one line each (docs/design.md, "The results store")."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat

import pytest

from ntkdyn.cli import main
from ntkdyn.experiments.records import RUN_COLUMNS
from ntkdyn.experiments.store import STORE_NAME, Store, StoreDamaged, StoreError
from ntkdyn.experiments.sweep import run_sweep
from ntkdyn.report.build import analyze_store

CONFIG = """
name = "damage"
[[experiment]]
id = "D"
mode = "theory"
data = "gaussian:d=5"
n = 8
widths = [16]
seeds = [0, 1]
steps = 300
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=0.6"]
"""
PAGE = 4096


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 4-run sweep: (config path, results dir, its export as bytes, runs by id)."""
    root = tmp_path_factory.mktemp("damage")
    cfg = root / "damage.toml"
    cfg.write_text(CONFIG)
    out = root / "out"
    run_sweep(cfg, out, progress=False)
    with Store(out, readonly=True) as s:
        runs = {r.id: r for r in s.load_runs()}
    assert len(runs) == 4
    return cfg, out, _export(out, root / "export")[1], runs


def _export(out, to):
    code = main(["export", str(out), "--to", str(to)])
    files = {p.name: p.read_bytes() for p in sorted(to.glob("*.csv"))} if code == 0 else None
    return code, files


def _flip(path, offset, count=16):
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _copy(out, dest):
    shutil.copytree(out, dest)
    return dest


def _one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ntkdyn: error: "), err
    return err[0]


def same_run(a, b) -> bool:
    for name in RUN_COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        if hasattr(x, "tobytes") or hasattr(y, "tobytes"):
            if x is None or y is None or x.tobytes() != y.tobytes():
                return x is None and y is None
        elif name == "diagnostics":
            continue  # arrays in a dict: compared through the row checksum's equality
        elif x != y:
            return False
    return True


# --------------------------------------------------------------------------------------------
# (a) and (c): every page flipped in turn.


@pytest.mark.parametrize("where", [PAGE // 2, PAGE - 40], ids=["middle", "cells"])
def test_every_flipped_page_gives_the_original_numbers_or_one_line(where, swept, tmp_path, capsys):
    """16 bytes flipped in the middle of each page (mostly curves), or near its end, where
    SQLite keeps the cells of small pages (schema, meta, kernels, indexes)."""
    _, out, original, runs = swept
    pages = (out / STORE_NAME).stat().st_size // PAGE
    assert pages >= 10
    outcomes = {"same": 0, "refused": 0}
    for p in range(pages):
        copy = _copy(out, tmp_path / f"p{p}")
        _flip(copy / STORE_NAME, p * PAGE + where)
        capsys.readouterr()
        code, files = _export(copy, tmp_path / f"x{p}")
        if code == 0:
            assert files == original, f"page {p}: different numbers with exit 0"
            outcomes["same"] += 1
        else:
            assert code == 2, f"page {p}"
            _one_line(capsys)
            outcomes["refused"] += 1
        code = main(["doctor", str(copy)])
        capsys.readouterr()
        assert code in (0, 2)
        salvaged = copy / "salvaged"
        if code == 2 and (salvaged / STORE_NAME).exists():
            with Store(salvaged, readonly=True) as s:
                for r in s.load_runs():
                    assert same_run(r, runs[r.id]), f"page {p}: salvaged run {r.id} differs"
    assert outcomes["refused"] > 0  # the flips do reach the data


def _offset_of_run(path, run):
    """A file offset inside ``run``'s loss curve (its bytes are nowhere else)."""
    data = path.read_bytes()
    chunk = run.losses.tobytes()[800:864]
    at = data.find(chunk)
    assert at > 0 and data.find(chunk, at + 1) == -1
    return at


def test_doctor_recovers_every_run_whose_pages_are_intact(swept, tmp_path, capsys):
    _, out, _, runs = swept
    victim = sorted(runs)[1]
    copy = _copy(out, tmp_path / "copy")
    _flip(copy / STORE_NAME, _offset_of_run(copy / STORE_NAME, runs[victim]))
    assert main(["doctor", str(copy), "--to", str(tmp_path / "new")]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"run {victim!r}: fails its checksum"
    assert lines[-1].startswith("damaged: salvaged 3 of 4 runs")
    with Store(tmp_path / "new", readonly=True) as s:
        saved = {r.id: r for r in s.load_runs()}
        assert s.meta()["config"] and len(s.kernels()) == 1
    assert set(saved) == set(runs) - {victim}
    assert all(same_run(r, runs[r.id]) for r in saved.values())
    # the salvaged store is healthy, and a sweep resumes it by training the lost run only
    assert main(["doctor", str(tmp_path / "new")]) == 0
    assert capsys.readouterr().out.startswith("healthy: 3 runs intact")
    result = run_sweep(swept[0], tmp_path / "new", resume=True, progress=False)
    assert (result.skipped, result.trained) == (3, 1)
    assert main(["doctor", str(out)]) == 0  # the original is untouched


# --------------------------------------------------------------------------------------------
# (b): report, export and sweep --resume on a damaged or corrupted store.


def _damaged(kind, out, runs, tmp_path):
    copy = _copy(out, tmp_path / kind)
    path = copy / STORE_NAME
    if kind == "checksum":  # a flip inside one run's curve: SQLite cannot see it
        _flip(path, _offset_of_run(path, runs[sorted(runs)[0]]))
    else:  # garbage over the runs table's root page: SQLite's b-tree is broken
        con = sqlite3.connect(path)
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()
        con.close()
        data = bytearray(path.read_bytes())
        data[(root - 1) * PAGE : root * PAGE] = bytes(range(256)) * (PAGE // 256)
        path.write_bytes(bytes(data))
    return copy


@pytest.mark.parametrize("kind", ["checksum", "malformed"])
def test_commands_on_a_damaged_store_say_one_line(kind, swept, tmp_path, capsys):
    cfg, out, _, runs = swept
    copy = _damaged(kind, out, runs, tmp_path)
    before = sorted(p.name for p in copy.iterdir())
    expected = "is damaged: runs" if kind == "checksum" else "is corrupted (SQLite:"
    for argv in (
        ["report", str(copy)],
        ["export", str(copy)],
        ["sweep", str(cfg), "--out", str(copy), "--resume", "--no-report"],
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        line = _one_line(capsys)
        assert expected in line and f"ntkdyn doctor {copy}" in line, line
    assert sorted(p.name for p in copy.iterdir()) == before  # nothing written
    assert main(["report", str(out)]) == 0  # the same commands pass on the intact store


def test_a_lost_or_foreign_runs_table_and_a_lost_row_are_named(swept, tmp_path):
    _, out, _, runs = swept
    copy = _copy(out, tmp_path / "lost")
    con = sqlite3.connect(copy / STORE_NAME)
    con.execute("DELETE FROM runs WHERE id = ?", (sorted(runs)[0],))  # behind the store's back
    con.commit()
    con.close()
    with Store(copy, readonly=True) as s, pytest.raises(StoreDamaged, match="recorded 4 runs, 3"):
        s.load_runs()
    for sql, match in (
        ("DROP TABLE runs", "has no `runs` table"),
        ("CREATE TABLE runs (x)", "has a foreign `runs` table"),
    ):
        con = sqlite3.connect(copy / STORE_NAME)
        con.execute("DROP TABLE IF EXISTS runs")
        if sql.startswith("CREATE"):
            con.execute(sql)
        con.commit()
        con.close()
        with pytest.raises(StoreError, match=match):
            Store(copy, readonly=True)


def test_another_schema_version_is_refused_with_what_to_do(swept, tmp_path):
    copy = _copy(swept[1], tmp_path / "v2")
    con = sqlite3.connect(copy / STORE_NAME)
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"is '2'; this ntkdyn reads schema_version '3' \(use a"):
        Store(copy, readonly=True)


# --------------------------------------------------------------------------------------------
# (d): read-only file and directory.


def _read_only(path):
    mode = stat.S_IRUSR | stat.S_IXUSR if path.is_dir() else stat.S_IRUSR
    os.chmod(path, mode)
    if os.access(path, os.W_OK):
        pytest.skip("running as root: chmod does not make files read-only")


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_read_only_store_is_read(what, swept, tmp_path, capsys):
    _, out, original, runs = swept
    copy = _copy(out, tmp_path / "ro")
    target = copy / STORE_NAME if what == "file" else copy
    _read_only(target)
    try:
        capsys.readouterr()
        code, files = _export(copy, tmp_path / "export")
        assert (code, files) == (0, original)
        analyses, _, meta, _ = analyze_store(copy)
        assert len(analyses) == 4 and "config" in meta
        if what == "file":  # the report is written next to the store
            assert main(["report", str(copy)]) == 0
        with pytest.raises(StoreError, match="is read-only"):
            with Store(copy / STORE_NAME) as s:
                s.write_batch([runs[sorted(runs)[0]]])
    finally:
        os.chmod(target, stat.S_IRWXU)


# --------------------------------------------------------------------------------------------
# (e): the disk fills up mid-sweep.


def test_a_full_disk_stops_the_sweep_with_the_finished_runs_kept(swept, tmp_path, monkeypatch):
    cfg = swept[0]
    real = Store._write_rows
    calls = []

    def fill_up(self, rows):
        calls.append(len(rows))
        if len(calls) > 1:
            raise sqlite3.OperationalError("database or disk is full")
        real(self, rows)

    monkeypatch.setattr(Store, "_write_rows", fill_up)
    out = tmp_path / "full"
    with pytest.raises(StoreError) as err:
        run_sweep(cfg, out, progress=False)
    kept = calls[0]
    assert str(err.value).startswith(f"stopped: disk full while storing a batch of runs; {kept} ")
    assert str(err.value).endswith("free space and run again with --resume")
    monkeypatch.setattr(Store, "_write_rows", real)
    with Store(out, readonly=True) as s:
        assert len(s.load_runs()) == kept < 4
    assert run_sweep(cfg, out, resume=True, progress=False).trained == 4 - kept
