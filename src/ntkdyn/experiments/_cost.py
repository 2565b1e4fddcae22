"""The records and the pure parts of the dry-run estimate's cost model (``estimate`` module
docstring): the step class that decides a batch's cost per step, the machine constants measured
for it (``_calibrate``, ``_calibrate_workers``), and the flops and kernel units of a batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .runs import DataCache, RunSpec, network_elements

__all__ = [
    "Calibration",
    "MachineConstants",
    "StepClass",
    "deep_squares",
    "kernel_units",
    "step_class",
    "step_flops",
]


@dataclass(frozen=True)
class StepClass:
    """What decides the cost of one step of a batch: device (resolved), dtype, intra-op
    threads, parameterisation, loss, data shape (``d`` without the notebook's bias feature),
    the optimizer (by rule name: its registers and update), the reparametrised path, the
    depth of a ``DeepReLU`` (None: the two-layer network) and how many processes run such
    steps side by side (``concurrent``: the Dask workers, ``_calibrate_workers``)."""

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
    concurrent: int = 1


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
        eig_per_n3: per ``n^3`` of one eigendecomposition of a checkpoint (torch,
            float64: a network's Gram, and from the second checkpoint on its change).
        checkpoint_per_unit: per kernel unit of a checkpoint, the float64 Gram and weight
            change (measured as the engine's diagnostics minus their eigendecompositions).
    """

    step_overhead: float
    seconds_per_flop: float
    batch_overhead: float = 0.0
    unit_setup: float = 0.0
    kernel_overhead: float = 0.0
    kernel_per_unit: float = 0.0
    predict_per_step: float = 0.0
    eig_per_n3: float = 0.0
    checkpoint_per_unit: float = 0.0

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


def step_class(
    run: RunSpec, cache: DataCache, device: str, threads: int, concurrent: int = 1
) -> StepClass:
    """The step class of ``run`` trained on ``device`` (resolved) with ``threads`` threads, by
    one of ``concurrent`` processes side by side; the engine's path choice: linear rules
    reparametrise when ``n < d``."""
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
        concurrent,
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
