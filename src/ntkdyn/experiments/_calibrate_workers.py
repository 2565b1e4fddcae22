"""The machine constants of single-thread Dask workers, measured the way the workers run.

A sweep on ``--workers N`` runs ``N`` single-thread worker processes side by side. Timing one
single-thread run alone misses what made the Dask estimate 1.2-1.7x short on a 2-core machine:
the workers share the memory bandwidth and the caches (two single-thread sweeps of the
``paper`` preset's E2 and E4 batches side by side each took 1.77x their time alone), and a
worker's numpy (the kernel model's ``eigh``, the predictions) runs with one BLAS thread, as
Dask's nanny sets it. So a worker class is calibrated in ``concurrent`` processes started for
the purpose, each with one torch and one BLAS thread: one measures the class
(``_calibrate.measure_class``) while the others keep training networks of the same class,
as busy workers would; the next class starts when all are ready.

If the processes cannot be started or one fails, the classes are measured in this process
instead (the previous, optimistic way) and a warning says so.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import warnings
from collections.abc import Iterable

from ._calibrate import calibrate_classes, measure_class, training_call
from ._cost import Calibration, MachineConstants, StepClass
from .runs import DataCache, RunSpec

__all__ = ["calibrate_workers"]

#: The environment of a Dask worker process that matters for its speed: one BLAS thread
#: (distributed's ``nanny.pre-spawn-environ`` defaults).
WORKER_ENVIRON = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: Seconds a calibration process may take for one class before the calibration gives up on
#: the processes (a class's calibration is a few seconds; the first includes the imports).
CLASS_TIMEOUT_S = 300.0

_environ_lock = threading.Lock()

Job = tuple[StepClass, list[RunSpec], int]


def _jobs(classes: Iterable[tuple[StepClass, list[list[RunSpec]]]]) -> list[Job]:
    return [
        (cls, [r for b in batches for r in b], max(sum(r.width for r in b) for b in batches))
        for cls, batches in classes
    ]


#: Training steps per call of a loading process: short, so it stops soon after the
#: measurement ends.
LOAD_STEPS = 20


def _calibrating_process(jobs: list[Job], measuring: bool, barrier, done, results) -> None:
    """One worker-like process: for every class in order, measure it (``measuring``) or
    train its networks until the measuring process is done with it (``done[i]``)."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the driver shows the data's warnings once, itself
    cache = DataCache()
    try:
        out = {}
        for i, (cls, runs, biggest) in enumerate(jobs):
            barrier.wait(timeout=CLASS_TIMEOUT_S)
            if measuring:
                out[cls] = measure_class(cls, runs, biggest, cache)
                done[i].set()
            else:
                call = training_call(cls, runs[0], biggest, cache, LOAD_STEPS)
                while not done[i].is_set():
                    call()
        if measuring:
            results.put(("ok", out))
    except BaseException as exc:  # reported to the driver, which falls back
        barrier.abort()
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def _measure_concurrently(jobs: list[Job], copies: int) -> dict[StepClass, MachineConstants]:
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, as a worker is
    barrier, results = ctx.Barrier(copies), ctx.Queue()
    done = [ctx.Event() for _ in jobs]
    with _environ_lock:  # a spawned process copies os.environ when it starts
        saved = {k: os.environ.get(k) for k in WORKER_ENVIRON}
        os.environ.update(WORKER_ENVIRON)
        try:
            procs = [
                ctx.Process(
                    target=_calibrating_process,
                    args=(jobs, i == 0, barrier, done, results),
                    daemon=True,
                )
                for i in range(copies)
            ]
            for p in procs:
                p.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finished = False
    try:
        status, out = results.get(timeout=CLASS_TIMEOUT_S * (len(jobs) + 1))
        if status != "ok":
            raise RuntimeError(out)
        finished = True
        return out
    finally:
        # after a failure or Ctrl-C no process may outlive the calibration: loading ones stop
        # training or waiting for the next class, a measuring one is terminated
        for event in done:
            event.set()
        barrier.abort()
        for p in procs:
            p.join(timeout=5 if finished else 0.5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


_CACHE: dict[StepClass, MachineConstants] = {}


def calibrate_workers(
    classes: Iterable[tuple[StepClass, list[list[RunSpec]]]], cache: DataCache
) -> Calibration:
    """The constants of each single-thread class (given with its batches), measured by
    ``cls.concurrent`` processes at once (module docstring); cached per process."""
    import time

    start = time.perf_counter()
    items = list(classes)
    todo = [(cls, b) for cls, b in items if cls not in _CACHE]
    by_copies: dict[int, list[tuple[StepClass, list[list[RunSpec]]]]] = {}
    for cls, batches in todo:
        by_copies.setdefault(cls.concurrent, []).append((cls, batches))
    for copies, group in by_copies.items():
        try:
            _CACHE.update(_measure_concurrently(_jobs(group), copies))
        except (OSError, RuntimeError, queue.Empty, EOFError) as exc:
            warnings.warn(
                f"the workers' constants were measured in this process, not in {copies} "
                f"concurrent processes ({type(exc).__name__}: {exc}); the Dask estimate is "
                "optimistic",
                RuntimeWarning,
                stacklevel=2,
            )
            _CACHE.update(calibrate_classes(group, cache).classes)
    found = {cls: _CACHE[cls] for cls, _ in items}
    return Calibration(found, seconds=time.perf_counter() - start)
