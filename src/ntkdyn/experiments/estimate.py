"""The plan of a sweep before it runs (``--dry-run``): its runs, its engine batches with their
memory, and the time they should take on this machine. Nothing is written or trained.

Cost model of one batch of ``N`` runs, total width ``M``, ``n`` rows, ``d`` inputs, ``S``
steps (constants per step class, ``_calibrate.StepClass``: device, dtype, threads, mode,
loss, data shape, rule, path)::

    train  = S * (step_overhead + F * seconds_per_flop) + batch_overhead + U * unit_setup
    F      = 4 M n d'  (forward + backward products, d' = d + 1 with the notebook bias)
             + 6 n sum (L - 1) m^2   (deep runs: the hidden m x m layers of each network)
             2 M n^2   (reparametrised path, n < d: one product per step)
    checks = checkpoints * (2 U n^2 * seconds_per_flop + N n^3 * eig_per_n3)
    runs   = sum over runs of kernel_overhead + units * kernel_per_unit
             + S * predict_per_step (runs that predict)

where a run's ``units`` are ``_calibrate.kernel_units`` (its width; a deep run adds
``m^2 / max(n, d)`` per hidden ``m x m`` layer) and ``U`` their sum over the batch.

``seconds_per_flop`` holds the whole step (products and elementwise work, which grows with
``M n`` as the products do), measured by a few real steps of ``ntkdyn.training.train`` on one
network of about ``_calibrate.CALIBRATION_ELEMENTS`` width x max(n, d) elements of the class's
own data, dtype and device; the kernel model at initialisation (empirical Gram, ``eigh``) and
the predictions are timed on the same data. The sweep's own set-up (expanding the config, the
``H^inf`` spectra) is measured while planning and added once. With ``workers > 1`` the
constants are measured with one intra-op thread and the batches are placed on the workers
longest first (LPT), whose largest load is the estimate.

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
from dataclasses import asdict, dataclass
from pathlib import Path

from .._budget import format_bytes, network_bytes
from .._validate import integer
from ..conventions import itemsize
from ._backends import Backend
from ._calibrate import (
    Calibration,
    MachineConstants,
    StepClass,
    calibrate_classes,
    deep_squares,
    kernel_units,
    step_class,
)
from ._calibrate import step_flops as _step_flops
from ._setup import resolve_device
from ._shards import parse_shard, shard_batches
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
    "BatchPlan",
    "dry_run",
    "Calibration",
    "MachineConstants",
    "SweepPlan",
    "plan_sweep",
]

#: Batches listed one per line up to this many; above, one line per experiment group.
TEXT_BATCH_LINES = 40


@dataclass(frozen=True)
class BatchPlan:
    """One pending engine batch (one ``ntkdyn.training.train`` call).

    Attributes:
        experiments: the experiment ids of its runs, in order; ``runs``: how many.
        width: total width; ``n``, ``d``: data rows and inputs; ``steps``; ``dtype``;
        device: resolved; ``optimizer``: rule name; ``family``: the rule's family;
        memory_bytes: ``_budget.network_bytes`` summed over its networks; ``flops``:
            matrix-product flops of its training steps; ``seconds``: estimate on this machine
            (None without calibration); ``worker_seconds``: the same on one single-thread
            worker (None unless planned for workers).
    """

    experiments: tuple[str, ...]
    runs: int
    width: int
    n: int
    d: int
    steps: int
    dtype: str
    device: str
    optimizer: str
    family: str
    memory_bytes: int
    flops: int
    seconds: float | None
    worker_seconds: float | None = None


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep would do (module docstring); :meth:`text` and :meth:`as_dict` show it."""

    config: str
    total_runs: int
    done_runs: int
    batches: tuple[BatchPlan, ...]
    setup_seconds: float
    calibration_seconds: float
    threads: int
    workers: int
    seconds: float | None
    parallel_seconds: float | None

    @property
    def to_train(self) -> int:
        """Runs that would be trained."""
        return self.total_runs - self.done_runs

    @property
    def peak_memory_bytes(self) -> int:
        """Memory of the largest batch (0 with nothing to train)."""
        return max((b.memory_bytes for b in self.batches), default=0)

    def as_dict(self) -> dict:
        """Plain data for ``--json`` (every field, the batches as a list of dicts)."""
        out = asdict(self)
        out["batches"] = [asdict(b) for b in self.batches]
        out["to_train"] = self.to_train
        out["peak_memory_bytes"] = self.peak_memory_bytes
        return out

    def text(self) -> str:
        """A compact table (one line per batch up to :data:`TEXT_BATCH_LINES`, else one per
        experiment group) ending with the totals."""
        head = f"{'batch':>5}  {'experiments':<16} {'runs':>4} {'width':>8} {'n':>5} {'d':>4} "
        head += f"{'steps':>6} {'dtype':<7} {'device':<6} {'optimizer':<16} {'memory':>9} "
        head += f"{'estimate':>9}"
        lines = [f"sweep {self.config!r}: dry run, nothing is trained or written", head]
        rows = [(str(i + 1), [b]) for i, b in enumerate(self.batches)]
        if len(self.batches) > TEXT_BATCH_LINES:
            groups: dict[tuple[str, ...], list[BatchPlan]] = {}
            for b in self.batches:
                groups.setdefault(b.experiments, []).append(b)
            rows = [(f"x{len(g)}", g) for g in groups.values()]
        for label, group in rows:
            b = group[0]
            secs = [x.seconds for x in group]
            est = None if None in secs else sum(s for s in secs if s is not None)
            lines.append(
                f"{label:>5}  {_clip('+'.join(b.experiments), 16):<16} "
                f"{sum(x.runs for x in group):>4} {sum(x.width for x in group):>8} {b.n:>5} "
                f"{b.d:>4} {b.steps:>6} {b.dtype:<7} {b.device:<6} {_clip(b.optimizer, 16):<16} "
                f"{format_bytes(max(x.memory_bytes for x in group)):>9} {_duration(est):>9}"
            )
        lines.append(
            f"runs: {self.total_runs} ({self.done_runs} done, {self.to_train} to train) in "
            f"{len(self.batches)} batches; largest batch {format_bytes(self.peak_memory_bytes)}"
        )
        if self.seconds is None:
            lines.append("estimated time: not calibrated")
        else:
            lines.append(
                f"estimated time on this machine: {_duration(self.seconds)} "
                f"({self.threads} threads; set-up {_duration(self.setup_seconds)}, "
                f"calibration took {_duration(self.calibration_seconds)})"
            )
        if self.workers > 1 and self.parallel_seconds is not None:
            lines.append(
                f"with {self.workers} single-thread workers: {_duration(self.parallel_seconds)} "
                "(longest batches first)"
            )
        return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


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
        shard: ``(i, N)``: only the batches of shard i of N (``_shards``, as ``run_sweep``).

    Returns:
        a :class:`SweepPlan`.
    """
    import torch

    workers = integer("workers", workers, minimum=1)
    if isinstance(done, str) or not all(isinstance(x, str) for x in done):
        raise ValueError(f"`done` must be a collection of run ids, got {done!r}")
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
    counts = [threads] + ([1] if workers > 1 else [])
    calibration = calibrate if isinstance(calibrate, Calibration) else None
    if calibrate is True:
        classes: dict[StepClass, list[list[RunSpec]]] = {}
        for batch in pending:
            for t in counts:
                cls = step_class(batch[0], cache, devices[batch[0].config["device"]], t)
                classes.setdefault(cls, []).append(batch)
        calibration = calibrate_classes(classes.items(), cache)

    plans = [_batch_plan(b, cache, devices, threads, workers, calibration) for b in pending]
    seconds = parallel = None
    if calibration is not None:
        seconds = setup + sum(b.seconds or 0.0 for b in plans)
        if workers > 1:
            parallel = setup + _lpt([b.worker_seconds or 0.0 for b in plans], workers)
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
    checks = checkpoints * (
        2 * sum(units) * cls.n**2 * c.seconds_per_flop + len(batch) * cls.n**3 * c.eig_per_n3
    )
    per_run = sum(
        c.kernel_overhead
        + u * c.kernel_per_unit
        + (steps * c.predict_per_step if r.config["predict"] and r.rule.is_linear else 0.0)
        for r, u in zip(batch, units, strict=True)
    )
    return train + checks + per_run


def _checkpoints(steps: int, every: int | None) -> int:
    """Checkpoints of the engine's loop (``training.engine``: 0, the last step, every k)."""
    if every is None:
        return 0
    return len({0, steps} | set(range(0, steps + 1, every)))


def _batch_plan(
    batch: list[RunSpec],
    cache: DataCache,
    devices: dict[str, str],
    threads: int,
    workers: int,
    calibration: Calibration | None,
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
    ck = _checkpoints(cfg["steps"], cfg["diagnostics_every"])
    seconds = worker = None
    if calibration is not None:
        seconds = batch_seconds(batch, cls, calibration.constants(cls), ck)
        if workers > 1:
            single = step_class(first, cache, device, 1)
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
    if backend.scheduler is not None:  # how many workers it has now (and that it answers)
        from ._dask import dask_client

        with dask_client(workers=None, scheduler=backend.scheduler, threads=1, gpu=False) as c:
            workers = max(len(c.scheduler_info().get("workers", {})), 1)
    return plan_sweep(loaded, done=done, workers=workers, shard=part)
