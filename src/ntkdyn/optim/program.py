"""The one interpreter of the register machine: ``(A_k, b_k)`` turned into an update program.

A linear rule (``ntkdyn.optim.base``) steps its registers by ``z_k = A_k z_{k-1} - lr b_k g``
with ``A_k[0, 0] = 1`` and ``A_k[r, 0] = 0`` (docs/mathematics.md §2). Written out, only the
non-zero entries cost work:

* register 0 (the parameters) receives the increment
  ``inc = -lr b_k[0] g + sum_{c >= 1} A_k[0, c] z_c``;
* every auxiliary register ``r >= 1`` becomes ``z_r' = sum_{c >= 1} A_k[r, c] z_c - lr b_k[r] g``.

:func:`update_program` lists these terms once, as an :class:`UpdateProgram`: for each updated
quantity an ordered tuple of :class:`Term` (source register or gradient, coefficient column),
and a coefficient array with one column per term. Every consumer evaluates a quantity as the
left-to-right sum of its terms (the first term a product, each further term added to it), so
the torch optimizer (``optim.torch``), the batched training update (``training.updates``) and
the compiled kernel (``training.fused``) do the same operations in the same order.

The leading axes of ``A`` and ``b`` are free: one step of one rule (no leading axis, used by
the torch optimizer) or every step of every network of a batch (``(steps, N)``). A term is
kept where its coefficient is non-zero anywhere along those axes.

This module knows nothing of the rules themselves (``base`` uses it, not the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "GRADIENT",
    "RegisterMachine",
    "RegisterUpdate",
    "Term",
    "UpdateProgram",
    "update_program",
]

#: ``Term.source`` of the gradient (register indices are >= 1).
GRADIENT = 0


class RegisterMachine(Protocol):
    """What the interpreters need of a linear rule (``ntkdyn.optim.base.LinearRule``)."""

    @property
    def lr(self) -> float: ...
    @property
    def registers(self) -> int: ...

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Term:
    """``coefficients[..., column] * source``: source is an auxiliary register ``c >= 1`` or
    :data:`GRADIENT`."""

    source: int
    column: int

    @property
    def is_gradient(self) -> bool:
        return self.source == GRADIENT


@dataclass(frozen=True)
class RegisterUpdate:
    """One updated quantity: ``target`` 0 is the increment of the parameters, ``r >= 1`` the
    new value of auxiliary register r; its value is the left-to-right sum of ``terms`` (an
    empty tuple means zero)."""

    target: int
    terms: tuple[Term, ...]


@dataclass(frozen=True)
class UpdateProgram:
    """The non-zero terms of a register machine and their coefficients (module docstring).

    ``increment`` always starts with the gradient term (column 0); ``auxiliary`` holds one
    update per register ``1 .. registers - 1`` in order. ``coefficients`` has shape
    ``leading + (columns,)``: the entries ``A[r, c]`` and ``-lr b[r]`` of every term.
    """

    registers: int
    increment: RegisterUpdate
    auxiliary: tuple[RegisterUpdate, ...]
    coefficients: np.ndarray

    @property
    def columns(self) -> int:
        return self.coefficients.shape[-1]

    @property
    def structure(self) -> tuple:
        """A hashable description of the terms (coefficients left out), for compile caches."""
        return tuple(
            (u.target, tuple((t.source, t.column) for t in u.terms))
            for u in (self.increment, *self.auxiliary)
        )


def update_program(A: np.ndarray, b: np.ndarray, lr: float | np.ndarray) -> UpdateProgram:
    """The update program of ``z' = A z - lr b g`` (module docstring).

    Args:
        A: ``leading + (s, s)`` step matrices; ``A[..., 0, 0] = 1`` and ``A[..., r, 0] = 0``.
        b: ``leading + (s,)`` gradient columns.
        lr: learning rate(s), broadcastable to ``leading``.
    Raises ValueError when register 0 is not kept as the parameters.
    """
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    s = A.shape[-1]
    if A.size and (np.any(A[..., 0, 0] != 1.0) or np.any(A[..., 1:, 0] != 0.0)):
        raise ValueError(
            "`A` must keep register 0 as the parameters (A_k[0, 0] = 1, A_k[r, 0] = 0), "
            "as every rule of ntkdyn.optim does"
        )
    grad = -(np.asarray(lr, dtype=np.float64)[..., None] * b)  # -lr b, (leading..., s)

    def used(column: np.ndarray) -> bool:
        return bool(np.any(column != 0.0))

    columns: list[np.ndarray] = []

    def term(source: int, column: np.ndarray) -> Term:
        columns.append(column)
        return Term(source, len(columns) - 1)

    inc = [term(GRADIENT, grad[..., 0])]
    inc += [term(c, A[..., 0, c]) for c in range(1, s) if used(A[..., 0, c])]
    auxiliary = []
    for r in range(1, s):
        terms = [term(c, A[..., r, c]) for c in range(1, s) if used(A[..., r, c])]
        if used(grad[..., r]):
            terms.append(term(GRADIENT, grad[..., r]))
        auxiliary.append(RegisterUpdate(r, tuple(terms)))
    coefficients = np.stack(np.broadcast_arrays(*columns), axis=-1)
    return UpdateProgram(s, RegisterUpdate(0, tuple(inc)), tuple(auxiliary), coefficients)
