"""The short calibration that measures the machine constants of the dry-run estimate
(``_cost``, ``estimate`` module docstring): a few real training steps of
``ntkdyn.training.train`` and one kernel model at initialisation per step class, on the data,
dtype, device and thread count the runs use. Measured constants are cached per process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from ._batch import diagnosed
from ._cost import Calibration, MachineConstants, StepClass, step_flops
from .runs import DataCache, RunSpec

__all__ = [
    "CALIBRATION_ELEMENTS",
    "calibrate_classes",
    "measure_class",
    "training_call",
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


# --------------------------------------------------------------------------------------------
# Measurement.

_CACHE: dict[StepClass, MachineConstants] = {}
_OVERHEAD: dict[tuple[str, str, int], tuple[float, float]] = {}
_KERNEL: dict[tuple[str, str, str, int | None, int], tuple[float, float, float]] = {}


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
    """First guess of the long timed call's steps: about :data:`_TIMED_SECONDS` of stepping if
    the short call were all stepping."""
    guess = max(short / (_SHORT + 2), 1e-6)  # a call of _SHORT steps runs _SHORT + 1 forwards
    return int(min(max(_SHORT + _TIMED_SECONDS / guess, _LONG), _MAX_STEPS))


def _marginal_step(
    call_of: Callable[[int], Callable[[], object]], device: str, repeats: int
) -> tuple[float, float]:
    """(seconds of a :data:`_SHORT`-step call, marginal seconds per step). The long call
    grows until its extra steps take :data:`_TIMED_SECONDS` and twice the short call, so that
    the difference of the two calls stands out of the set-up's noise: when a fixed set-up
    dominates the short call (0.4 s, +-0.1 s, against 20 ms steps in a float32 ``n = 600``
    class) the first guess ran 3 extra steps, inside that noise, and the step came out as 0.
    A set-up varying by a share ``j`` of the short call then moves the step by at most
    ``2 j / 2 = j``."""
    short = _timed(call_of(_SHORT), device, repeats)
    steps = _steps_for(short)
    while True:
        long = _timed(call_of(steps), device, repeats)
        step = max(long - short, 0.0) / (steps - _SHORT)
        stepping = max(_TIMED_SECONDS, 2 * short)
        if long - short >= 0.9 * stepping or steps >= _MAX_STEPS:
            return short, step
        wanted = _SHORT + stepping / step if step > 0 else 8 * steps
        steps = int(min(max(wanted, 2 * steps), _MAX_STEPS))


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
    diagnostics: bool = False,
) -> Callable[[], object]:
    from ..training import train

    dtype = run.config["dtype"]  # train takes the precision's name (tf32, bfloat16 too)

    def call() -> object:
        model = _network(X.shape[1], width, mode, depth, dtype)
        # diagnostics only when asked: their checkpoints are a term of their own in the cost
        # model (``estimate.batch_seconds``)
        return train(
            [model],
            X,
            y,
            [run.rule],
            steps,
            loss=run.config["loss"],
            dtype=dtype,
            device=device,
            diagnostics=diagnostics,
        )

    return call


def training_call(
    cls: StepClass,
    run: RunSpec,
    biggest: int,
    cache: DataCache,
    steps: int,
    diagnostics: bool = False,
) -> Callable[[], object]:
    """``steps`` training steps of one network of the class at its calibration width (a new
    network each call), on the run's data; ``diagnostics``: with the engine's checkpoints at
    the first and the last step."""
    ds = cache.dataset(run.data_spec)
    X, y = np.array(ds.X), np.array(ds.y)
    width = _calibration_width(max(cls.n, cls.d), cls.depth, biggest)
    return _train_call(X, y, width, run, cls.device, steps, cls.mode, cls.depth, diagnostics)


def _overhead(run: RunSpec, device: str, threads: int) -> tuple[float, float]:
    """(per-step, per-batch) overhead of a tiny batch of the dtype on the device."""
    key = (device, run.config["dtype"], threads)
    if key not in _OVERHEAD:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((8, 4)), rng.standard_normal(8)
        short, per_step = _marginal_step(
            lambda steps: _train_call(X, y, 8, run, device, steps, "theory"), device, 3
        )
        _OVERHEAD[key] = (per_step, max(short - (_SHORT + 1) * per_step, 0.0))
    return _OVERHEAD[key]


def _eigvalsh_call(X: np.ndarray) -> Callable[[], object]:
    """An eigendecomposition of a checkpoint: ``torch.linalg.eigvalsh`` of an ``n x n``
    float64 Gram (``training.loop``)."""
    import torch

    A = torch.as_tensor(np.eye(len(X)) + X @ X.T, dtype=torch.float64)
    return lambda: torch.linalg.eigvalsh(A)


def measure_class(
    cls: StepClass, runs: list[RunSpec], biggest: int, cache: DataCache
) -> MachineConstants:
    """Time a few steps of one network of the class, its kernel model at initialisation and,
    when its runs predict, one prediction (module docstring); ``biggest``: the class's largest
    batch width, beyond which the calibration batch need not grow."""
    from ..prediction import kernel_at_init, predict_curves

    run = runs[0]
    ds = cache.dataset(run.data_spec)
    X = np.array(ds.X)
    rows, depth = max(cls.n, cls.d), cls.depth
    step_overhead, batch_overhead = _overhead(run, cls.device, cls.threads)
    width = _calibration_width(rows, depth, biggest)
    short, step = _marginal_step(
        lambda steps: training_call(cls, run, biggest, cache, steps), cls.device, 2
    )
    squares = ((depth or 1) - 1) * width * width
    spf = max(step - step_overhead, 0.0) / step_flops(cls, width, squares)

    def units(w: int) -> float:
        return (w * rows + ((depth or 1) - 1) * w * w) / rows  # kernel_units of a run

    unit = max(short - (_SHORT + 1) * step - batch_overhead, 0.0) / units(width)

    def kernel(w: int):
        model = _network(ds.d, w, cls.mode, depth)
        return lambda: kernel_at_init(model, ds, cls.loss)

    # the kernel model does not depend on the rule, dtype or device: once per data and threads
    key = (cls.mode, cls.loss, run.data_spec.key, depth, cls.threads)
    if key not in _KERNEL:
        wide = int(min(max(width, 1024), 8192)) if depth is None else width
        k_small = _timed(kernel(1), "cpu", repeats=2)
        k_wide = _timed(kernel(wide), "cpu", repeats=2)
        eig = _timed(_eigvalsh_call(X), "cpu") / cls.n**3
        _KERNEL[key] = (k_small, max(k_wide - k_small, 0.0) / (units(wide) - units(1)), eig)
    k_small, per_unit, eig = _KERNEL[key]
    checkpoint = 0.0
    if diagnosed([run]):  # two checkpoints: 3 eigendecompositions and 2 Grams (training.loop)
        with_checks = _timed(training_call(cls, run, biggest, cache, _SHORT, True), cls.device, 2)
        eigs = 3 * eig * cls.n**3
        checkpoint = max(with_checks - short - eigs, 0.0) / (2 * units(width))
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
        checkpoint_per_unit=checkpoint,
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
                _CACHE[cls] = measure_class(cls, runs, biggest, cache)
            found[cls] = _CACHE[cls]
    finally:
        torch.set_num_threads(before)
    return Calibration(found, seconds=time.perf_counter() - start)
