"""The machine constants of the dry-run estimate (``estimate`` module docstring) and the short
calibration that measures them: a few real training steps of ``ntkdyn.training.train`` and one
kernel model at initialisation per step class, on the data, dtype, device and thread count the
runs use. Measured constants are cached per process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .runs import DataCache, RunSpec, network_elements

__all__ = [
    "CALIBRATION_ELEMENTS",
    "Calibration",
    "MachineConstants",
    "StepClass",
    "calibrate_classes",
    "kernel_units",
    "step_class",
    "step_flops",
]

#: Calibration batches hold about this many ``width x max(n, d)`` elements: past the CPU's
#: L2 cache (the sweep's batches are far past it), yet a step takes tens of milliseconds.
CALIBRATION_ELEMENTS = 1 << 21
#: Steps of the short timed training call and the fewest of the long one; their difference
#: gives the marginal step time (set-up and the first forward pass cancel).
_SHORT, _LONG = 1, 4
#: Seconds of stepping the long call aims at, and its bounds in steps.
_TIMED_SECONDS = 0.5
_MAX_STEPS = 400
#: Prediction steps timed per class; longer predictions are extrapolated linearly.
_PREDICT_STEPS = 1000


@dataclass(frozen=True)
class StepClass:
    """What decides the cost of one step of a batch: device (resolved), dtype, intra-op
    threads, parameterisation, loss, data shape (``d`` without the notebook's bias feature),
    the optimizer (by rule name: its registers and update), the reparametrised path and the
    depth of a ``DeepReLU`` (None: the two-layer network)."""

    device: str
    dtype: str
    threads: int
    mode: str
    loss: str
    n: int
    d: int
    rule: str
    reparam: bool
    depth: int | None = None


@dataclass(frozen=True)
class MachineConstants:
    """Seconds per unit of each cost term of the model (``estimate`` module docstring).

    Attributes:
        step_overhead: per engine step of a batch (launches, Python), whatever its size.
        seconds_per_flop: per matrix-product flop of a training step; the step's elementwise
            work scales like its products within one step class and is included.
        batch_overhead: per batch (input checks, ensemble set-up).
        unit_setup: per kernel unit of a batch (initialisation, copies).
        kernel_overhead: per run, the kernel model at initialisation of a width-0 network
            (its eigendecomposition, ``n^3``).
        kernel_per_unit: per kernel unit of a run (:func:`kernel_units`: its width, plus
            ``width^2 / max(n, d)`` per ``m x m`` layer of a deep network), the empirical
            Gram at initialisation.
        predict_per_step: per predicted step of a run (all curves of the run; 0 when the
            class predicts nothing).
        eig_per_n3: per ``n^3`` of a checkpoint's per-network eigendecomposition.
    """

    step_overhead: float
    seconds_per_flop: float
    batch_overhead: float = 0.0
    unit_setup: float = 0.0
    kernel_overhead: float = 0.0
    kernel_per_unit: float = 0.0
    predict_per_step: float = 0.0
    eig_per_n3: float = 0.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Calibration:
    """Constants per step class; ``default`` (if given) serves every class not listed, which is
    how tests inject fixed constants. ``seconds`` is the time the calibration took."""

    classes: dict[StepClass, MachineConstants] = field(default_factory=dict)
    default: MachineConstants | None = None
    seconds: float = 0.0

    def constants(self, cls: StepClass) -> MachineConstants:
        """The constants of ``cls``; KeyError when neither listed nor defaulted."""
        if cls in self.classes:
            return self.classes[cls]
        if self.default is None:
            raise KeyError(cls)
        return self.default

    @classmethod
    def fixed(cls, constants: MachineConstants) -> Calibration:
        """The same constants for every class (deterministic estimates, e.g. in tests)."""
        return cls(default=constants)


def step_class(run: RunSpec, cache: DataCache, device: str, threads: int) -> StepClass:
    """The step class of ``run`` trained on ``device`` (resolved) with ``threads`` threads;
    the engine's path choice: linear rules reparametrise when ``n < d``."""
    ds = cache.dataset(run.data_spec)
    cfg = run.config
    # only the two-layer fast path reparametrises (training.engine); DeepReLU is generic
    reparam = run.rule.is_linear and ds.n < ds.d and run.depth is None
    return StepClass(
        device,
        cfg["dtype"],
        threads,
        cfg["mode"],
        cfg["loss"],
        ds.n,
        ds.d,
        run.rule.name,
        reparam,
        run.depth,
    )


def kernel_units(run: RunSpec, n: int, d: int) -> float:
    """``runs.network_elements / max(n, d)``: the width of a two-layer run; a deep one adds
    ``width^2 / max(n, d)`` per hidden ``m x m`` layer (its weights, initialisation and kernel
    work grow with them)."""
    return network_elements(run.config, n, d) / max(n, d)


def deep_squares(runs: Iterable[RunSpec]) -> int:
    """``sum (depth - 1) width^2`` over deep runs: the ``m x m`` weights of a batch."""
    return sum(((r.depth or 1) - 1) * r.width * r.width for r in runs)


def step_flops(cls: StepClass, total_width: int, squares: int = 0) -> int:
    """Matrix-product flops of one training step of a batch of ``total_width`` units: one
    ``(M x n) (n x n)`` product when reparametrised, else a forward and a backward
    ``(M x d') (d' x n)`` product (``d' = d + 1`` with the notebook's bias feature); a deep
    network adds ``6 n m^2`` per hidden ``m x m`` layer (forward, and the backward products
    for the layer's input and weights), ``squares`` = :func:`deep_squares` of the batch."""
    if cls.reparam:
        return 2 * total_width * cls.n * cls.n
    d = cls.d + (cls.mode == "notebook")
    return 4 * total_width * cls.n * d + 6 * cls.n * squares


# --------------------------------------------------------------------------------------------
# Measurement.

_CACHE: dict[StepClass, MachineConstants] = {}
_OVERHEAD: dict[tuple[str, str, int], tuple[float, float]] = {}
_KERNEL: dict[tuple[str, str, str, int | None], tuple[float, float, float]] = {}


def _calibration_width(rows: int, depth: int | None, biggest: int) -> int:
    """Width of the calibration network: about :data:`CALIBRATION_ELEMENTS` elements
    (``runs.network_elements``: ``m^2`` per hidden ``m x m`` layer of a deep one), at most
    the class's largest batch width, at least 16."""
    if depth is None or depth == 1:
        width = CALIBRATION_ELEMENTS // rows
    else:
        width = int(np.sqrt(CALIBRATION_ELEMENTS / (depth - 1)))
    return int(min(max(width, 16), max(biggest, 16)))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str, repeats: int = 3) -> float:
    """Best of ``repeats`` wall times of ``fn`` (the machine is shared: the minimum is the
    least disturbed), after one untimed call: a code path's first use (fused kernels, lazy
    imports, allocator growth) must not pass for its cost per call; it once made a step look
    free and a 63 s batch estimated at 1 s."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _steps_for(short: float) -> int:
    """Steps of the long timed call: about :data:`_TIMED_SECONDS` of stepping, so that the
    difference of two calls stands out of the timer's and the machine's noise."""
    guess = max(short / (_SHORT + 2), 1e-6)  # a call of _SHORT steps runs _SHORT + 1 forwards
    return int(min(max(_SHORT + _TIMED_SECONDS / guess, _LONG), _MAX_STEPS))


def _network(d: int, width: int, mode: str, depth: int | None, dtype: str = "float64"):
    """A network of the class (``experiments._batch.build_network``'s kinds), seed 0."""
    import torch

    from ..conventions import torch_dtype
    from ..models import DeepReLU, TwoLayerReLU

    generator = torch.Generator().manual_seed(0)
    if depth is not None:
        return DeepReLU(d, width, depth, generator=generator, dtype=torch_dtype(dtype))
    return TwoLayerReLU(
        d, width, parameterization=mode, dtype=torch_dtype(dtype), generator=generator
    )


def _train_call(
    X: np.ndarray,
    y: np.ndarray,
    width: int,
    run: RunSpec,
    device: str,
    steps: int,
    mode: str,
    depth: int | None = None,
) -> Callable[[], object]:
    from ..training import train

    dtype = run.config["dtype"]  # train takes the precision's name (tf32, bfloat16 too)

    def call() -> object:
        model = _network(X.shape[1], width, mode, depth, dtype)
        return train(
            [model], X, y, [run.rule], steps, loss=run.config["loss"], dtype=dtype, device=device
        )

    return call


def _overhead(run: RunSpec, device: str, threads: int) -> tuple[float, float]:
    """(per-step, per-batch) overhead of a tiny batch of the dtype on the device."""
    key = (device, run.config["dtype"], threads)
    if key not in _OVERHEAD:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((8, 4)), rng.standard_normal(8)
        short = _timed(_train_call(X, y, 8, run, device, _SHORT, "theory"), device)
        steps = _steps_for(short)
        long = _timed(_train_call(X, y, 8, run, device, steps, "theory"), device)
        per_step = max(long - short, 0.0) / (steps - _SHORT)
        _OVERHEAD[key] = (per_step, max(short - (_SHORT + 1) * per_step, 0.0))
    return _OVERHEAD[key]


def _measure(
    cls: StepClass, runs: list[RunSpec], biggest: int, cache: DataCache
) -> MachineConstants:
    """Time a few steps of one network of the class, its kernel model at initialisation and,
    when its runs predict, one prediction (module docstring); ``biggest``: the class's largest
    batch width, beyond which the calibration batch need not grow."""
    from ..prediction import kernel_at_init, predict_curves

    run = runs[0]
    ds = cache.dataset(run.data_spec)
    X, y = np.array(ds.X), np.array(ds.y)
    rows, depth = max(cls.n, cls.d), cls.depth
    step_overhead, batch_overhead = _overhead(run, cls.device, cls.threads)
    width = _calibration_width(rows, depth, biggest)
    call = _train_call(X, y, width, run, cls.device, _SHORT, cls.mode, depth)
    short = _timed(call, cls.device, repeats=2)
    steps = _steps_for(short)
    call = _train_call(X, y, width, run, cls.device, steps, cls.mode, depth)
    long = _timed(call, cls.device, repeats=2)
    step = max(long - short, 0.0) / (steps - _SHORT)
    squares = ((depth or 1) - 1) * width * width
    spf = max(step - step_overhead, 0.0) / step_flops(cls, width, squares)

    def units(w: int) -> float:
        return (w * rows + ((depth or 1) - 1) * w * w) / rows  # kernel_units of a run

    unit = max(short - (_SHORT + 1) * step - batch_overhead, 0.0) / units(width)

    def kernel(w: int):
        model = _network(ds.d, w, cls.mode, depth)
        return lambda: kernel_at_init(model, ds, cls.loss)

    # the kernel model does not depend on the rule, dtype or device: measured once per data
    key = (cls.mode, cls.loss, run.data_spec.key, depth)
    if key not in _KERNEL:
        wide = int(min(max(width, 1024), 8192)) if depth is None else width
        k_small = _timed(kernel(1), "cpu", repeats=2)
        k_wide = _timed(kernel(wide), "cpu", repeats=2)
        eig = _timed(lambda: np.linalg.eigvalsh(np.eye(cls.n) + X @ X.T), "cpu") / cls.n**3
        _KERNEL[key] = (k_small, max(k_wide - k_small, 0.0) / (units(wide) - units(1)), eig)
    k_small, per_unit, eig = _KERNEL[key]
    predict = 0.0
    predicting = [r for r in runs if r.config["predict"] and r.rule.is_linear]
    if predicting:
        k0 = kernel(1)()
        steps = min(max(r.config["steps"] for r in predicting), _PREDICT_STEPS)
        theory = cls.mode == "theory"

        def curves() -> None:
            predict_curves(k0, run.rule, steps)
            if theory:  # the H^inf curves and the limiting ODE (experiments._batch)
                predict_curves(k0, run.rule, steps, ode=True)

        predict = _timed(curves, "cpu") / steps
    return MachineConstants(
        step_overhead=step_overhead,
        seconds_per_flop=spf,
        batch_overhead=batch_overhead,
        unit_setup=unit,
        kernel_overhead=max(k_small, 0.0),
        kernel_per_unit=per_unit,
        predict_per_step=predict,
        eig_per_n3=eig,
    )


def calibrate_classes(
    classes: Iterable[tuple[StepClass, list[list[RunSpec]]]], cache: DataCache
) -> Calibration:
    """Measure (or take from this process's cache) the constants of each class (given with
    its batches), with the class's intra-op thread count set for the duration."""
    import torch

    start = time.perf_counter()
    found: dict[StepClass, MachineConstants] = {}
    before = torch.get_num_threads()
    try:
        for cls, batches in classes:
            if cls not in _CACHE:
                torch.set_num_threads(cls.threads)
                runs = [r for b in batches for r in b]
                biggest = max(sum(r.width for r in b) for b in batches)
                _CACHE[cls] = _measure(cls, runs, biggest, cache)
            found[cls] = _CACHE[cls]
    finally:
        torch.set_num_threads(before)
    return Calibration(found, seconds=time.perf_counter() - start)
