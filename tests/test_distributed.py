"""Sweeps on Dask (docs/distributed.md): the same store as the local backend, bit for bit on
one machine; a worker SIGKILLed mid-sweep costs nothing; a failing batch is reported with its
run ids and leaves the store whole; Ctrl-C keeps what finished.

The scheduler and its workers of the kill test are separate processes on 127.0.0.1, as on a
cluster. Each test starts its own cluster (seconds); they skip without the distributed extra.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

from ntkdyn.cli import main  # noqa: E402
from ntkdyn.experiments._backends import BatchError  # noqa: E402
from ntkdyn.experiments.config import load_config  # noqa: E402
from ntkdyn.experiments.runs import expand_runs  # noqa: E402
from ntkdyn.experiments.store import STORE_NAME, Store  # noqa: E402
from ntkdyn.experiments.sweep import Backend, run_sweep  # noqa: E402
from ntkdyn.report import build_report  # noqa: E402

CURVES = ("losses", "pred_discrete", "pred_discrete_inf", "pred_ode", "kernel_eigenvalues")

#: Eight batches of four runs, two families on four data sets, theory mode (all predictions).
CONFIG = """
name = "on-dask"
[defaults]
mode = "theory"
data = "gaussian:d=5"
n = 10
steps = 400
widths = [64, 128]
seeds = [0, 1]
"""
for _i in range(4):
    CONFIG += f"""
[[experiment]]
id = "D{_i}"
data_seed = {_i}
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=0.6"]
"""
RUNS, BATCHES = 32, 8
#: Safety nets (a hung cluster must not hang the suite); nothing is asserted on time.
START_WAIT_S = 120
SWEEP_WAIT_S = 600


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "config.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def local(config, tmp_path_factory, single_thread):
    """The local backend's store: (directory, runs by id)."""
    out = tmp_path_factory.mktemp("local") / "out"
    result = run_sweep(config, out, progress=False)
    assert (result.trained, result.batches) == (RUNS, BATCHES)
    with Store(out, readonly=True) as s:
        return out, {r.id: r for r in s.load_runs()}


def _runs(out):
    with Store(out, readonly=True) as s:
        return {r.id: r for r in s.load_runs()}


def _stored_ids(out) -> list[str]:
    con = sqlite3.connect(out / STORE_NAME)
    try:
        return [row[0] for row in con.execute("SELECT id FROM runs")]
    finally:
        con.close()


def _same_curves(a: dict, b: dict) -> list[str]:
    """Ids and curves that differ (bit for bit)."""
    bad = sorted(set(a) ^ set(b))
    for i in set(a) & set(b):
        for name in CURVES:
            x, y = getattr(a[i], name), getattr(b[i], name)
            if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
                bad.append(f"{i} {name}")
    return bad


def test_two_local_workers_store_the_local_backends_curves_bit_for_bit(local, config, tmp_path):
    ref_dir, ref = local
    out = tmp_path / "dask"
    result = run_sweep(config, out, progress=False, backend=Backend("dask", workers=2))
    assert (result.trained, result.batches) == (RUNS, BATCHES)
    assert _same_curves(_runs(out), ref) == []
    a = build_report(ref_dir, figures=False)
    b = build_report(out, figures=False)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (ref_dir / "summary.json").read_bytes() == (out / "summary.json").read_bytes()


def test_the_bit_for_bit_check_can_fail(local, tmp_path):
    """A run trained with another seed differs; a missing run is caught."""
    _, ref = local
    changed = dict(ref)
    first = sorted(ref)[0]
    other = sorted(ref)[1]
    changed[first] = ref[other]
    assert _same_curves(changed, ref) != []
    del changed[first]
    assert first in _same_curves(changed, ref)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT)


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_WAIT_S) as client:
        client.wait_for_workers(count, timeout=START_WAIT_S)


def test_a_worker_killed_mid_sweep_costs_nothing(local, config, tmp_path):
    """Scheduler and two workers as processes on 127.0.0.1; one worker is SIGKILLed once a
    batch is stored; the sweep completes with every run exactly once, the local curves."""
    _, ref = local
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "cluster.log", "w")  # noqa: SIM115 - closed below
    scheduler = _start(
        ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port)]
        + ["--no-dashboard"],
        log,
    )
    procs = [scheduler]
    out = tmp_path / "out"
    try:
        worker_args = ["distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny"]
        workers = [_start([*worker_args, "--no-dashboard"], log) for _ in range(2)]
        procs += workers
        _wait_for_workers(address, 2)
        sweep = subprocess.Popen(
            [sys.executable, "-m", "ntkdyn.cli", "sweep", str(config), "--out", str(out)]
            + ["--no-report", "--backend", "dask", "--scheduler", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(sweep)
        deadline = time.monotonic() + SWEEP_WAIT_S
        while not (out / STORE_NAME).exists() or not _stored(out):
            assert sweep.poll() is None, sweep.communicate()[0]
            assert time.monotonic() < deadline, "no batch was stored"
            time.sleep(0.05)
        killed = len(_stored(out)) < RUNS
        workers[0].send_signal(signal.SIGKILL)
        text, _ = sweep.communicate(timeout=SWEEP_WAIT_S)
        assert sweep.returncode == 0, text
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        log.close()
    assert killed, "the sweep finished before the worker was killed: make it longer"
    ids = _stored_ids(out)
    assert sorted(ids) == sorted({r.id for r in expand_runs(load_config(config))})
    assert len(ids) == len(set(ids)) == RUNS  # every run exactly once
    assert _same_curves(_runs(out), ref) == []


def _stored(out) -> set[str]:
    try:
        with Store(out, readonly=True) as s:
            return s.finished_ids()
    except Exception:  # created but not yet initialised
        return set()


def test_a_failing_batch_is_named_and_the_others_are_stored(config, tmp_path, monkeypatch):
    """An in-process cluster (threads), so that the patched training reaches the workers."""
    from distributed import Client, LocalCluster

    import ntkdyn.experiments._batch as batch_module

    runs = expand_runs(load_config(config))
    doomed = {r.id for r in runs if r.experiment == "D2" and r.rule.name == "gd"}
    real = batch_module.train_batch

    def failing(batch, *args, **kwargs):
        if batch[0].id in doomed:
            raise FloatingPointError("injected failure")
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(batch_module, "train_batch", failing)
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        with pytest.raises(BatchError, match="injected failure") as caught:
            run_sweep(
                config,
                out,
                progress=False,
                backend=Backend("dask", scheduler=cluster.scheduler_address),
            )
        with Client(cluster.scheduler_address):
            pass
    assert len(caught.value.failures) == 1
    assert set(caught.value.failures[0][0]) == doomed
    assert all(i in str(caught.value) for i in doomed)
    assert set(_stored_ids(out)) == {r.id for r in runs} - doomed  # whole store, others kept
    with Store(out, readonly=True, check=True) as s:
        assert len(s.load_runs()) == RUNS - len(doomed)
    monkeypatch.setattr(batch_module, "train_batch", real)
    result = run_sweep(config, out, resume=True, progress=False)
    assert (result.trained, result.skipped) == (len(doomed), RUNS - len(doomed))


def test_the_cli_says_which_extra_to_install_without_dask(config, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    code = main(["sweep", str(config), "--out", str(tmp_path / "o"), "--backend", "dask"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'ntkdyn[distributed]'" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--backend", "spark"], "--backend"),
        (["--workers", "2"], "--workers"),
        (["--backend", "dask", "--workers", "2", "--scheduler", "tcp://x:1"], "--workers"),
        (["--workers", "0", "--backend", "dask"], "--workers"),
        (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
    ],
)
def test_bad_backend_options_are_one_line_naming_the_field(config, tmp_path, capsys, extra, field):
    code = main(["sweep", str(config), "--out", str(tmp_path / "o"), "--no-report", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"`{field}`" in err[0], err
    assert not (tmp_path / "o" / STORE_NAME).exists()


def test_ctrl_c_cancels_pending_batches_and_keeps_what_finished(local, config, tmp_path):
    _, ref = local
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ntkdyn.cli", "sweep", str(config), "--out", str(out)]
        + ["--no-report", "--backend", "dask", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + SWEEP_WAIT_S
        while not _stored(out):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sent = len(_stored(out)) < RUNS
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=SWEEP_WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sent
    assert proc.returncode == 130, text
    assert text.strip().splitlines()[-1] == "ntkdyn: interrupted", text
    kept = _stored(out)
    assert 0 < len(kept) < RUNS and len(kept) % 4 == 0  # whole batches
    result = run_sweep(config, out, resume=True, progress=False)
    assert (result.skipped, result.trained) == (len(kept), RUNS - len(kept))
    np.testing.assert_equal(len(_stored_ids(out)), RUNS)
    assert _same_curves(_runs(out), ref) == []


def test_tasks_report_their_steps_to_the_driver(config):
    """Step events of running tasks reach ``on_step`` (batch index, step, steps)."""
    from distributed import Client, LocalCluster

    from ntkdyn.experiments._dask import dask_batches
    from ntkdyn.experiments.runs import DataCache, plan_batches

    long = load_config(CONFIG.replace("steps = 400", "steps = 6000"))
    cache = DataCache()
    pending = plan_batches(expand_runs(long, cache=cache), cache)[:2]
    seen: list[tuple[int, int, int]] = []
    ticks = []
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
        Client(cluster) as client,
    ):
        done = list(
            dask_batches(
                client,
                pending,
                cache,
                {"auto": "cpu"},
                lambda *event: seen.append(event),
                lambda: ticks.append(1),
            )
        )
    assert sorted(f.index for f in done) == [0, 1]
    assert seen and all(b in (0, 1) and s <= n == 6000 for b, s, n in seen), seen
    assert ticks  # the driver woke up to redraw while it waited


def test_cuda_runs_on_a_local_cluster_without_cuda_are_refused(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = tmp_path / "cuda.toml"
    cfg.write_text(CONFIG.replace("n = 10\n", 'n = 10\ndevice = "cuda"\n'))
    code = main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--backend", "dask"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "`device` 'cuda'" in err[0], err
    assert not (tmp_path / "o").exists()
