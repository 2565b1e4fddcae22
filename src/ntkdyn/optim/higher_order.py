"""Higher-order momentum (docs/mathematics.md §2): the exact (b1, b2) recursion and the authors'
cascaded notebook optimizer, both register machines of family ``HIGHER_ORDER`` (registered
with the other rules in ``optim.rules``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._validate import unit_interval
from .base import Family, LinearRule, ODESpec, _critical_beta

__all__ = ["HigherOrderMomentum", "HigherOrderMomentumNotebook"]


def _hom_max_h(b1: float, b2: float) -> float:
    bound = 2.0 * (1.0 + b1 - b2)
    if b2 < 0:
        bound = min(bound, (1.0 + b2) * (1.0 - b1 - b2) / abs(b2))
    return bound


def _hom_critical_b1(lambda_min: float, params: Mapping[str, float]) -> float:
    return _critical_beta(lambda_min, params["lr"]) - params.get("b2", 0.0)


#: The higher-order momentum limit as printed (``_hom_max_h``).
_HOM_LIMIT = "2(1 + b1 - b2), less when b2 < 0"


def _check_hom(rule: HigherOrderMomentum | HigherOrderMomentumNotebook) -> None:
    object.__setattr__(rule, "b1", unit_interval("b1", rule.b1))
    object.__setattr__(rule, "b2", unit_interval("b2", rule.b2, low=-1.0, closed_low=False))
    if rule.b1 + rule.b2 >= 1.0:
        warnings.warn(
            f"b1 + b2 = {rule.b1 + rule.b2:g} >= 1: higher-order momentum has no linear rate "
            "guarantee here and may diverge",
            RuntimeWarning,
            stacklevel=4,
        )


@dataclass(frozen=True)
class HigherOrderMomentum(LinearRule):
    """Exact higher-order momentum (docs/mathematics.md §2):
    ``x_{k+1} = x_k - lr g_k + b1 (x_k - x_{k-1}) + b2 (x_{k-1} - x_{k-2})``,
    ``x_{-1} = x_{-2} = x_0``. Registers (x, d_k, d_{k-1}) with ``d_k = x_k - x_{k-1}``.
    ODE (with b1 + b2 = 1 - gamma sqrt(lr)): ``(1 + b2) e'' + gamma e' + K e = 0``.
    """

    b1: float = 0.6
    b2: float = 0.2
    name: ClassVar[str] = "hom"
    family: ClassVar[Family] = Family.HIGHER_ORDER
    registers: ClassVar[int] = 3
    critical_key: ClassVar[str | None] = "b1"
    stable_limit_formula: ClassVar[str | None] = _HOM_LIMIT

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_hom(self)

    @classmethod
    def critical_value(cls, lambda_min: float, params: Mapping[str, float]) -> float:
        """``b1`` with ``b1 + b2`` at the critical beta (the ODE damping is ``1 - b1 - b2``)."""
        return _hom_critical_b1(lambda_min, params)

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        b1, b2 = self.b1, self.b2
        A = np.array([[1.0, b1, b2], [0.0, b1, b2], [0.0, 1.0, 0.0]])
        return A, np.array([1.0, 1.0, 0.0])

    def ode(self) -> ODESpec:
        gamma = (1.0 - self.b1 - self.b2) / math.sqrt(self.lr)
        return ODESpec("oscillator", "sqrt_lr", gamma=gamma, mass=1.0 + self.b2)

    def max_stable_h(self) -> float:
        return _hom_max_h(self.b1, self.b2)


@dataclass(frozen=True)
class HigherOrderMomentumNotebook(LinearRule):
    """The authors' cascaded two-buffer optimizer (``Higher_SGD`` in their notebook).

    With ``a, c = (b1 +- sqrt(b1^2 + 4 b2)) / 2`` (roots of z^2 - b1 z - b2) it keeps
    ``q_k = c q_{k-1} + g_k`` (q_1 = 0) and ``p_k = a p_{k-1} + q_k`` (p_1 = g_1), and steps
    ``x_k = x_{k-1} - lr p_k``. After its start-up (p_2 = a g_1 + g_2 instead of b1 g_1 + g_2)
    this is the (b1, b2) recursion. With b1 = 0 the notebook skips momentum entirely (plain
    GD); that is mirrored here. Registers (x, P = -lr p, Q = -lr q).
    """

    b1: float = 0.2
    b2: float = 0.2
    name: ClassVar[str] = "hom-notebook"
    family: ClassVar[Family] = Family.HIGHER_ORDER
    registers: ClassVar[int] = 3
    constant_from: ClassVar[int | None] = 2
    critical_key: ClassVar[str | None] = "b1"
    stable_limit_formula: ClassVar[str | None] = "2 if b1 = 0, else " + _HOM_LIMIT

    @classmethod
    def critical_value(cls, lambda_min: float, params: Mapping[str, float]) -> float:
        """``b1`` with ``b1 + b2`` at the critical beta (as :class:`HigherOrderMomentum`)."""
        return _hom_critical_b1(lambda_min, params)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_hom(self)
        if self.b1 * self.b1 + 4.0 * self.b2 < 0:
            raise ValueError(
                f"`b2` must satisfy b1^2 + 4 b2 >= 0 for the notebook's cascade (its roots are "
                f"real), got b1={self.b1!r}, b2={self.b2!r}"
            )

    @property
    def roots(self) -> tuple[float, float]:
        disc = math.sqrt(self.b1 * self.b1 + 4.0 * self.b2)
        return 0.5 * (self.b1 + disc), 0.5 * (self.b1 - disc)

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.b1 == 0.0:  # the notebook's `if momentum != 0` branch is skipped: plain GD
            return np.diag([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])
        a, c = self.roots
        A = np.array([[1.0, a, c], [0.0, a, c], [0.0, 0.0, c]])
        if k == 1:
            return A, np.array([1.0, 1.0, 0.0])  # q is created as zeros at step 1
        return A, np.array([1.0, 1.0, 1.0])

    def ode(self) -> ODESpec:
        if self.b1 == 0.0:
            return ODESpec("flow", "lr")
        gamma = (1.0 - self.b1 - self.b2) / math.sqrt(self.lr)
        return ODESpec("oscillator", "sqrt_lr", gamma=gamma, mass=1.0 + self.b2)

    def max_stable_h(self) -> float:
        return 2.0 if self.b1 == 0.0 else _hom_max_h(self.b1, self.b2)
