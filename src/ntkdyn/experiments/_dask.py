"""The Dask backend of a sweep (``--backend dask``; the ``ntkdyn[distributed]`` extra).

Each engine batch is one Dask task; the task gets the batch's runs and the driver's data (and,
for theory-mode predictions, the driver's ``H^inf`` spectrum), so a worker trains on exactly
the driver's arrays and needs no file of its own. It runs :func:`._batch.train_batch` and
returns the records; the driver stores them as tasks finish (:mod:`._backends`).

Workers run torch at full speed:

* one intra-op thread per worker process unless asked otherwise (``threads``), set in the task
  (a worker started by hand gets it too);
* Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off
  glibc's dynamic mmap threshold, so every large tensor is mmapped and faulted in again (a
  torch loop ran 1.7x slower). A local cluster starts its workers without it; in a worker
  started by hand the task restores large heap thresholds with ``mallopt`` once.

Failures: a worker lost while it runs a task makes the scheduler run the task elsewhere, at
most ``distributed.scheduler.allowed-failures`` times (a local cluster sets
:data:`ALLOWED_FAILURES`; a scheduler started by hand uses its own setting), then the task
fails with ``KilledWorker``. A task that raises is not retried (training is deterministic: it
would raise again). Failed batches are reported with their run ids after the others finished
(``BatchError``). Ctrl-C cancels the pending tasks; what finished is stored.

GPU: a batch whose runs ask for ``device = "cuda"`` requests the worker resource ``GPU`` (start
GPU workers with ``--resources GPU=1``); ``auto`` resolves on the worker.

Step progress: tasks publish ``(batch, step, steps)`` on the event topic :data:`EVENT_TOPIC`
at most every :data:`EVENT_INTERVAL_S` seconds; the driver subscribes and shows it.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from ._backends import BatchError, Finished, StepReport, require_dask
from .runs import DataCache, RunSpec

__all__ = [
    "ALLOWED_FAILURES",
    "EVENT_TOPIC",
    "cluster_environment",
    "dask_batches",
    "dask_client",
]

#: Times a batch may lose its worker before it fails (a local cluster's allowed-failures).
ALLOWED_FAILURES = 3
#: Event topic of the tasks' step progress.
EVENT_TOPIC = "ntkdyn-step"
#: Seconds between two step events of one task.
EVENT_INTERVAL_S = 0.5
#: Seconds between two wake-ups of the driver's wait for tasks (progress redraws).
TICK_S = 0.25
#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT_S = 30
#: glibc's mallopt parameters and the heap thresholds restored in a nanny-started worker:
#: the largest mmap threshold glibc allows on 64-bit, and a trim threshold above it.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 64 << 20

_tuned = False


# --------------------------------------------------------------------------------------------
# On the worker.


def _tune_worker(threads: int) -> None:
    """Torch threads for this task; large glibc heap thresholds once per process."""
    global _tuned
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if _tuned or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    except (OSError, AttributeError):  # not glibc: nothing to restore
        pass


def _step_events(index: int) -> Callable[[int, int], None]:
    from distributed import get_worker

    worker = get_worker()
    last = [-EVENT_INTERVAL_S]

    def report(step: int, steps: int) -> None:
        now = time.monotonic()
        if step < steps and now - last[0] < EVENT_INTERVAL_S:
            return
        last[0] = now
        worker.log_event(EVENT_TOPIC, {"batch": index, "step": step, "steps": steps})

    return report


def _on_this_worker(devices: dict[str, str]) -> dict[str, str]:
    """Requested -> resolved devices here: ``auto`` resolves on the worker that runs it."""
    from ._setup import resolve_device

    return {req: resolve_device("auto") if req == "auto" else dev for req, dev in devices.items()}


def run_batch_task(
    index: int, batch: list[RunSpec], data: list[tuple], devices: dict[str, str], threads: int
) -> tuple[list[dict], float]:
    """One batch on a worker: ``data`` holds (spec, dataset, spectrum or None, deep spectra
    by depth) per data key."""
    from ._batch import train_batch

    _tune_worker(threads)
    cache = DataCache()
    for spec, dataset, spectrum, deep in data:
        cache.preload(spec, dataset, spectrum, deep)
    start = time.perf_counter()
    rows = train_batch(batch, cache, _on_this_worker(devices), progress=_step_events(index))
    return rows, time.perf_counter() - start


def _worker_environment(devices: dict[str, str], threads: int) -> dict[str, Any]:
    from ._setup import environment

    _tune_worker(threads)
    return environment(_on_this_worker(devices))


# --------------------------------------------------------------------------------------------
# On the driver.


def cluster_environment(client: Any, devices: dict[str, str], threads: int) -> dict[str, Any]:
    """Provenance of the workers (``_setup.environment`` run on each): the one they share, or
    every distinct one under ``workers``; the driver's when no worker is connected yet."""
    from ._setup import environment

    found = client.run(_worker_environment, devices, threads)
    distinct = sorted({json.dumps(env, sort_keys=True) for env in found.values()})
    if len(distinct) == 1:
        return json.loads(distinct[0])
    if not distinct:
        return {**environment(devices), "workers": "none connected when the sweep started"}
    return {"workers": [json.loads(text) for text in distinct]}


@contextmanager
def dask_client(
    *, workers: int | None, scheduler: str | None, threads: int, gpu: bool
) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler``, or of a local cluster of ``workers``
    processes (``gpu``: each declares one ``GPU`` resource)."""
    require_dask()
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ValueError(
                f"`--scheduler` {scheduler!r} cannot be reached ({type(exc).__name__}: {exc})"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    environ = {
        k: v
        for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
        if k != "MALLOC_TRIM_THRESHOLD_"
    }
    settings = {
        "distributed.nanny.pre-spawn-environ": environ,
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    }
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=workers or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources={"GPU": 1} if gpu else None,
            silence_logs=logging.ERROR,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()


def _warn_without_gpu_workers(client: Any) -> None:
    """CUDA batches wait for a worker declaring ``GPU``: say so when none has joined yet."""
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers):
        warnings.warn(
            "runs with device 'cuda' wait for a Dask worker with the resource GPU (start GPU "
            "workers with --resources GPU=1); none of the scheduler's workers has one yet",
            RuntimeWarning,
            stacklevel=3,
        )


def _payload(batch: list[RunSpec], cache: DataCache) -> list[tuple]:
    spec = batch[0].data_spec
    theory = any(r.config["mode"] == "theory" and r.config["predict"] for r in batch)
    depths = {r.depth for r in batch if r.depth is not None} if theory else set()
    deep = {depth: cache.deep_spectrum(spec, depth) for depth in sorted(depths)}
    return [(spec, cache.dataset(spec), cache.spectrum(spec) if theory else None, deep)]


def dask_batches(
    client: Any,
    pending: list[list[RunSpec]],
    cache: DataCache,
    devices: dict[str, str],
    on_step: StepReport | None = None,
    on_tick: Callable[[], None] | None = None,
    *,
    threads: int = 1,
) -> Generator[Finished, None, None]:
    """Submit every batch, yield them as they finish; raise :class:`BatchError` at the end
    when some failed. Leaving early (Ctrl-C, an error of the driver) cancels the others.

    ``on_step(batch, step, steps)`` is called from the client's event thread: it must only
    record; ``on_tick()`` is called from this thread at least every :data:`TICK_S` seconds."""
    from distributed import wait

    if any(b[0].config["device"] == "cuda" for b in pending):
        _warn_without_gpu_workers(client)
    tag = uuid.uuid4().hex[:8]
    futures = {}
    for index, batch in enumerate(pending):
        cuda = batch[0].config["device"] == "cuda"
        future = client.submit(
            run_batch_task,
            index,
            batch,
            _payload(batch, cache),
            devices,
            threads,
            key=f"ntkdyn-batch-{index}-{tag}",
            pure=False,
            resources={"GPU": 1} if cuda else None,
        )
        futures[future] = index

    def handler(event: tuple[float, dict]) -> None:
        msg = event[1]
        if (
            on_step is not None
            and isinstance(msg, dict)
            and msg.get("batch") in range(len(pending))
        ):
            on_step(int(msg["batch"]), int(msg["step"]), int(msg["steps"]))

    if on_step is not None:
        client.subscribe_topic(EVENT_TOPIC, handler)
    failures: list[tuple[list[str], str]] = []
    stored = 0
    remaining = set(futures)
    try:
        while remaining:
            try:  # wake up every TICK_S for the progress display (this thread writes it)
                wait(list(remaining), timeout=TICK_S, return_when="FIRST_COMPLETED")
            except (TimeoutError, asyncio.TimeoutError):  # distinct classes on Python 3.10
                pass
            if on_tick is not None:
                on_tick()
            for future in sorted((f for f in remaining if f.done()), key=futures.__getitem__):
                remaining.discard(future)
                index = futures[future]
                if future.status == "finished":
                    rows, seconds = future.result()
                    stored += len(rows)
                    yield Finished(index, rows, seconds)
                else:
                    exc = future.exception()
                    cause = f"{type(exc).__name__}: {exc}".strip()
                    failures.append(([r.id for r in pending[index]], cause))
    finally:
        if on_step is not None:
            client.unsubscribe_topic(EVENT_TOPIC)
        left = [f for f in futures if not f.done()]
        if left:
            client.cancel(left, force=True)
    if failures:
        raise BatchError(failures, stored)
