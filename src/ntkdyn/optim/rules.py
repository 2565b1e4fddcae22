"""Every optimizer described once, as data (conventions: ``ntkdyn.optim.base``).

GD, Heavy Ball, textbook and torch-style scheduled Nesterov, constant-momentum Nesterov, exact
and notebook higher-order momentum (each a register machine ``z_k = A_k z_{k-1} - lr b_k g``;
the last two in ``higher_order.py``), and Adam and RMSprop (nonlinear, declared so). ``RULES`` registers
them all, ``parse`` builds any of them from a spec string (the grammar of ``ntkdyn.specs``)
and ``rules_of`` lists the rule classes of a :class:`Family`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from .._validate import finite_number, unit_interval
from ..specs import parse_spec
from .base import (
    Family,
    LinearRule,
    ODESpec,
    Rule,
    _momentum_matrices,
)
from .higher_order import HigherOrderMomentum, HigherOrderMomentumNotebook

if TYPE_CHECKING:  # annotations only
    import torch

# The rules defined here; the package (ntkdyn.optim) re-exports them with the conventions.
__all__ = [
    "GD",
    "NO_KERNEL_PREDICTION",
    "RULES",
    "SPEC_EXAMPLE",
    "Adam",
    "HeavyBall",
    "Nesterov",
    "NesterovSC",
    "NesterovTorch",
    "RMSprop",
    "parse",
    "rules_of",
]


#: What every library, CLI and report view says of a rule without a kernel prediction (Adam,
#: RMSprop): its curve is measured and its rate fitted, nothing is predicted
#: (docs/adaptive.md; Adam's late phase has its own windowed prediction, ``ntkdyn.adaptive``).
NO_KERNEL_PREDICTION = "no kernel prediction (adaptive rule)"


# --------------------------------------------------------------------------------------------
# The rules.


@dataclass(frozen=True)
class GD(LinearRule):
    """Gradient descent, ``x_{k+1} = x_k - lr g(x_k)``. Registers: (x)."""

    name: ClassVar[str] = "gd"
    family: ClassVar[Family] = Family.GD
    registers: ClassVar[int] = 1
    stable_limit_formula: ClassVar[str | None] = "2"

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.ones((1, 1)), np.ones(1)

    def ode(self) -> ODESpec:
        return ODESpec("flow", "lr")

    def max_stable_h(self) -> float:
        return 2.0


@dataclass(frozen=True)
class _ConstantMomentum(LinearRule):
    """A two-register rule with constant momentum ``beta`` in [0, 1) whose limiting ODE is the
    damped oscillator ``e'' + gamma e' + K e = 0``, ``gamma = (1 - beta) / sqrt(lr)``."""

    beta: float = 0.9
    registers: ClassVar[int] = 2
    critical_key: ClassVar[str | None] = "beta"
    momentum_key: ClassVar[str | None] = "beta"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "beta", unit_interval("beta", self.beta))

    def ode(self) -> ODESpec:
        return ODESpec("oscillator", "sqrt_lr", gamma=(1 - self.beta) / math.sqrt(self.lr))


@dataclass(frozen=True)
class HeavyBall(_ConstantMomentum):
    """Polyak's heavy ball, ``x_{k+1} = x_k - lr g_k + beta (x_k - x_{k-1})``, ``x_{-1} = x_0``.

    Identical to ``torch.optim.SGD(lr, momentum=beta)``. Registers: (x, d = x_k - x_{k-1}),
    ``d' = beta d - lr g``, ``x' = x + d'``. ODE: ``e'' + gamma e' + K e = 0`` with
    ``gamma = (1 - beta) / sqrt(lr)``, ``t = k sqrt(lr)`` (docs/mathematics.md §4).
    """

    name: ClassVar[str] = "hb"
    family: ClassVar[Family] = Family.HEAVY_BALL
    stable_limit_formula: ClassVar[str | None] = "2(1 + beta)"

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _momentum_matrices(self.beta, 1.0, 1.0)

    def max_stable_h(self) -> float:
        return 2.0 * (1.0 + self.beta)


_Step = TypeVar("_Step", float, np.ndarray)  # one step, or a vector of steps


def _nag_beta(k: _Step, r: float) -> _Step:
    return (k - 1) / (k + r - 1)


@dataclass(frozen=True)
class NesterovSC(_ConstantMomentum):
    """Nesterov with constant momentum beta (two-sequence; equal to torch's nesterov=True).

    ``x_k = y_{k-1} - lr g(y_{k-1})``, ``y_k = x_k + beta (x_k - x_{k-1})``; the model sees y.
    Registers (y, u = y_k - x_k): ``y' = y + beta u - lr (1 + beta) g``,
    ``u' = beta u - lr beta g``. ODE: the heavy-ball oscillator with gamma = (1-beta)/sqrt(lr).
    """

    name: ClassVar[str] = "nesterov-sc"
    family: ClassVar[Family] = Family.NESTEROV_CONSTANT
    stable_limit_formula: ClassVar[str | None] = "2(1 + beta)/(1 + 2 beta)"

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _momentum_matrices(self.beta, 1.0 + self.beta, self.beta)

    def max_stable_h(self) -> float:
        return 2.0 * (1.0 + self.beta) / (1.0 + 2.0 * self.beta)


@dataclass(frozen=True)
class _ScheduledNesterov(LinearRule):
    """A two-register Nesterov rule with momentum ``(k-1)/(k+r-1)`` at step k (damping ``r > 0``),
    whose limiting ODE is ``e'' + (r/t) e' + K e = 0`` (Bessel solution)."""

    r: float = 3.0
    family: ClassVar[Family] = Family.NESTEROV_SCHEDULED
    registers: ClassVar[int] = 2
    constant_from: ClassVar[int | None] = None
    momentum_key: ClassVar[str | None] = "r"
    stable_limit_formula: ClassVar[str | None] = "4/3"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "r", finite_number("r", self.r))

    def ode(self) -> ODESpec:
        return ODESpec("bessel", "sqrt_lr", r=self.r)

    def max_stable_h(self) -> float:
        return 4.0 / 3.0  # asymptotic, beta_k -> 1


@dataclass(frozen=True)
class Nesterov(_ScheduledNesterov):
    """Textbook two-sequence NAG with vanishing damping, ``beta_k = (k-1)/(k+r-1)``.

    Same registers as :class:`NesterovSC` with beta replaced by beta_k. Limiting ODE
    ``e'' + (r/t) e' + K e = 0`` (Bessel solution, sublinear ``t^-r``). At a fixed step it is
    eventually linear after ``k ~ r / h_0`` (docs/mathematics.md §3, 7.2).
    """

    name: ClassVar[str] = "nesterov"

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        beta = _nag_beta(k, self.r)
        return _momentum_matrices(beta, 1.0 + beta, beta)

    def schedule(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        beta = _nag_beta(np.arange(1, steps + 1, dtype=np.float64), self.r)
        A = np.zeros((steps, 2, 2))
        A[:, 0, 0] = 1.0
        A[:, 0, 1] = A[:, 1, 1] = beta
        return A, np.stack([1.0 + beta, beta], axis=1)


@dataclass(frozen=True)
class NesterovTorch(_ScheduledNesterov):
    """``torch.optim.SGD(nesterov=True)`` with ``mu_k = (k-1)/(k+r-1)`` set before step k.

    torch: ``buf_k = mu_k buf_{k-1} + g`` (created at the first step with mu != 0),
    ``p_k = p_{k-1} - lr (g + mu_k buf_k)``; with mu_k = 0 the buffer is left untouched.
    Registers (p, B = -lr buf): ``p' = p + mu^2 B - lr (1 + mu) g``, ``B' = mu B - lr g``
    (identity on B when mu = 0). Same ODE limit as :class:`Nesterov`.
    """

    name: ClassVar[str] = "nesterov-torch"

    def momentum(self, k: int) -> float:
        """The value written into ``param_groups[...]['momentum']`` before step k."""
        return _nag_beta(k, self.r)

    def step_matrices(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        mu = self.momentum(k)
        if mu == 0.0:
            return np.eye(2), np.array([1.0, 0.0])
        return np.array([[1.0, mu * mu], [0.0, mu]]), np.array([1.0 + mu, 1.0])

    def schedule(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        mu = _nag_beta(np.arange(1, steps + 1, dtype=np.float64), self.r)
        A = np.zeros((steps, 2, 2))
        A[:, 0, 0] = 1.0
        A[:, 0, 1] = mu * mu
        A[:, 1, 1] = np.where(mu == 0.0, 1.0, mu)
        b = np.stack([1.0 + mu, np.where(mu == 0.0, 0.0, 1.0)], axis=1)
        return A, b


@dataclass(frozen=True)
class Adam(Rule):
    """torch.optim.Adam, for comparison only: it has no linear description, so no per-mode
    recurrence, ODE or stability limit (those views are None)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name: ClassVar[str] = "adam"
    family: ClassVar[Family] = Family.ADAM
    is_linear: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "beta1", unit_interval("beta1", self.beta1))
        object.__setattr__(self, "beta2", unit_interval("beta2", self.beta2))
        object.__setattr__(self, "eps", finite_number("eps", self.eps))

    def torch(self, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
        """``torch.optim.Adam`` with this rule's lr, betas and eps (``kwargs`` passed on)."""
        import torch  # only when asked for

        return torch.optim.Adam(
            params, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps, **kwargs
        )


@dataclass(frozen=True)
class RMSprop(Rule):
    """torch.optim.RMSprop (not centered, no weight decay), for comparison only: like
    :class:`Adam` it has no linear description (those views are None).

    ``v <- alpha v + (1 - alpha) g^2``, ``buf <- momentum buf + g / (sqrt(v) + eps)``,
    ``p <- p - lr buf`` (with ``momentum = 0``: ``p <- p - lr g / (sqrt(v) + eps)``).
    """

    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    name: ClassVar[str] = "rmsprop"
    family: ClassVar[Family] = Family.RMSPROP
    is_linear: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "alpha", unit_interval("alpha", self.alpha))
        object.__setattr__(self, "eps", finite_number("eps", self.eps))
        object.__setattr__(self, "momentum", unit_interval("momentum", self.momentum))

    def torch(self, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
        """``torch.optim.RMSprop`` with this rule's lr, alpha, eps and momentum."""
        import torch  # only when asked for

        return torch.optim.RMSprop(
            params, lr=self.lr, alpha=self.alpha, eps=self.eps, momentum=self.momentum, **kwargs
        )


# --------------------------------------------------------------------------------------------
# Registry and spec parsing (the edge).

RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (
        GD,
        HeavyBall,
        Nesterov,
        NesterovTorch,
        NesterovSC,
        HigherOrderMomentum,
        HigherOrderMomentumNotebook,
        Adam,
        RMSprop,
    )
}


#: A valid spec, shown in messages about malformed ones.
SPEC_EXAMPLE = "hb:lr=0.1,beta=0.9"


def rules_of(family: Family) -> tuple[type[Rule], ...]:
    """The registered rule classes of ``family``, in registry order."""
    return tuple(cls for cls in RULES.values() if cls.family is family)


def parse(spec: str | Rule) -> Rule:
    """Build a rule from a spec such as ``"hb:lr=0.1,beta=0.9"`` (a Rule passes through).

    Names: gd, hb, nesterov, nesterov-torch, nesterov-sc, hom, hom-notebook, adam, rmsprop.
    Every key must belong to the rule; ``lr`` is required. Raises ValueError naming the field.

    Examples:
        >>> from ntkdyn import parse
        >>> rule = parse("hb:lr=0.1,beta=0.9")
        >>> rule
        HeavyBall(lr=0.1, beta=0.9)
        >>> rule.spec, rule.family.name
        ('hb:lr=0.1,beta=0.9', 'HEAVY_BALL')
        >>> parse("hb:lr=0.1,bta=0.9")
        Traceback (most recent call last):
            ...
        ValueError: `bta` is not a parameter of hb; allowed keys: ['lr', 'beta']
    """
    if isinstance(spec, Rule):
        return spec
    parsed = parse_spec(spec, field="optimizer", example=SPEC_EXAMPLE, names=RULES)
    cls = RULES[parsed.name]
    allowed = ["lr"] + [f.name for f in fields(cls) if f.name != "lr"]
    kwargs: dict[str, float] = {}
    for key, value in parsed.options(allowed, noun="a parameter").items():
        try:
            kwargs[key] = float(value)
        except ValueError:
            raise ValueError(f"`{key}` must be a number, got {value!r}") from None
    if "lr" not in kwargs:
        raise ValueError(f"`lr` is required in optimizer spec {parsed.text!r}")
    return cls(**kwargs)
