"""Exact dynamics of a linearised model in function space (docs/mathematics.md §9).

The linearised model ``f_lin(x; W) = f(x; W0) + J(x) (W - W0)`` trained by a linear rule
``z_k = A_k z_{k-1} - lr b_k g`` never leaves ``W0 + range(J^T)``: every register is
``J^T alpha`` for coefficients ``alpha (n, C)`` on the training outputs, and the gradient of
the loss is ``J^T dL/dF``. So the rule runs on the coefficients,

    F_k = F0 + K alpha_{k,0},    alpha_k = A_k alpha_{k-1} - lr b_k dL/dF(F_{k-1}),

with ``K = J J^T`` the empirical NTK, and the test outputs are ``F0_test + K(X_test, X) alpha``.
This is the training of the linearised model itself, done with ``n C`` numbers per register
instead of one per parameter; ``O((n C)^2)`` per step for any smooth loss.

Squared losses (``c/2 ||F - T||^2``) are linear in ``F``: in the eigenbasis of ``K`` every mode
follows its own affine recurrence ``beta_k = A_k beta_{k-1} - lr c b_k (xi0 + lam beta_{k-1,0})``
(``xi0 = Q^T (F0 - T)``), ``O(n C)`` per step, and the loss curve comes from the exact
per-mode recurrences of :mod:`ntkdyn.dynamics.discrete`.

Speed, with the same results up to rounding: eigendecomposing an ``m x m`` block costs about as
much as ``m`` products with it (``m = n C`` for a full kernel), so a squared loss run for fewer
steps (:func:`_stepping_is_cheaper`) is stepped in output space like any other loss, and kept
when its losses stay far above the float64 floor (:data:`STEPPING_FLOOR_MARGIN`); nearer the
floor, or when a loss overflows, the per-mode recurrences are used, whose late losses are the
exact recurrence's. Cross-entropy on a full kernel steps on zero-sum coefficients
(``_kernel_operator.CentredKernel``), reading ``((C - 1)/C)^2`` of the kernel per step. The
outputs of all recorded steps are formed by one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._budget import check_fits
from ._kernel_operator import CentredKernel, KernelOperator
from ._validate import integer
from .losses import Loss
from .optim.rules import LinearRule, Rule, parse
from .prediction import KernelModel

__all__ = [
    "FunctionPrediction",
    "floor_step",
    "loss_floor",
    "output_steps",
    "predict_function_space",
]

#: Squared losses are stepped in output space (one kernel product per step) when
#: ``steps x (cost of a product) < STEPPING_CROSSOVER x (cost of the eigendecomposition)``,
#: counting ``m^2`` per product and ``m^3`` per ``eigh`` of an ``m x m`` block (one ``eigh``
#: measured 1.1-2.9 ``m`` symmetric products for m = 250..4000 on one core).
STEPPING_CROSSOVER = 1.0

#: A stepped squared-loss prediction is kept only if every loss exceeds this multiple of the
#: float64 floor. A stepped residual carries ~eps |T| of rounding per entry, so its loss is off
#: by about ``2 sqrt(floor / L)`` relative: <= 2e-6 above the margin, below every tolerance
#: that judges a curve (>= 1e-3); the per-mode recurrences (exact relative to the envelope)
#: take over below it.
STEPPING_FLOOR_MARGIN = 1e12


@dataclass(frozen=True)
class FunctionPrediction:
    """What a rule does to a linearised model, step by step.

    Attributes:
        rule: the rule's spec string.
        loss: ``(steps + 1,)`` training loss ``L_0 .. L_steps`` in the loss's own units.
        output_steps: the steps at which outputs were recorded (ascending).
        outputs: ``(len(output_steps), n, C)`` outputs on the training inputs.
        test_outputs: ``(len(output_steps), n_test, C)`` on the test inputs, or None.
        floor: the loss below which float64 cannot resolve the residual (docs/mathematics.md
            §9): ``c/2 (n C) (eps max|T|)^2`` for squared losses, 0 for the others.
        floor_step: first step at or below ``floor`` (None if never): later losses of the
            exact recurrence are mathematics, not something a float64 network can show.
    """

    rule: str
    loss: np.ndarray
    output_steps: np.ndarray
    outputs: np.ndarray
    test_outputs: np.ndarray | None
    floor: float = 0.0
    floor_step: int | None = None

    @property
    def steps(self) -> int:
        return self.loss.shape[0] - 1


def loss_floor(loss_factor: float, entries: int, scale: float) -> float:
    """The float64 floor of a squared loss (docs/mathematics.md §9.4): ``c/2 entries (eps
    scale)^2``, the loss of a residual of one rounding unit of ``scale`` (the largest of
    ``|T|`` and ``|F0|``) on each of ``entries = n C`` outputs; no float64 run shows less."""
    return 0.5 * loss_factor * entries * (float(np.finfo(np.float64).eps) * scale) ** 2


def floor_step(losses: np.ndarray, floor: float) -> int | None:
    """The first step whose loss is at or below ``floor`` (None if none, or if ``floor <= 0``):
    where a predicted curve stops being something a float64 network can show."""
    below = np.nonzero(losses <= floor)[0] if floor > 0 else np.array([], dtype=np.int64)
    return int(below[0]) if below.size else None


def output_steps(at: object, steps: int) -> np.ndarray:
    """``at`` (None: every step; an int N: N + 1 evenly spaced steps; or step indices) as a
    sorted unique int array within ``0..steps``. Raises ValueError naming ``outputs_at``."""
    if at is None:
        return np.arange(steps + 1)
    if isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        count = integer("outputs_at", at, minimum=1)
        return np.unique(np.round(np.linspace(0, steps, min(count, steps) + 1)).astype(np.int64))
    values = np.asarray(list(at) if not isinstance(at, np.ndarray) else at)  # type: ignore[call-overload]
    if values.size == 0 or values.dtype.kind not in "iu":
        raise ValueError(f"`outputs_at` must be step indices (integers), got {at!r}")
    if values.min() < 0 or values.max() > steps:
        raise ValueError(
            f"`outputs_at` must lie in [0, {steps}], got [{values.min()}, {values.max()}]"
        )
    return np.unique(values.astype(np.int64))


def predict_function_space(
    kernel: KernelOperator,
    F0: np.ndarray,
    T: np.ndarray,
    loss: Loss,
    rule: Rule | str,
    steps: int,
    *,
    at: np.ndarray,
    kernel_test: np.ndarray | None = None,
    F0_test: np.ndarray | None = None,
) -> FunctionPrediction:
    """Run ``rule`` for ``steps`` steps on the linearised model (module docstring).

    ``F0, T``: initial outputs and targets ``(n, C)``; ``at``: output steps (from
    :func:`output_steps`); ``kernel_test``, ``F0_test``: cross kernel and initial test outputs.
    """
    rule = parse(rule) if isinstance(rule, str) else rule
    if not isinstance(rule, LinearRule):
        raise ValueError(
            f"`rule` {rule.spec!r} is not a linear rule: only register-machine rules have an "
            "exact function-space prediction (Adam's preconditioner depends on the parameters)"
        )
    n, C = kernel.shape
    n_test = 0 if F0_test is None else F0_test.shape[0]
    check_fits(
        "outputs_at",
        f"with {at.size} recorded steps",
        "the recorded outputs",
        8 * at.size * (n + n_test) * C,
        "record fewer steps (outputs_at=N keeps N + 1 of them)",
    )
    A, b = rule.schedule(steps)
    tested = kernel_test is not None and F0_test is not None
    if loss.is_squared:
        c = loss.factor(n * C)
        floor = loss_floor(c, n * C, max(float(np.abs(T).max()), float(np.abs(F0).max())))
        stepped = None
        if _stepping_is_cheaper(kernel, steps):
            limit = STEPPING_FLOOR_MARGIN * floor
            stepped = _general(kernel, F0, T, loss, A, b, rule.lr, at, tested, give_up=limit)
        if stepped is None:
            losses, delta, alpha = _squared(kernel, F0 - T, c, rule, A, b, at, tested)
        else:
            losses, delta, alpha = stepped
    else:
        losses, delta, alpha = _general(kernel, F0, T, loss, A, b, rule.lr, at, tested)
        floor = 0.0
    outputs = F0 + delta
    test = None
    if tested:
        assert kernel_test is not None and F0_test is not None and alpha is not None
        test = F0_test + kernel.apply_cross_many(kernel_test, alpha)
    return FunctionPrediction(
        rule.spec, losses, at, outputs, test, floor, floor_step(losses, floor)
    )


def _stepping_is_cheaper(kernel: KernelOperator, steps: int) -> bool:
    """Whether ``steps`` kernel products cost less than the eigendecomposition
    (:data:`STEPPING_CROSSOVER`)."""
    n, C = kernel.shape
    if kernel.structure == "full":
        product, factorise = (n * C) ** 2, (n * C) ** 3
    elif kernel.structure == "trace":  # C columns through one (n, n) kernel, one eigh
        product, factorise = C * n**2, n**3
    else:  # C blocks
        product, factorise = C * n**2, C * n**3
    return steps * product < STEPPING_CROSSOVER * factorise


def _squared(kernel, e0, c, rule, A, b, at, tested):
    """Per-mode affine recurrences on the coefficients (module docstring); the loss curve
    from the exact per-mode recurrences of the effective kernel ``c K``. Returns the losses,
    and at the steps of ``at`` the changes of the outputs ``K alpha`` ``(len(at), n, C)`` and
    (if ``tested``) the coefficients ``alpha``, else None."""
    basis = kernel.eigenbasis()
    lam = basis.eigenvalues
    xi0 = basis.to_modes(e0)
    steps = A.shape[0]
    losses = KernelModel(c * lam, xi0, c).curve(rule, steps)
    slot = _slots(at, steps)
    modes = np.empty((at.size, lam.size))  # beta_{k,0} at the recorded steps
    beta = np.zeros((A.shape[1], lam.size))
    scale = rule.lr * c
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(int(at[-1]) + 1):
            if k:
                xi = xi0 + lam * beta[0]
                beta = A[k - 1] @ beta - scale * b[k - 1][:, None] * xi
            if slot[k] >= 0:
                modes[slot[k]] = beta[0]
        # all recorded steps at once: one matrix product instead of one per step
        delta = basis.from_modes_many(lam * modes)
        alpha = basis.from_modes_many(modes) if tested else None
    return losses, delta, alpha


def _slots(at: np.ndarray, steps: int) -> np.ndarray:
    """``slot[k]``: the index of step ``k`` in ``at``, or -1 if not recorded."""
    slot = np.full(steps + 1, -1, dtype=np.int64)
    slot[at] = np.arange(at.size)
    return slot


def _general(kernel, F0, T, loss, A, b, lr, at, tested, give_up=None):
    """The coefficient iteration for any smooth loss (module docstring). Returns the losses,
    and at the steps of ``at`` the changes ``K alpha`` and (if ``tested``) ``alpha``. With
    ``give_up`` (a squared loss), returns None as soon as a loss is at or below it or not
    finite, or, from a tenth of the run on, below the geometric path from ``L_0`` to
    ``give_up`` over the run (a loss falling that fast would get there: the caller needs the
    per-mode recurrences anyway, and the steps left are saved). Cross-entropy on a full kernel
    runs on zero-sum coefficients (:class:`CentredKernel`) when that saves time."""
    steps, registers = A.shape[0], A.shape[1]
    n, C = kernel.shape
    centred = None
    if loss.name == "cross-entropy" and CentredKernel.worth(kernel, steps):
        centred = CentredKernel(kernel)
    size = n * (C - 1) if centred is not None else n * C
    alpha = np.zeros((registers, size))  # flat registers: the update is one small product
    losses = np.full(steps + 1, np.inf)
    slot = _slots(at, steps)
    delta = np.full((at.size, n, C), np.nan)  # NaN stays where a diverged run never got to
    recorded = np.full((at.size, n, C), np.nan) if tested else None
    # one register whose A_k is the identity (GD): update it in place, no product
    plain = registers == 1 and bool(np.all(A == 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps + 1):
            if centred is None:
                change = kernel.apply(alpha[0].reshape(n, C)) if k else np.zeros_like(F0)
                F = F0 + change
            else:  # F less its row means: the same loss and gradient
                F = F0 + centred.apply(alpha[0]) if k else F0
            if slot[k] >= 0:
                coefficients = alpha[0].reshape(n, C) if centred is None else centred.lift(alpha[0])
                delta[slot[k]] = change if centred is None else kernel.apply(coefficients)
                if recorded is not None:
                    recorded[slot[k]] = coefficients
            value, grad = loss.value_and_gradient(F, T)
            losses[k] = value
            if give_up is not None and _gives_up(value, losses[0], give_up, k, steps):
                return None
            if not np.isfinite(value):  # diverged: later losses stay inf, outputs NaN
                break
            if k < steps:
                g = grad.reshape(-1) if centred is None else centred.reduce(grad)
                step = lr * b[k]
                if plain:
                    alpha[0] -= step[0] * g
                else:
                    alpha = A[k] @ alpha - step[:, None] * g.reshape(1, -1)
    return losses, delta, recorded


def _gives_up(value: float, first: float, limit: float, k: int, steps: int) -> bool:
    """Whether the stepped squared loss must yield to the recurrences (:func:`_general`)."""
    if not limit < value < np.inf:  # also NaN
        return True
    if k == 0 or 10 * k < steps or limit <= 0.0:
        return False
    return bool(np.log(value / first) <= (k / steps) * np.log(limit / first))
