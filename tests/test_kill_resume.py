"""Never lose a run: ``ntkdyn sweep`` killed (SIGKILL) or interrupted (SIGINT, exit 130) at
seeded random points of its run, then ``--resume``d, stores every run exactly once with the
curves of an uninterrupted sweep (docs/design.md; docs/guide.md on --resume).

The points are drawn from a fixed-seed RNG over the reference sweep's run time, counted from
the moment the store appears. One point per signal runs by default; the rest are slow.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from ntkdyn.experiments.config import load_config
from ntkdyn.experiments.runs import expand_runs
from ntkdyn.experiments.store import STORE_NAME, Store
from ntkdyn.experiments.sweep import run_sweep

#: A run retrained after a resume is the same computation up to BLAS reduction order.
SAME_RUN_RTOL = 1e-10
CURVES = ("losses", "pred_discrete", "pred_discrete_inf", "pred_ode")

CONFIG = """
name = "never-lose"
[defaults]
data = "gaussian:d=5"
n = 10
steps = 1000
widths = [64, 128]
seeds = [0, 1]
"""
for _i in range(4):  # four data sets, two families each: eight batches of four runs
    CONFIG += f"""
[[experiment]]
id = "N{_i}"
data_seed = {_i}
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=0.6"]
"""
RUNS = 32

#: Fractions of the sweep's run time at which the signal is sent (fixed seed).
_FRACTIONS = np.random.default_rng(20261129).uniform(0.0, 1.0, size=12)
POINTS = [("SIGKILL", f) for f in _FRACTIONS[:6]] + [("SIGINT", f) for f in _FRACTIONS[6:]]
#: Safety nets only (a hung child must not hang the suite); nothing is asserted on time.
START_WAIT_S = 180
EXIT_WAIT_S = 300


def _param(i: int, sig: str, fraction: float):
    fast = i in (0, 6)  # the first point of each signal runs in the default suite
    return pytest.param(
        sig, fraction, id=f"{sig}-{fraction:.2f}", marks=() if fast else pytest.mark.slow
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, single_thread):
    """The uninterrupted sweep: (config path, run time in s, runs by id). One torch thread in
    this process: the children train alongside it on a small machine."""
    root = tmp_path_factory.mktemp("never-lose")
    cfg = root / "config.toml"
    cfg.write_text(CONFIG)
    result = run_sweep(cfg, root / "reference", progress=False)
    assert (result.trained, result.batches) == (RUNS, 8)
    with Store(root / "reference", readonly=True) as s:
        runs = {r.id: r for r in s.load_runs()}
    return cfg, result.elapsed, runs


def _finished(out):
    if not (out / STORE_NAME).exists():
        return {}
    with Store(out, readonly=True) as s:
        return s.finished_times()


def interrupt(cfg, out, sig: str, delay: float, log_path) -> tuple[int, bool]:
    """Start ``ntkdyn sweep``, wait for its store, sleep ``delay`` s, send ``sig`` if it is
    still running; return (exit code, whether the signal was sent)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ntkdyn.cli", "sweep", str(cfg), "--out", str(out)]
            + ["--no-report"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_WAIT_S
            while not (out / STORE_NAME).exists() and proc.poll() is None:
                assert time.monotonic() < deadline, "the sweep never created its store"
                time.sleep(0.01)
            time.sleep(delay)
            sent = proc.poll() is None
            if sent:
                proc.send_signal(getattr(signal, sig))
            proc.wait(timeout=EXIT_WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, sent


def check_resumed(cfg, out, ref_runs, survived: dict) -> None:
    """``--resume`` completes the store: every run once, survivors untouched, reference curves."""
    result = run_sweep(cfg, out, resume=True, progress=False)
    assert (result.skipped, result.trained) == (len(survived), RUNS - len(survived))
    expected = {r.id for r in expand_runs(load_config(cfg))}
    con = sqlite3.connect(out / STORE_NAME)
    try:
        ids = [row[0] for row in con.execute("SELECT id FROM runs")]
    finally:
        con.close()
    assert sorted(ids) == sorted(expected) == sorted(ref_runs)  # every run exactly once
    with Store(out, readonly=True) as s:
        stamps = s.finished_times()
        resumed = {r.id: r for r in s.load_runs()}
    assert {i: stamps[i] for i in survived} == survived  # finished runs were not retrained
    for i, ref in ref_runs.items():
        for name in CURVES:
            np.testing.assert_allclose(
                getattr(resumed[i], name),
                getattr(ref, name),
                rtol=SAME_RUN_RTOL,
                atol=0,
                err_msg=f"{i} {name}",
            )


@pytest.mark.parametrize("sig,fraction", [_param(i, *p) for i, p in enumerate(POINTS)])
def test_a_signalled_sweep_resumes_to_the_uninterrupted_curves(reference, tmp_path, sig, fraction):
    cfg, elapsed, ref_runs = reference
    out = tmp_path / "out"
    code, sent = interrupt(cfg, out, sig, fraction * elapsed, tmp_path / "log.txt")
    log = (tmp_path / "log.txt").read_text()
    assert "Traceback" not in log, log
    if not sent:  # it finished first: nothing to resume, and it said so normally
        assert code == 0, log
    elif sig == "SIGKILL":
        assert code == -signal.SIGKILL
    else:
        assert code == 130, log
        assert log.strip().splitlines()[-1] == "ntkdyn: interrupted", log
    survived = _finished(out)
    assert len(survived) % 4 == 0  # whole batches, never part of one
    check_resumed(cfg, out, ref_runs, survived)


def test_the_resume_check_can_fail(reference, tmp_path):
    """A complete store passes; a missing run or a different curve is caught."""
    import shutil

    cfg, _, ref_runs = reference
    out = tmp_path / "copy"
    shutil.copytree(cfg.parent / "reference", out)
    check_resumed(cfg, out, ref_runs, _finished(out))  # nothing to train: passes
    first, second = sorted(ref_runs)[:2]
    with pytest.raises(AssertionError):  # a run the store lacks
        check_resumed(cfg, out, {**ref_runs, "missing": ref_runs[first]}, _finished(out))
    with pytest.raises(AssertionError):  # another run's curves
        check_resumed(cfg, out, {**ref_runs, first: ref_runs[second]}, _finished(out))
