"""The form every optimizer is described in: a rule with a learning rate; a register machine.

Conventions (docs/mathematics.md sections 0 and 2; stated here once and tested against torch.optim):

* A linear rule is a *register machine* (docs/mathematics.md §2): register 0 holds the
  parameters the model sees (where the gradient is taken and the loss reported), the others are
  displacement-like buffers starting at 0, and step ``k = 1, 2, ...`` is
  ``z_k = A_k z_{k-1} - lr * b_k * g(z_{k-1, 0})`` with ``A_k[0, 0] = 1`` and ``A_k[r, 0] = 0``
  for ``r >= 1`` (updates are increments, no second copy of the parameters: float32 stays exact).
* Per eigenmode of ``F(e) = 1/2 e^T K e`` a step is ``M_k(h) = A_k - h b_k e_0^T`` with
  ``h = lr * lambda_j(K)`` (docs/mathematics.md §3). The torch optimizer, the training engine,
  the discrete predictor and the stability analysis all derive from ``(A_k, b_k)``; the limiting
  ODE and closed-form stability limits are declared per family.
* Step counting starts at ``k = 1``. Scheduled Nesterov uses ``beta_k = (k - 1) / (k + r - 1)``,
  so ``beta_1 = 0`` (the first step is a gradient step).
* ``nesterov`` is the textbook two-sequence NAG (Su, Boyd, Candes). ``nesterov-torch`` is
  ``torch.optim.SGD(nesterov=True)`` with ``mu_k`` written into the param group before step k:
  a *different* algorithm when mu varies (extrapolation coefficient ``mu_k^2 / mu_{k-1}``).
* Time: GD's ODE time is ``t = k lr``; every momentum method uses ``t = k sqrt(lr)``.
* Adam and RMSprop have no linear description: ``is_linear`` is False and the linear views
  are absent.

What the rest of the package asks of an optimizer is declared here, per rule class, never
recognised from its name: its :class:`Family`, the parameter a data-driven ``"critical"`` value
sets (``critical_key``, with ``critical_value``), the momentum or damping parameter the report
groups runs by (``momentum_key``), the closed-form stability limit as printed
(``stable_limit_formula``, the value being ``max_stable_h()``) and its torch optimizer
(``torch(params)``). The register update itself is interpreted in one place, ``optim.program``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from .._validate import finite_number

if TYPE_CHECKING:  # annotations only
    import torch

__all__ = ["Family", "LinearRule", "ODESpec", "Rule"]

_R = TypeVar("_R", bound="Rule")


class Family(str, Enum):
    """The kinds of optimizer the report and the experiments tell apart.

    * ``GD``: gradient descent.
    * ``HEAVY_BALL``: Polyak's heavy ball (constant momentum ``beta``).
    * ``NESTEROV_CONSTANT``: Nesterov with constant momentum ``beta`` (NAG-SC).
    * ``NESTEROV_SCHEDULED``: Nesterov with vanishing damping ``beta_k = (k-1)/(k+r-1)``, the
      textbook and the torch variant alike (limiting ODE of kind "bessel").
    * ``HIGHER_ORDER``: higher-order momentum ``(b1, b2)``, exact and notebook variant.
    * ``ADAM``: Adam (nonlinear).
    * ``RMSPROP``: RMSprop (nonlinear).
    """

    GD = "gd"
    HEAVY_BALL = "heavy-ball"
    NESTEROV_CONSTANT = "nesterov-constant"
    NESTEROV_SCHEDULED = "nesterov-scheduled"
    HIGHER_ORDER = "higher-order"
    ADAM = "adam"
    RMSPROP = "rmsprop"


# --------------------------------------------------------------------------------------------
# Limiting ODE descriptions (what ``dynamics.ode`` solves). Frozen records, no behaviour.


@dataclass(frozen=True)
class ODESpec:
    """The limiting ODE of a rule, per eigenmode ``lambda`` of K.

    kind "flow":        e' = -K e,                              time t = k * lr
    kind "oscillator":  mass e'' + gamma e' + K e = 0,          time t = k * sqrt(lr)
    kind "bessel":      e'' + (r / t) e' + K e = 0,             time t = k * sqrt(lr)
    All start from e(0) = e0, e'(0) = 0.
    """

    kind: str
    time_scale: str  # "lr" or "sqrt_lr"
    gamma: float = 0.0
    mass: float = 1.0
    r: float = 0.0

    def times(self, lr: float, steps: np.ndarray) -> np.ndarray:
        """ODE time of step indices ``steps`` for learning rate ``lr``."""
        scale = lr if self.time_scale == "lr" else math.sqrt(lr)
        return np.asarray(steps, dtype=np.float64) * scale


# --------------------------------------------------------------------------------------------
# Base classes.


@dataclass(frozen=True)
class Rule:
    """An optimizer with a learning rate. Abstract: use one of the final subclasses."""

    lr: float
    name: ClassVar[str] = ""
    family: ClassVar[Family]
    is_linear: ClassVar[bool] = False
    #: The parameter a data-driven ``"critical"`` value sets (None: no such parameter).
    critical_key: ClassVar[str | None] = None
    #: The momentum (``beta``) or damping (``r``) parameter runs are grouped by, if one.
    momentum_key: ClassVar[str | None] = None
    #: ``max_stable_h()`` in closed form as printed in reports (None: none declared).
    stable_limit_formula: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", finite_number("lr", self.lr))

    @property
    def params(self) -> dict[str, float]:
        """Hyperparameters other than lr, as a plain dict (for records and specs)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lr"}

    @property
    def spec(self) -> str:
        """Canonical spec string; ``parse(rule.spec) == rule``."""
        parts = [f"lr={self.lr!r}"] + [f"{k}={v!r}" for k, v in self.params.items()]
        return f"{self.name}:" + ",".join(parts)

    def with_lr(self: _R, lr: float) -> _R:
        """The same rule with another learning rate."""
        return type(self)(lr, **self.params)

    def torch(self, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
        """A ``torch.optim.Optimizer`` whose plain ``step()`` calls give this rule's iterates."""
        raise NotImplementedError

    @classmethod
    def critical_value(cls, lambda_min: float, params: Mapping[str, float]) -> float:
        """The value of ``critical_key`` at critical damping of the slowest mode
        (docs/mathematics.md §4, 6), given ``lambda_min`` of K and the other parameters
        (``lr`` included); unrounded. ValueError for a rule without ``critical_key``."""
        if cls.critical_key is None:
            raise ValueError(f"{cls.name} has no parameter that 'critical' sets")
        return _critical_beta(lambda_min, params["lr"])

    # Views that a nonlinear rule lacks (declared, not probed).
    def ode(self) -> ODESpec | None:
        return None

    def max_stable_h(self) -> float | None:
        """Largest stable ``h = lr * lambda_max(K)`` (closed form), or None if unknown."""
        return None


@dataclass(frozen=True)
class LinearRule(Rule):
    """A rule that is a register machine ``z_k = A_k z_{k-1} - lr b_k g`` (module docstring)."""

    is_linear: ClassVar[bool] = True
    registers: ClassVar[int] = 1
    #: first step from which (A_k, b_k) no longer depend on k; None if they always do.
    constant_from: ClassVar[int | None] = 1

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A_k, b_k)`` for step ``k >= 1``: float64 arrays of shapes (s, s) and (s,)."""
        raise NotImplementedError

    def torch(self, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
        """The register machine on real parameters (``optim.torch.RuleOptimizer``)."""
        from .torch import RuleOptimizer  # torch is imported only when asked for

        if kwargs:
            raise ValueError(f"unexpected options for {self.name}: {sorted(kwargs)}")
        return RuleOptimizer(params, self)

    def schedule(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` for steps 1..steps stacked: shapes (steps, s, s) and (steps, s)."""
        s = self.registers
        A = np.empty((steps, s, s))
        b = np.empty((steps, s))
        for k in range(1, steps + 1):
            A[k - 1], b[k - 1] = self.step_matrices(k)
        return A, b

    def mode_matrix(self, k: int, h: float | np.ndarray) -> np.ndarray:
        """Per-mode matrices ``M_k(h) = A_k - h b_k e_0^T`` for an array of h: (..., s, s)."""
        A, b = self.step_matrices(k)
        h = np.asarray(h, dtype=np.float64)
        M = np.broadcast_to(A, h.shape + A.shape).copy()
        M[..., :, 0] -= h[..., None] * b
        return M


def _critical_beta(lambda_min: float, lr: float) -> float:
    """``1 - 2 sqrt(lambda_min lr)``: critical damping of the slowest mode (docs/mathematics.md §4)."""
    return 1.0 - 2.0 * math.sqrt(max(lambda_min, 0.0) * lr)


def _momentum_matrices(beta: float, b0: float, b1: float) -> tuple[np.ndarray, np.ndarray]:
    A = np.array([[1.0, beta], [0.0, beta]])
    return A, np.array([b0, b1])
