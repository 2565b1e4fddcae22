"""Sweeps: resume, restart, refusal of a different config, determinism, divergence isolation
within a batch, and a SIGKILLed sweep resumed to the same curves as an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import ntkdyn.training
from ntkdyn.experiments.config import load_config
from ntkdyn.experiments.runs import expand_runs
from ntkdyn.experiments.store import STORE_NAME, Store
from ntkdyn.experiments.sweep import run_sweep

from sweep_cases import TINY

#: A run retrained (resumed, or in another batch) is the same computation; only the order of
#: BLAS reductions may differ with batch size and threads, a few ulps per step.
SAME_RUN_RTOL = 1e-10


# --------------------------------------------------------------------------------------------
# Resume, restart, refusal, determinism.


def test_resume_skips_finished_runs(tiny, monkeypatch):
    cfg, out, _ = tiny
    calls = []
    real_train = ntkdyn.training.train

    def counting_train(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(ntkdyn.training, "train", counting_train)
    with Store(out, readonly=True) as s:
        stamps = s.finished_times()
    result = run_sweep(cfg, out, resume=True, progress=False)
    assert (result.skipped, result.trained, result.batches, calls) == (12, 0, 0, [])
    with Store(out, readonly=True) as s:
        assert s.finished_times() == stamps


def test_partial_resume_recomputes_only_missing_runs_identically(tiny, tmp_path):
    cfg, out, runs = tiny
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    missing = sorted(runs)[:5]
    with Store(copy) as s:  # through the store: a row deleted behind its back is damage
        s.delete_runs(missing)
    with Store(copy, readonly=True) as s:
        stamps = s.finished_times()
    result = run_sweep(cfg, copy, resume=True, progress=False)
    assert (result.skipped, result.trained) == (7, 5)
    with Store(copy, readonly=True) as s:
        after = s.finished_times()
        again = {r.id: r for r in s.load_runs()}
    assert {i: after[i] for i in stamps} == stamps
    for i in missing:
        assert after[i] > max(stamps.values())
        np.testing.assert_allclose(again[i].losses, runs[i].losses, rtol=SAME_RUN_RTOL, atol=0)
        np.testing.assert_allclose(again[i].pred_ode, runs[i].pred_ode, rtol=SAME_RUN_RTOL, atol=0)


def test_a_different_config_is_refused_and_the_same_one_restarts(tiny, tmp_path):
    cfg, out, runs = tiny
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with Store(copy, readonly=True) as s:
        stamps = s.finished_times()
    other = TINY.replace("steps = 200", "steps = 201")
    for resume in (False, True):
        with pytest.raises(
            ValueError,
            match=r"`--out` .* holds 12 finished runs .* that this config does not have \(ids \w{16}, ",
        ):
            run_sweep(other, copy, resume=resume, progress=False)
    with Store(copy, readonly=True) as s:
        assert s.finished_times() == stamps
    # the same config is refused without --resume or --fresh (finished runs are never
    # deleted silently); with --fresh it trains everything again, to the same curves
    with pytest.raises(ValueError, match=r"holds 12 finished runs of this config"):
        run_sweep(cfg, copy, progress=False)
    result = run_sweep(cfg, copy, fresh=True, progress=False)
    assert (result.trained, result.skipped, result.deleted) == (12, 0, 12)
    with Store(copy, readonly=True) as s:
        again = {r.id: r for r in s.load_runs()}
        assert all(t > max(stamps.values()) for t in s.finished_times().values())
    for i in runs:
        np.testing.assert_allclose(again[i].losses, runs[i].losses, rtol=SAME_RUN_RTOL, atol=0)


def test_a_diverging_run_does_not_disturb_its_batch(tmp_path):
    base = {
        "id": "D",
        "data": "gaussian:d=5",
        "n": 10,
        "widths": [64],
        "steps": 100,
        "predict": False,
    }
    both = {"name": "div", "experiment": [dict(base, optimizers=["gd:lr=0.5", "gd:lr=50"])]}
    alone = {"name": "div", "experiment": [dict(base, optimizers=["gd:lr=0.5"])]}
    result = run_sweep(both, tmp_path / "both", progress=False)
    assert (result.trained, result.diverged, result.batches) == (2, 1, 1)
    run_sweep(alone, tmp_path / "alone", progress=False)
    with Store(tmp_path / "both", readonly=True) as s:
        runs = {r.optimizer: r for r in s.load_runs()}
    with Store(tmp_path / "alone", readonly=True) as s:
        (ref,) = s.load_runs()
    bad, good = runs["gd:lr=50.0"], runs["gd:lr=0.5"]
    assert bad.status == "diverged" and bad.final_loss is None and bad.diverged_at >= 1
    assert np.all(np.isnan(bad.losses[bad.diverged_at + 1 :]))
    assert good.status == "ok" and good.id == ref.id  # same run config, same id
    np.testing.assert_allclose(good.losses, ref.losses, rtol=SAME_RUN_RTOL, atol=0)


# --------------------------------------------------------------------------------------------
# SIGKILL and resume.

KILL = """
name = "kill"
[defaults]
data = "gaussian:d=5"
n = 10
steps = 1000
widths = [64, 128]
seeds = [0, 1]
"""
for _i in range(4):  # four experiments on different data, two families each: eight batches of 4
    KILL += f"""
[[experiment]]
id = "K{_i}"
data_seed = {_i}
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=0.6"]
"""
KILL_BATCH = 4
POLL_S = 0.02
KILL_WAIT_S = 180


def _finished_now(out):
    try:
        with Store(out / STORE_NAME, readonly=True) as s:
            return s.finished_times()
    except (ValueError, sqlite3.Error):  # not created yet, or mid-creation
        return {}


def test_sigkill_then_resume_matches_an_uninterrupted_sweep(tmp_path):
    cfg = tmp_path / "kill.toml"
    cfg.write_text(KILL)
    out = tmp_path / "killed"
    log = (tmp_path / "log.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ntkdyn.cli", "sweep", str(cfg), "--out", str(out), "--no-report"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + KILL_WAIT_S
        finished: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / STORE_NAME).exists():
                finished = _finished_now(out)
                if finished:
                    break
            time.sleep(POLL_S)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _finished_now(out)  # what survived the kill
    assert len(killed_at) % KILL_BATCH == 0 and 0 < len(killed_at) < 4 * KILL_BATCH
    assert all(killed_at[i] == t for i, t in finished.items())

    result = run_sweep(cfg, out, resume=True, progress=False)
    assert (result.skipped, result.trained) == (len(killed_at), 32 - len(killed_at))
    reference = run_sweep(cfg, tmp_path / "reference", progress=False)
    assert reference.trained == 32

    expected = {r.id for r in expand_runs(load_config(cfg))}
    con = sqlite3.connect(out / STORE_NAME)
    ids = [row[0] for row in con.execute("SELECT id FROM runs")]
    con.close()
    assert sorted(ids) == sorted(expected)  # every run exactly once
    with Store(out, readonly=True) as s:
        resumed = {r.id: r for r in s.load_runs()}
        stamps = s.finished_times()
    assert {i: stamps[i] for i in killed_at} == killed_at  # not recomputed
    with Store(tmp_path / "reference", readonly=True) as s:
        ref = {r.id: r for r in s.load_runs()}
    for i in expected:
        for name in ("losses", "pred_discrete", "pred_discrete_inf", "pred_ode"):
            np.testing.assert_allclose(
                getattr(resumed[i], name),
                getattr(ref[i], name),
                rtol=SAME_RUN_RTOL,
                atol=0,
                err_msg=f"{i} {name}",
            )
