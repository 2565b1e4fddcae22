"""One writer per results directory, and nothing deleted without being asked: a second sweep
into a directory in use is refused with the holder's pid; finished runs are kept (--resume)
or deleted (--fresh) only on request (docs/design.md, "Reliability rules")."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from ntkdyn.experiments._lock import out_dir_lock
from ntkdyn.experiments.store import STORE_NAME, Store
from ntkdyn.experiments.sweep import run_sweep

CONFIG = """
name = "writer"
[[experiment]]
id = "W"
data = "gaussian:d=5"
n = 10
widths = [32, 64]
seeds = [0, 1]
steps = 200
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=0.6"]
"""
RUNS = 8


@pytest.fixture()
def finished(tmp_path):
    """A results directory holding the finished sweep, and its finish stamps."""
    out = tmp_path / "out"
    run_sweep(CONFIG, out, progress=False)
    with Store(out, readonly=True) as s:
        return out, s.finished_times()


def _stamps(out):
    with Store(out, readonly=True) as s:
        return s.finished_times()


def test_finished_runs_are_never_deleted_without_a_flag(finished):
    out, stamps = finished
    with pytest.raises(ValueError, match=r"holds 8 finished runs .* --resume .* --fresh"):
        run_sweep(CONFIG, out, progress=False)
    assert _stamps(out) == stamps


def test_fresh_deletes_and_says_how_many_resume_keeps(finished):
    out, stamps = finished
    kept = run_sweep(CONFIG, out, resume=True, progress=False)
    assert (kept.skipped, kept.trained, kept.deleted) == (RUNS, 0, 0)
    assert _stamps(out) == stamps
    again = run_sweep(CONFIG, out, fresh=True, progress=False)
    assert (again.deleted, again.trained) == (RUNS, RUNS)
    assert all(t > max(stamps.values()) for t in _stamps(out).values())
    with pytest.raises(ValueError, match="`--resume` and `--fresh` exclude each other"):
        run_sweep(CONFIG, out, resume=True, fresh=True, progress=False)


def test_a_directory_in_use_is_refused_with_its_holder(finished):
    out, stamps = finished
    with out_dir_lock(out):  # another writer holds it (flock: per open file, so in-process too)
        text = (out / ".ntkdyn-lock").read_text()
        assert text.startswith("pid ")
        for kwargs in ({"resume": True}, {"fresh": True}):
            with pytest.raises(ValueError, match=r"is in use by another sweep \(pid \d+"):
                run_sweep(CONFIG, out, progress=False, **kwargs)
    assert _stamps(out) == stamps  # nothing deleted, nothing rewritten
    assert run_sweep(CONFIG, out, resume=True, progress=False).skipped == RUNS  # released


def test_two_processes_racing_for_one_directory(tmp_path):
    """Exactly one sweep runs; the other exits 2 (directory in use, or already finished runs
    it was not told to keep); the store holds every run once."""
    cfg = tmp_path / "w.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "race"
    cmd = [sys.executable, "-m", "ntkdyn.cli", "sweep", str(cfg), "--out", str(out), "--no-report"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"]
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    results = [(p.returncode, err) for p, err in zip(procs, errs, strict=True)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another sweep" in loser or "finished runs" in loser
    con = sqlite3.connect(out / STORE_NAME)
    ids = [row[0] for row in con.execute("SELECT id FROM runs")]
    con.close()
    assert len(ids) == len(set(ids)) == RUNS
