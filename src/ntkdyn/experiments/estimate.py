"""The plan of a sweep before it runs (``--dry-run``): its runs, its engine batches with their
memory, and the time they should take on this machine. Nothing is written or trained.

Cost model of one batch of ``N`` runs, total width ``M``, ``n`` rows, ``d`` inputs, ``S``
steps (constants per step class, ``_cost.StepClass``: device, dtype, threads, mode,
loss, data shape, rule, path)::

    train  = S * (step_overhead + F * seconds_per_flop) + batch_overhead + U * unit_setup
    F      = 4 M n d'  (forward + backward products, d' = d + 1 with the notebook bias)
             + 6 n sum (L - 1) m^2   (deep runs: the hidden m x m layers of each network)
             2 M n^2   (reparametrised path, n < d: one product per step)
    checks = C * U * checkpoint_per_unit + (2 C - 1) N n^3 * eig_per_n3
             (C checkpoints: the first and last step of every diagnosed batch, and every
             ``diagnostics_every``-th; a Gram each, one eigendecomposition at the first and
             two at the others)
    runs   = sum over runs of kernel_overhead + units * kernel_per_unit
             + S * predict_per_step (runs that predict)

where a run's ``units`` are ``_cost.kernel_units`` (its width; a deep run adds
``m^2 / max(n, d)`` per hidden ``m x m`` layer) and ``U`` their sum over the batch.

``seconds_per_flop`` holds the whole step (products and elementwise work, which grows with
``M n`` as the products do), measured by a few real steps of ``ntkdyn.training.train`` on one
network of about ``_calibrate.CALIBRATION_ELEMENTS`` width x max(n, d) elements of the class's
own data, dtype and device, without diagnostics (one more call with them gives the
checkpoints' cost, less their eigendecompositions, timed alone); the kernel model at
initialisation (empirical Gram, ``eigh``) and the predictions are timed on the same data. The sweep's own set-up (expanding the config, the
``H^inf`` spectra) is measured while planning and added once. With ``workers > 1`` the
constants are measured as the workers run: by as many single-thread processes at once as there
are workers (at most one per core of this machine; ``_calibrate_workers``), and the batches are
placed on the workers longest first (LPT), whose largest load is the estimate. Workers of a
local cluster beyond one per core add no speed, so at most that many take batches; the workers
of a scheduler are taken to have a core each.

Limits: a step class is calibrated once per process, at one width, so a machine whose load
changes afterwards is not followed; the cost per flop is taken as independent of the width
(true past the caches; a batch much smaller than the calibration width is mostly
``step_overhead``); data movement to a GPU, the store's commits and the report are not
counted; predictions longer than ``_calibrate._PREDICT_STEPS`` are extrapolated linearly.
The planned batches are those of ``runs.plan_batches``, so their memory is
``_budget.network_bytes`` summed over their networks, as ``runs.check_networks_fit`` counts it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path

from .._budget import network_bytes
from .._validate import integer
from ..conventions import itemsize
from ._backends import Backend
from ._batch import diagnosed
from ._calibrate import calibrate_classes
from ._calibrate_workers import calibrate_workers
from ._cost import (
    Calibration,
    MachineConstants,
    StepClass,
    deep_squares,
    kernel_units,
    step_class,
)
from ._cost import step_flops as _step_flops
from ._setup import resolve_device
from ._shards import parse_shard, shard_batches
from ._sweep_plan import TEXT_BATCH_LINES, BatchPlan, SweepPlan
from .config import Config, load_config
from .runs import (
    MAX_BATCH_ELEMENTS,
    DataCache,
    RunSpec,
    check_size,
    expand_runs,
    network_elements,
    plan_batches,
)
from .store import STORE_NAME, Store

__all__ = [
    "TEXT_BATCH_LINES",
    "BatchPlan",
    "dry_run",
    "Calibration",
    "MachineConstants",
    "SweepPlan",
    "plan_sweep",
]

# --------------------------------------------------------------------------------------------
# Planning.


def plan_sweep(
    config: Config | dict | str | os.PathLike[str],
    *,
    done: Collection[str] = frozenset(),
    max_batch_elements: int | None = None,
    devices: dict[str, str] | None = None,
    calibrate: bool | Calibration = True,
    workers: int = 1,
    workers_here: bool = True,
    shard: tuple[int, int] | None = None,
) -> SweepPlan:
    """The plan of ``run_sweep`` on ``config`` (module docstring); writes nothing.

    Args:
        config: a :class:`Config`, a dict, a TOML path or TOML text (``load_config``).
        done: ids of finished runs (a resumed store's), left out of the batches.
        max_batch_elements: batch size bound, as in ``run_sweep``.
        devices: requested -> resolved devices; None resolves them here.
        calibrate: True measures the machine (cached per process); a :class:`Calibration`
            uses its constants (e.g. ``Calibration.fixed(MachineConstants(...))``); False
            plans without times.
        workers: with N > 1, also the time on N single-thread workers.
        workers_here: the workers run on this machine (a local cluster): at most one per core
            takes batches. False: each has a core of its own (a scheduler's workers).
        shard: ``(i, N)``: only the batches of shard i of N (``_shards``, as ``run_sweep``).

    Returns:
        a :class:`SweepPlan`.
    """
    import torch

    workers = integer("workers", workers, minimum=1)
    if isinstance(done, str) or not all(isinstance(x, str) for x in done):
        raise ValueError(f"`done` must be a collection of run ids, got {done!r}")
    if not isinstance(workers_here, bool):
        raise ValueError(f"`workers_here` must be True or False, got {workers_here!r}")
    if not isinstance(calibrate, (bool, Calibration)):
        raise ValueError(f"`calibrate` must be True, False or a Calibration, got {calibrate!r}")
    start = time.perf_counter()
    loaded = load_config(config)
    cache = DataCache()
    runs = expand_runs(loaded, cache=cache)
    if devices is None:
        devices = {d: resolve_device(d) for d in sorted({r.config["device"] for r in runs})}
    for spec in {r.data_spec.key: r.data_spec for r in runs}.values():
        cache.spectrum(spec)  # the sweep computes every H^inf spectrum before training
    if shard is None:
        batches = plan_batches(runs, cache, max_elements=max_batch_elements, devices=devices)
    else:  # as run_sweep: shards are cut from the CPU plan
        bound = max_batch_elements or MAX_BATCH_ELEMENTS
        batches = shard_batches(plan_batches(runs, cache, max_elements=bound), shard, cache)
        runs = [r for b in batches for r in b]
    finished = set(done)
    pending = [b for b in ([r for r in b if r.id not in finished] for b in batches) if b]
    setup = time.perf_counter() - start

    threads = torch.get_num_threads()
    concurrent = min(workers, os.cpu_count() or 1)
    slots = concurrent if workers_here else workers
    calibration = calibrate if isinstance(calibrate, Calibration) else None
    if calibrate is True:
        local: dict[StepClass, list[list[RunSpec]]] = {}
        on_workers: dict[StepClass, list[list[RunSpec]]] = {}
        for batch in pending:
            device = devices[batch[0].config["device"]]
            local.setdefault(step_class(batch[0], cache, device, threads), []).append(batch)
            if workers > 1:
                cls = step_class(batch[0], cache, device, 1, concurrent)
                on_workers.setdefault(cls, []).append(batch)
        calibration = calibrate_classes(local.items(), cache)
        if on_workers:
            measured = calibrate_workers(on_workers.items(), cache)
            calibration = Calibration(
                {**calibration.classes, **measured.classes},
                seconds=calibration.seconds + measured.seconds,
            )

    plans = [
        _batch_plan(b, cache, devices, threads, workers, calibration, concurrent) for b in pending
    ]
    seconds = parallel = None
    if calibration is not None:
        seconds = setup + sum(b.seconds or 0.0 for b in plans)
        if workers > 1:
            parallel = setup + _lpt([b.worker_seconds or 0.0 for b in plans], slots)
    return SweepPlan(
        config=loaded.name,
        total_runs=len(runs),
        done_runs=sum(r.id in finished for r in runs),
        batches=tuple(plans),
        setup_seconds=setup,
        calibration_seconds=calibration.seconds if calibration is not None else 0.0,
        threads=threads,
        workers=workers,
        seconds=seconds,
        parallel_seconds=parallel,
        worker_slots=slots if workers > 1 else 1,
        every_core_busy=workers > 1 and workers_here and workers >= (os.cpu_count() or 1),
    )


def _lpt(times: list[float], workers: int) -> float:
    """Largest load when the jobs go, longest first, to the least loaded worker."""
    loads = [0.0] * workers
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def batch_seconds(
    batch: list[RunSpec], cls: StepClass, c: MachineConstants, checkpoints: int
) -> float:
    """The cost model of the module docstring for one batch."""
    width = sum(r.width for r in batch)
    units = [kernel_units(r, cls.n, cls.d) for r in batch]
    steps = batch[0].config["steps"]
    flops = _step_flops(cls, width, deep_squares(batch))
    train = steps * (c.step_overhead + flops * c.seconds_per_flop)
    train += c.batch_overhead + sum(units) * c.unit_setup
    # a network's Gram at every checkpoint; its eigenvalues, and from the second on its change's
    checks = checkpoints * sum(units) * c.checkpoint_per_unit
    checks += max(2 * checkpoints - 1, 0) * len(batch) * cls.n**3 * c.eig_per_n3
    per_run = sum(
        c.kernel_overhead
        + u * c.kernel_per_unit
        + (steps * c.predict_per_step if r.config["predict"] and r.rule.is_linear else 0.0)
        for r, u in zip(batch, units, strict=True)
    )
    return train + checks + per_run


def _checkpoints(batch: list[RunSpec]) -> int:
    """Checkpoints of the engine's loop for ``batch`` (``training.engine.checkpoint_steps``;
    none where ``_batch.diagnosed`` is False)."""
    from ..training.engine import checkpoint_steps

    cfg = batch[0].config
    return len(checkpoint_steps(cfg["steps"], cfg["diagnostics_every"])) if diagnosed(batch) else 0


def _batch_plan(
    batch: list[RunSpec],
    cache: DataCache,
    devices: dict[str, str],
    threads: int,
    workers: int,
    calibration: Calibration | None,
    concurrent: int = 1,
) -> BatchPlan:
    first = batch[0]
    cfg = first.config
    ds = cache.dataset(first.data_spec)
    device = devices[cfg["device"]]
    # the same count as runs.check_networks_fit (Adam: two moments and the weights)
    registers = getattr(first.rule, "registers", 3)
    memory = sum(
        network_bytes(1, network_elements(r.config, ds.n, ds.d), registers, itemsize(cfg["dtype"]))
        for r in batch
    )
    width = sum(r.width for r in batch)
    cls = step_class(first, cache, device, threads)
    ck = _checkpoints(batch)
    seconds = worker = None
    if calibration is not None:
        seconds = batch_seconds(batch, cls, calibration.constants(cls), ck)
        if workers > 1:
            single = step_class(first, cache, device, 1, concurrent)
            worker = batch_seconds(batch, single, calibration.constants(single), ck)
    return BatchPlan(
        experiments=tuple(dict.fromkeys(r.experiment for r in batch)),
        runs=len(batch),
        width=width,
        n=ds.n,
        d=ds.d,
        steps=cfg["steps"],
        dtype=cfg["dtype"],
        device=device,
        optimizer=first.rule.name,
        family=first.rule.family.value,
        memory_bytes=memory,
        flops=cfg["steps"] * _step_flops(cls, width, deep_squares(batch)),
        seconds=seconds,
        worker_seconds=worker,
    )


def dry_run(
    config: Config | dict | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    backend: Backend,
    shard: str | tuple[int, int] | None = None,
    yes: bool = False,
) -> SweepPlan:
    """What ``sweep --dry-run`` prints: the plan of ``config`` into ``out_dir`` (its finished
    runs left out, as ``--resume`` would), checked as the sweep checks it; writes nothing.
    On Dask, the estimate is for ``--workers`` workers, or for those of ``--scheduler``."""
    loaded = load_config(config)
    check_size(loaded, confirm_large=yes)
    part = parse_shard(shard) if shard is not None else None
    done: set[str] = set()
    store = Path(out_dir) / STORE_NAME
    if store.is_file():
        with Store(store, readonly=True, check=True) as existing:
            done = existing.finished_ids()
    workers = backend.workers or 1
    here = backend.scheduler is None
    if not here:  # how many workers it has now (and that it answers)
        from ._dask import dask_client

        with dask_client(workers=None, scheduler=backend.scheduler, threads=1, gpu=False) as c:
            workers = max(len(c.scheduler_info().get("workers", {})), 1)
    return plan_sweep(loaded, done=done, workers=workers, workers_here=here, shard=part)
