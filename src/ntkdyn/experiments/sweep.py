"""Run a sweep: expand a config, train its runs in engine batches, store each finished batch.

Order of work (docs/design.md, "Data flow of the main job"; "Reliability rules"):

1. validate everything first (config, its size: ``runs.check_size``, data specs, data-driven
   parameters, devices, the out dir and, when it already holds a store, its schema, config
   and, on resume, the content hashes of the data: ``_existing.check_data_hashes``); a bad input
   raises ValueError naming the field and nothing is created;
2. create ``DIR/results.sqlite``, write meta (config, environment, ``data_hashes``: data key
   -> content hash, JSON) and the ``H^inf`` spectra;
3. group the runs into engine batches (``runs.plan_batches``): runs sharing ``(mode, data,
   n, data_seed, loss, steps, dtype, device, diagnostics_every)`` train together in one
   ``ntkdyn.training.train`` call, split so that total width x max(n, d) stays below
   :data:`MAX_BATCH_ELEMENTS`. Batches are planned from *all* runs, then finished ones are
   dropped, so a resumed sweep recomputes exactly the batches it lost (same composition,
   hence bit-identical curves);
4. per batch: build each model from ``torch.Generator().manual_seed(seed)``, compute its
   kernel predictions from the *initial* weights (theory mode: ``K = c H(0)`` and
   ``K_inf = c H^inf`` with ``e0 = u(W0) - y``, docs/mathematics.md §3, 6; the limiting ODE on ``K_inf`` at
   times ``rule.ode().times(lr, k)``, docs/mathematics.md §4), train, and commit the batch in one
   transaction. A diverged network is stored with status "diverged"; the others are not
   affected.

Predictions are in the units of the loss minimised: ``predict_discrete`` gives ``1/2 ||e||^2``
and is multiplied by ``c`` (1 for half-sum, 2/n for mse; docs/mathematics.md §0).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._backends import Backend, Finished, local_batches
from ._dask import cluster_environment, dask_batches, dask_client
from ._existing import check_existing, data_hashes
from ._lock import out_dir_lock
from ._setup import check_out_dir, environment, now, resolve_device
from ._shards import parse_shard, shard_batches, work_units
from .config import Config, config_dict, load_config
from .progress import Progress
from .records import KernelRecord, RunRecord
from .runs import (
    CUDA_BATCH_ELEMENTS,
    MAX_BATCH_ELEMENTS,
    DataCache,
    RunSpec,
    check_networks_fit,
    check_size,
    expand_runs,
    plan_batches,
)
from .store import STORE_NAME, Store

__all__ = [
    "CUDA_BATCH_ELEMENTS",
    "Backend",
    "MAX_BATCH_ELEMENTS",
    "SweepResult",
    "plan_batches",
    "run_sweep",
]


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        out_dir: the results directory; ``store``: its SQLite file.
        total: runs in the config; ``skipped``: already finished (``resume``);
        trained: runs trained now, of which ``diverged`` diverged; ``batches``: engine batches
        run now; ``elapsed``: wall time in seconds; ``deleted``: finished runs deleted by
        ``fresh``.
    """

    out_dir: Path
    store: Path
    total: int
    skipped: int
    trained: int
    diverged: int
    batches: int
    elapsed: float
    deleted: int = 0


# --------------------------------------------------------------------------------------------
# Entry point.


def _reporter(
    progress: bool | Callable[[int, int], None] | None, total: int, work: float, batches: int
) -> Progress | Callable[[int, int], None] | None:
    if progress is False:
        return None
    if progress is None or progress is True:
        return Progress(total, work=work, batches=batches)
    if callable(progress):
        return progress
    raise ValueError(f"`progress` must be None, a bool or a callable, got {progress!r}")


def run_sweep(
    config: Config | dict | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    fresh: bool = False,
    progress: bool | Callable[[int, int], None] | None = None,
    max_batch_elements: int | None = None,
    confirm_large: bool = False,
    backend: Backend | str = "local",
    shard: str | tuple[int, int] | None = None,
) -> SweepResult:
    """Train every run of ``config`` (of one shard of it) and store it in
    ``out_dir/results.sqlite``.

    Args:
        config: a :class:`Config`, a dict, a TOML path or TOML text (``load_config``).
        out_dir: the results directory (created if needed).
        resume: keep the finished runs of an existing store and train only the others; the
            config may add runs to the store's (``_existing``: a changed or removed finished
            run is refused with its id); refused when the data of a data key changed since (the
            ``data_hashes`` meta; an older store without it is accepted).
        fresh: delete the finished runs of an existing store and train everything again.
            Without ``resume`` or ``fresh`` a store holding finished runs is refused (nothing is
            ever deleted silently). The directory is locked for the whole sweep: a second
            sweep into it is refused with the holder's pid.
        progress: None or True: a progress bar / periodic lines on stderr, at step level;
            False: silent; a callable ``f(done_runs, total_runs)`` is called after each
            committed batch.
        max_batch_elements: batch size bound; None picks it per device (:func:`plan_batches`).
        confirm_large: run a config past ``runs.MAX_RUNS`` runs or ``runs.MAX_WORK`` work
            (``--yes``); otherwise it is refused before the runs are expanded or anything
            is written.
        backend: ``"local"``, ``"dask"`` (a local cluster of one worker) or a :class:`Backend`.
        shard: ``"i/N"`` or ``(i, N)``: train only the batches of shard i of N (``_shards``);
            ``ntkdyn merge`` unites the shard stores.

    Returns:
        a :class:`SweepResult`. Raises ``BatchError`` when batches failed on Dask workers
        (the others are stored).
    """
    start = time.perf_counter()
    if resume and fresh:
        raise ValueError(
            "`--resume` and `--fresh` exclude each other: keep the runs or delete them"
        )
    where = backend if isinstance(backend, Backend) else Backend(str(backend))
    part = parse_shard(shard) if shard is not None else None
    loaded = load_config(config)
    check_size(loaded, confirm_large=confirm_large)
    out = check_out_dir(out_dir)
    cache = DataCache()
    runs = expand_runs(loaded, cache=cache)
    requested = sorted({r.config["device"] for r in runs})
    # Dask workers resolve devices themselves: the driver may have no GPU
    resolve = resolve_device if where.name == "local" else (lambda d: d)
    devices = {d: resolve(d) for d in requested}
    config_json = json.dumps(config_dict(loaded), sort_keys=True)
    check_networks_fit(runs, cache)
    specs = {r.data_spec.key: r.data_spec for r in runs}
    data = (specs, data_hashes(specs.values(), cache))
    ids = {r.id for r in runs}
    store_path = out / STORE_NAME
    if store_path.exists():  # under the lock: never read a store another sweep is writing
        with out_dir_lock(out), Store(store_path) as existing:
            check_existing(existing, out, config_json, ids, data, resume=resume, fresh=fresh)
    if part is None:
        batches = plan_batches(runs, cache, max_elements=max_batch_elements, devices=devices)
    else:  # cut from the CPU plan: the same on every machine (_shards)
        bound = max_batch_elements or MAX_BATCH_ELEMENTS
        batches = shard_batches(plan_batches(runs, cache, max_elements=bound), part, cache)
    kernels = [_kernel_record(spec, cache) for spec in specs.values()]

    with contextlib.ExitStack() as stack:
        client = None
        if where.name == "dask":  # an unreachable scheduler is refused before anything is written
            cuda = any(r.config["device"] == "cuda" for r in runs)
            if cuda and where.scheduler is None:  # a local cluster's GPU is this machine's
                resolve_device("cuda")
            client = stack.enter_context(
                dask_client(
                    workers=where.workers,
                    scheduler=where.scheduler,
                    threads=where.threads,
                    gpu=cuda,
                )
            )
        provenance = (
            environment(devices)
            if client is None
            else cluster_environment(client, devices, where.threads)
        )
        # Validation is over: from here on files are written, by this process alone.
        out.mkdir(parents=True, exist_ok=True)
        stack.enter_context(out_dir_lock(out))
        store = stack.enter_context(Store(store_path))
        # again under the lock: another sweep may have written since the check above
        done = check_existing(store, out, config_json, ids, data, resume=resume, fresh=fresh)
        deleted = len(done) if fresh else 0
        if fresh:
            store.delete_runs()
            done = set()
        meta = store.meta()
        store.set_meta(
            {
                "config": config_json,
                "environment": json.dumps(provenance, sort_keys=True),
                "data_hashes": json.dumps(data[1], sort_keys=True),
                "created": meta.get("created", now()),
                "updated": now(),
                "shard": f"{part[0]}/{part[1]}" if part else "",
                "backend": json.dumps(where.describe(), sort_keys=True),
            }
        )
        store.write_kernels(kernels)
        pending = [[r for r in b if r.id not in done] for b in batches]
        pending = [b for b in pending if b]
        mine = [r for b in batches for r in b]  # the runs of this sweep (of its shard)
        skipped = sum(r.id in done for r in mine)
        report = _reporter(
            progress, len(mine), work_units((r for b in pending for r in b), cache), len(pending)
        )
        counts = _train_pending(store, pending, cache, devices, client, where, report, skipped)
    return SweepResult(
        out,
        store_path,
        len(mine),
        skipped,
        counts[0],
        counts[1],
        len(pending),
        time.perf_counter() - start,
        deleted,
    )


def _train_pending(
    store: Store,
    pending: list[list[RunSpec]],
    cache: DataCache,
    devices: dict[str, str],
    client: Any,
    where: Backend,
    report: Progress | Callable[[int, int], None] | None,
    skipped: int,
) -> tuple[int, int]:
    """Train the pending batches on the backend, storing each as it finishes; returns
    (trained, diverged)."""
    bar = report if isinstance(report, Progress) else None
    total = skipped + sum(len(b) for b in pending)
    weights = [work_units(b, cache) for b in pending]
    on_step = on_tick = None
    if bar is not None:
        bar.update(skipped, 0.0, force=True)  # the starting point (skipped on resume)
        on_tick = bar.tick
        draw = client is None  # Dask reports steps from its event thread: record only

        def on_step(index: int, step: int, steps: int) -> None:
            bar.step(index, step, steps, weights[index], draw=draw)

    trained = diverged = 0
    work = 0.0
    with contextlib.ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        finished: Generator[Finished, None, None]
        if client is None:
            finished = local_batches(pending, cache, devices, on_step)
        else:
            finished = dask_batches(
                client, pending, cache, devices, on_step, on_tick, threads=where.threads
            )
        stack.callback(finished.close)  # a generator: cancels what is left
        for batch in finished:
            runs = pending[batch.index]
            share, stamp = batch.seconds / len(runs), now()
            store.write_batch(
                [RunRecord(**row, elapsed=share, finished=stamp) for row in batch.rows]
            )
            trained += len(runs)
            diverged += sum(row["status"] != "ok" for row in batch.rows)
            work += weights[batch.index]
            if bar is not None:
                bar.update(skipped + trained, work, batch=batch.index)
            elif report is not None and not isinstance(report, Progress):
                report(skipped + trained, total)
    return trained, diverged


def _kernel_record(spec, cache: DataCache) -> KernelRecord:
    s = cache.spectrum(spec)
    return KernelRecord(
        key=spec.key,
        data=spec.data,
        n=cache.dataset(spec).n,
        data_seed=spec.data_seed,
        mode=spec.mode,
        lambda_min=s.lambda_min,
        lambda_max=s.lambda_max,
        eigenvalues=np.asarray(s.eigenvalues),
    )
