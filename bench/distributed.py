"""Dask backend against the local one, in one process: ``python bench/distributed.py``.

Prints, each against a baseline measured in the same run:

1. wall time of a sweep of BATCHES CPU batches on the local backend (sequential; with this
   machine's torch threads and with one thread) against ``--backend dask --workers 2`` (cluster
   start included, and without it);
2. per-task overhead: one batch as a Dask task on a one-worker local cluster (submit to result)
   against the same batch trained by ``train_batch`` in a plain process; target within
   OVERHEAD_TARGET;
3. the same task on a worker started with Dask's default nanny environment
   (``MALLOC_TRIM_THRESHOLD_=65536``) without ntkdyn's fix, to show what the fix is for.

Each worker runs one torch thread (the backend's default). Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This file's name is the Dask package's: keep its folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from ntkdyn.experiments._batch import train_batch  # noqa: E402
from ntkdyn.experiments.config import load_config  # noqa: E402
from ntkdyn.experiments.runs import DataCache, expand_runs, plan_batches  # noqa: E402
from ntkdyn.experiments.sweep import Backend, run_sweep  # noqa: E402

BATCHES = 8


def cpu_model() -> str:
    """bench/_common.py's, loaded by path (this folder is off the import path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_common", _HERE / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cpu_model()


#: Target of the per-task overhead (issue 12).
OVERHEAD_TARGET = 0.10


def config(steps: int, width: int) -> str:
    """BATCHES batches of two runs each (one per data seed), a second or two each on a core."""
    text = f"""
name = "bench-distributed"
[defaults]
data = "gaussian:d=20"
n = 100
steps = {steps}
widths = [{width}]
seeds = [0, 1]
"""
    for i in range(BATCHES):
        text += f"""
[[experiment]]
id = "B{i}"
data_seed = {i}
optimizers = ["hb:lr=0.5,beta=0.6"]
"""
    return text


def timed_sweep(text: str, backend: Backend | str = "local") -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_sweep(text, Path(tmp) / "out", progress=False, backend=backend)
        elapsed = time.perf_counter() - start
    assert result.batches == BATCHES, result
    return elapsed


def task_times(text: str, repeats: int, nanny_default: bool) -> tuple[list[float], float]:
    """Wall times of one batch as a task (submit -> result) on a one-worker cluster, and the
    time to start that cluster."""
    import dask
    from distributed import Client, LocalCluster

    from ntkdyn.experiments import _dask

    runs = expand_runs(load_config(text))
    cache = DataCache()
    batch = plan_batches(runs, cache)[0]
    payload = _dask._payload(batch, cache)
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if not nanny_default:
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    start = time.perf_counter()
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter() - start
        if nanny_default:  # the worker must not repair its heap thresholds
            client.run(lambda: setattr(_dask, "_tuned", True))
        times = []
        for k in range(repeats + 1):
            t0 = time.perf_counter()
            fut = client.submit(
                _dask.run_batch_task, 0, batch, payload, {"auto": "cpu"}, 1, pure=False
            )
            fut.result()
            if k:  # the first task imports torch and ntkdyn on the worker
                times.append(time.perf_counter() - t0)
    return times, started


def plain_times(text: str, repeats: int) -> list[float]:
    """The same batch trained by train_batch in this process, one thread."""
    runs = expand_runs(load_config(text))
    cache = DataCache()
    batch = plan_batches(runs, cache)[0]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_batch(batch, cache, {"auto": "cpu"})  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            train_batch(batch, cache, {"auto": "cpu"})
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    text = config(args.steps, args.width)
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads; {BATCHES} batches of 2 networks "
        f"(width {args.width}, n = 100, d = 20, {args.steps} steps, float64)"
    )
    local = timed_sweep(text)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    local_one = timed_sweep(text)
    torch.set_num_threads(previous)
    dask2 = timed_sweep(text, Backend("dask", workers=2))
    print(f"local backend, {previous} threads:  {local:7.2f} s")
    print(f"local backend, 1 thread:   {local_one:7.2f} s")
    print(
        f"dask, 2 workers:           {dask2:7.2f} s   (local / dask = {local / dask2:.2f}x; "
        f"1-thread local / dask = {local_one / dask2:.2f}x; cluster start included)"
    )

    plain = statistics.median(plain_times(text, args.repeats))
    tasks, started = task_times(text, args.repeats, nanny_default=False)
    task = statistics.median(tasks)
    overhead = task / plain - 1
    verdict = "met" if overhead <= OVERHEAD_TARGET else "MISSED"
    print(
        f"one batch, plain process: {plain:.3f} s; as a Dask task: {task:.3f} s "
        f"(median of {args.repeats}); overhead {100 * overhead:+.1f}% "
        f"(target <= {100 * OVERHEAD_TARGET:.0f}%: {verdict}); one-worker cluster start "
        f"{started:.2f} s"
    )
    nanny, _ = task_times(text, args.repeats, nanny_default=True)
    print(
        f"the same task under the nanny's MALLOC_TRIM_THRESHOLD_=65536, unrepaired: "
        f"{statistics.median(nanny):.3f} s ({statistics.median(nanny) / task:.2f}x the repaired)"
    )
    return 0 if overhead <= OVERHEAD_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
