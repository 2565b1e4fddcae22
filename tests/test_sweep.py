"""Sweeps: stored curves against independent references (torch.optim loop, closed-form kernel
predictions), resume, determinism, divergence isolation, batching, progress, the CLI, and a
SIGKILLed sweep resumed to the same curves as an uninterrupted one."""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import ntkdyn.training
from ntkdyn.cli import main
from ntkdyn.data import load_dataset
from ntkdyn.experiments.config import DataCache, expand_runs, load_config
from ntkdyn.experiments.progress import Progress, format_eta
from ntkdyn.experiments.store import STORE_NAME, Store
from ntkdyn.experiments.sweep import plan_batches, run_sweep
from ntkdyn.models import TwoLayerReLU

#: The engine and a plain torch.optim loop differ only by rounding (docs/mathematics.md 2: 2e-14 relative
#: parameter deviation over 300 steps); losses are compared relative to L_0.
TORCH_LOOP_TOL = 1e-12
#: Closed-form GD predictions vs the stored ones (eigh of the same matrix, two roundings).
CLOSED_FORM_TOL = 1e-12
#: docs/mathematics.md 0: MSELoss with lr = eta n / 2 follows the half-sum trajectory with lr = eta, the
#: loss scaled by 2/n (measured there: max|dL|/L_0 <= 1.1e-16 over the run).
MSE_EQUIVALENCE_TOL = 1e-13
#: docs/mathematics.md 6: max_k |L_net - L_pred| / L_0 is ~1e-2 at m = 256 and grows like m^-1/2 below;
#: at m = 64 on this n = 10 problem it stays below 5e-2.
KERNEL_REGIME_TOL = 5e-2
#: A run retrained (resumed, or in another batch) is the same computation; only the order of
#: BLAS reductions may differ with batch size and threads, a few ulps per step.
SAME_RUN_RTOL = 1e-10

TINY = """
name = "tiny"
[[experiment]]
id = "T"
mode = "theory"
data = "gaussian:d=5"
n = 10
widths = [64, 128]
seeds = [0, 1]
steps = 200
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=critical", "nesterov:lr=0.5,r=3"]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny sweep, run once: (config path, out dir, runs by id)."""
    root = tmp_path_factory.mktemp("tiny")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY)
    out = root / "out"
    result = run_sweep(cfg, out, progress=False)
    assert (result.total, result.trained, result.skipped, result.diverged) == (12, 12, 0, 0)
    with Store(out, readonly=True) as s:
        runs = {r.id: r for r in s.load_runs()}
    return cfg, out, runs


def torch_loop(data_spec, width, seed, optimizer, steps, *, loss="half-sum"):
    """Reference: a plain torch.optim loop on the run's model (no ntkdyn engine)."""
    ds = load_dataset(data_spec[0], n=data_spec[1], seed=0)
    net = TwoLayerReLU(ds.d, width, generator=torch.Generator().manual_seed(seed))
    _, lr, beta = optimizer
    opt = torch.optim.SGD([net.W], lr=lr, momentum=beta)
    X, y = torch.tensor(ds.X), torch.tensor(ds.y)
    out = []
    for k in range(steps + 1):
        opt.zero_grad()
        e = net(X) - y
        L = 0.5 * (e**2).sum() if loss == "half-sum" else (e**2).mean()
        out.append(L.item())
        if k < steps:
            L.backward()
            opt.step()
    return np.array(out)


# --------------------------------------------------------------------------------------------
# The tiny sweep.


def test_tiny_sweep_stores_every_run_once(tiny):
    cfg, out, runs = tiny
    expected = expand_runs(cfg)
    assert set(runs) == {r.id for r in expected}
    con = sqlite3.connect(out / STORE_NAME)
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 12
    con.close()
    by_id = {r.id: r for r in expected}
    for r in runs.values():
        assert r.config == by_id[r.id].config and r.status == "ok" and r.diverged_at is None
        assert r.losses.shape == (201,) and r.final_loss == r.losses[-1]
        assert r.pred_discrete.shape == r.pred_discrete_inf.shape == r.pred_ode.shape == (201,)
        # t = 0: every prediction starts from the measured e0 = u(W0) - y
        for pred in (r.pred_discrete, r.pred_discrete_inf, r.pred_ode):
            assert pred[0] == pytest.approx(r.losses[0], rel=1e-13)
        assert r.h0 == pytest.approx(0.5 * r.lambda_min_k, rel=1e-15)
        assert list(r.diagnostics) == sorted(
            ["step", "lambda_min", "lambda_max", "h_drift", "w_drift", "flipped"]
        )
    with Store(out, readonly=True) as s:
        meta = s.meta()
        (kernel,) = s.kernels().values()
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert json.loads(meta["environment"])["devices"] == {"auto": auto}
    assert json.loads(meta["config"])["name"] == "tiny"
    assert kernel.n == 10 and kernel.mode == "theory"


def test_stored_curve_equals_a_plain_torch_loop(tiny):
    _, _, runs = tiny
    for r in runs.values():
        if r.seed != 1 or r.width != 64 or r.optimizer.startswith("nesterov"):
            continue
        from ntkdyn.optim import parse

        rule = parse(r.optimizer)
        beta = getattr(rule, "beta", 0.0)
        ref = torch_loop(("gaussian:d=5", 10), 64, 1, (rule.name, rule.lr, beta), 200)
        assert np.max(np.abs(r.losses - ref)) / ref[0] < TORCH_LOOP_TOL, r.optimizer


def test_gd_predictions_equal_closed_forms(tiny):
    """docs/mathematics.md 3 and 4 written out by hand: L_k = 1/2 sum (1 - h_j)^{2k} xi_j^2 with
    K = H(0) = (XX^T o AA^T)/m of the run's init (docs/mathematics.md §1.1); ODE: exp(-2 lambda_j t)."""
    _, _, runs = tiny
    ds = load_dataset("gaussian:d=5", n=10, seed=0)
    X = ds.X
    S = X @ X.T
    theta = np.arccos(np.clip(S, -1, 1))
    np.fill_diagonal(theta, 0.0)  # theta_ii = 0 exactly (arccos(1 - eps) ~ sqrt(2 eps) is not)
    H_inf = S * (np.pi - theta) / (2 * np.pi)
    k = np.arange(201)
    checked = 0
    for r in runs.values():
        if not r.optimizer.startswith("gd:"):
            continue
        net = TwoLayerReLU(5, r.width, generator=torch.Generator().manual_seed(r.seed))
        W, a = net.W.detach().numpy(), net.a.numpy()
        A = (X @ W.T > 0).astype(float)
        e0 = (A * (X @ W.T)) @ a / math.sqrt(r.width) - ds.y
        H0 = S * (A @ A.T) / r.width
        for K, stored in ((H0, r.pred_discrete), (H_inf, r.pred_discrete_inf)):
            lam, Q = np.linalg.eigh(K)
            xi = Q.T @ e0
            pred = 0.5 * ((1 - 0.5 * lam[None, :]) ** (2 * k[:, None]) * xi**2).sum(1)
            assert np.max(np.abs(stored - pred)) / pred[0] < CLOSED_FORM_TOL
        lam, Q = np.linalg.eigh(H_inf)
        ode = 0.5 * (np.exp(-2 * lam[None, :] * 0.5 * k[:, None]) * (Q.T @ e0) ** 2).sum(1)
        assert np.max(np.abs(r.pred_ode - ode)) / ode[0] < CLOSED_FORM_TOL
        assert r.lambda_min_k == pytest.approx(np.linalg.eigvalsh(H0)[0], rel=1e-12)
        checked += 1
    assert checked == 4


def test_measured_curves_follow_the_kernel_prediction(tiny):
    """docs/mathematics.md 6: the network follows the K = H(0) prediction up to ~m^-1/2."""
    _, _, runs = tiny
    err = {64: [], 128: []}
    for r in runs.values():
        err[r.width].append(np.max(np.abs(r.losses - r.pred_discrete)) / r.losses[0])
    assert max(err[64] + err[128]) < KERNEL_REGIME_TOL
    assert np.mean(err[128]) < np.mean(err[64])  # wider is closer (2 seeds x 3 optimizers)


def test_mse_predictions_carry_the_loss_factor(tmp_path):
    """docs/mathematics.md 0: MSELoss with lr = eta n/2 is the half-sum run with lr = eta, scaled by 2/n;
    predictions are stored in the units of the loss minimised."""
    n = 10
    cfg = {"name": "mse", "experiment": [
        {"id": "H", "data": "gaussian:d=5", "n": n, "widths": [64], "steps": 100,
         "optimizers": ["hb:lr=0.5,beta=0.5"]},
        {"id": "M", "data": "gaussian:d=5", "n": n, "widths": [64], "steps": 100, "loss": "mse",
         "optimizers": [f"hb:lr={0.5 * n / 2},beta=0.5"]},
    ]}  # fmt: skip
    run_sweep(cfg, tmp_path, progress=False)
    with Store(tmp_path, readonly=True) as s:
        (half,), (mse,) = s.load_runs("H"), s.load_runs("M")
    c = 2.0 / n
    for name in ("losses", "pred_discrete", "pred_discrete_inf", "pred_ode"):
        a, b = getattr(half, name), getattr(mse, name)
        assert np.max(np.abs(b - c * a)) / (c * a[0]) < MSE_EQUIVALENCE_TOL, name
    ref = torch_loop(("gaussian:d=5", n), 64, 0, ("hb", 0.5 * n / 2, 0.5), 100, loss="mse")
    assert np.max(np.abs(mse.losses - ref)) / ref[0] < TORCH_LOOP_TOL
    assert mse.lambda_min_k == pytest.approx(c * half.lambda_min_k, rel=1e-13)


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
    con = sqlite3.connect(copy / STORE_NAME)
    with con:
        con.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in missing])
    con.close()
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
        with pytest.raises(ValueError, match=r"`--out` .* holds results of a different config"):
            run_sweep(other, copy, resume=resume, progress=False)
    with Store(copy, readonly=True) as s:
        assert s.finished_times() == stamps
    # the same config without resume trains everything again, to the same curves
    result = run_sweep(cfg, copy, progress=False)
    assert (result.trained, result.skipped) == (12, 0)
    with Store(copy, readonly=True) as s:
        again = {r.id: r for r in s.load_runs()}
        assert all(t > max(stamps.values()) for t in s.finished_times().values())
    for i in runs:
        np.testing.assert_allclose(again[i].losses, runs[i].losses, rtol=SAME_RUN_RTOL, atol=0)


def test_a_diverging_run_does_not_disturb_its_batch(tmp_path):
    base = {"id": "D", "data": "gaussian:d=5", "n": 10, "widths": [64], "steps": 100,
            "predict": False}  # fmt: skip
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


def test_batches_group_by_key_and_respect_the_size_bound():
    text = (
        TINY
        + """
[[experiment]]
id = "U"
data = "gaussian:d=5"
n = 10
widths = [64]
steps = 100
optimizers = ["gd:lr=0.5"]
"""
    )
    cache = DataCache()
    runs = expand_runs(text, cache=cache)
    batches = plan_batches(runs, cache)
    assert [len(b) for b in batches] == [4, 4, 4, 1]  # one optimizer family per batch; steps differ
    bound = 200  # total width; max(n, d) = 10
    small = plan_batches(runs, cache, max_elements=10 * bound)
    sizes = [sum(r.width for r in b) for b in small]
    assert all(size <= bound for size in sizes) and len(small) > 2
    assert [r.id for b in small for r in b] == [r.id for r in runs]  # order kept, none lost
    for b, nxt in itertools.pairwise(small):  # greedy: the next run of its group would not fit
        if (nxt[0].rule.name, nxt[0].config["steps"]) == (b[0].rule.name, b[0].config["steps"]):
            assert sum(r.width for r in b) + nxt[0].width > bound
    assert all(len({(r.rule.name, r.config["steps"]) for r in b}) == 1 for b in small)
    # the default bound depends on the resolved device (no model is built here)
    wide = expand_runs(TINY.replace("widths = [64, 128]", "widths = [1000000, 2000000]"))
    cpu = plan_batches(wide, cache, devices={"auto": "cpu"})
    gpu = plan_batches(wide, cache, devices={"auto": "cuda"})
    # per family: total width 6e6 x max(n, d) = 6e7 < 2^28 (one cuda batch), > the cpu bound
    assert len(cpu) > 3 and len(gpu) == 3


# --------------------------------------------------------------------------------------------
# Progress reporter.


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_lines_without_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    p = Progress(39, work=39, stream=stream, tty=False, interval=10.0, clock=clock)
    clock.t = 56 / 3  # 12 of 39 units in 18.67 s: 27 left at the same rate = 42 s
    p.update(12, 12)
    clock.t = 20.0
    p.update(13, 13)  # within the interval: no line
    clock.t = 30.0
    p.update(39, 39)
    p.close()
    assert stream.getvalue().splitlines() == [
        "[sweep] 12/39 runs, 30%, eta 0:42",
        "[sweep] 39/39 runs, 100%, eta 0:00",
    ]
    assert format_eta(None) == "?" and format_eta(3725) == "1:02:05"


def test_progress_bar_on_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    p = Progress(4, work=100.0, stream=stream, tty=True, clock=clock)
    clock.t = 10.0
    p.update(1, 25.0)
    p.update(2, 50.0)
    p.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "2/4 runs  50%  eta 0:10" in text and "#" * 12 + "-" * 12 in text


# --------------------------------------------------------------------------------------------
# CLI.


def test_cli_sweep_export_and_report_errors(tiny, tmp_path, capsys):
    cfg, out, _ = tiny
    assert main(["sweep", str(cfg), "--out", str(out), "--resume", "--no-report"]) == 0
    assert "12 already finished" in capsys.readouterr().out
    assert main(["export", str(out), "--to", str(tmp_path / "x")]) == 0
    with (tmp_path / "x" / "runs.csv").open() as fh:
        assert len(fh.read().strip().splitlines()) == 1 + 12
    with (tmp_path / "x" / "curves.csv").open() as fh:
        assert sum(1 for _ in fh) == 1 + 12 * 201
    capsys.readouterr()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "`DIR`" in capsys.readouterr().err
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert main(["export", str(out), "--format", "parquet", "--to", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err
        assert "pyarrow" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "p" / "runs.parquet").exists()


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
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
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
                getattr(resumed[i], name), getattr(ref[i], name), rtol=SAME_RUN_RTOL, atol=0, err_msg=f"{i} {name}"
            )


# --------------------------------------------------------------------------------------------
# Notebook mode, float32, Adam, devices, default progress.


def test_notebook_float32_and_adam_runs(tmp_path, capsys):
    """Notebook mode has no H^inf limit: only the H(0) prediction (all trained parameters);
    a nonlinear rule (Adam) has none, but its kernel spectrum at init is still recorded."""
    cfg = {"name": "nb", "experiment": [
        {"id": "N", "mode": "notebook", "data": "digits:classes=3/8", "n": 30, "widths": [32],
         "steps": 20, "dtype": "float32", "predict": True,
         "optimizers": ["gd:lr=2e-6", "adam:lr=0.001"]},  # raw pixels: lambda_max(H) ~ 3e5
    ]}  # fmt: skip
    result = run_sweep(cfg, tmp_path, progress=None)  # default reporter: plain lines on stderr
    err = capsys.readouterr().err
    assert "[sweep] 0/2 runs, 0%, eta ?" in err and "[sweep] 2/2 runs, 100%, eta 0:00" in err
    assert result.trained == 2
    with Store(tmp_path, readonly=True) as s:
        runs = {r.optimizer.split(":")[0]: r for r in s.load_runs()}
    gd, adam = runs["gd"], runs["adam"]
    assert gd.pred_discrete_inf is None and gd.pred_ode is None
    # t = 0: a float64 prediction from the float32 init agrees to float32 rounding
    assert gd.pred_discrete[0] == pytest.approx(gd.losses[0], rel=1e-6)
    assert gd.losses.dtype == np.float64 and gd.status == "ok"
    assert gd.h0 == pytest.approx(2e-6 * gd.lambda_min_k, rel=1e-15)
    assert adam.pred_discrete is None and adam.h0 is None and adam.lambda_min_k > 0
    assert gd.lambda_min_k == adam.lambda_min_k  # same data, width and seed: same init


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_is_refused_before_writing(tmp_path):
    cfg = TINY.replace('mode = "theory"', 'mode = "theory"\ndevice = "cuda"')
    with pytest.raises(ValueError, match=r"`device` 'cuda' is requested but CUDA is not"):
        run_sweep(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_reproduce_wiring(tmp_path, monkeypatch, capsys):
    """reproduce = presets.get_preset -> run_sweep -> report.build_report -> print the report
    path and the claims (stand-ins for the preset and the report, so only the wiring is
    tested here; tests/test_reproduce.py runs the real ones)."""
    import types

    calls = {}

    def get_preset(name, *, data=None, dtype=None, device=None):
        calls["preset"] = (name, data, dtype, device)
        return load_config(
            TINY.replace("steps = 200", "steps = 5").replace("widths = [64, 128]", "widths = [16]")
        )

    def build_report(out_dir):
        calls["report"] = out_dir
        (out_dir / "report.html").write_text("<html></html>")
        claims = [{"id": "C1", "statement": "GD converges linearly", "verdict": "supported",
                   "evidence": "rate"}]  # fmt: skip
        (out_dir / "summary.json").write_text(json.dumps({"claims": claims}))

    monkeypatch.setitem(
        sys.modules, "ntkdyn.experiments.presets", types.SimpleNamespace(get_preset=get_preset)
    )
    report = types.SimpleNamespace(build_report=build_report)
    monkeypatch.setitem(sys.modules, "ntkdyn.report", report)
    out = tmp_path / "repro"
    argv = ["reproduce", "--out", str(out), "--dtype", "float64", "--device", "cpu"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert calls["preset"] == ("quick", None, "float64", "cpu") and calls["report"] == out
    assert f"report: {(out / 'report.html').resolve()}" in stdout
    assert "C1  supported" in stdout and "6 runs trained" in stdout
    assert main(["report", str(out)]) == 0 and "C1  supported" in capsys.readouterr().out
    assert main(["reproduce", "--preset", "nope"]) == 2
    assert "--preset" in capsys.readouterr().err
