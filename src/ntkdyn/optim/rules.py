"""Every optimizer described once, as data (conventions: ``ntkdyn.optim.base``).

GD, Heavy Ball, textbook and torch-style scheduled Nesterov, constant-momentum Nesterov, exact
and notebook higher-order momentum (each a register machine ``z_k = A_k z_{k-1} - lr b_k g``),
and Adam (nonlinear, declared so). ``parse`` builds any of them from a spec string.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from .base import LinearRule, ODESpec, Rule, _check_positive, _check_unit, _momentum_matrices

__all__ = [
    "GD",
    "RULES",
    "Adam",
    "HeavyBall",
    "HigherOrderMomentum",
    "HigherOrderMomentumNotebook",
    "LinearRule",
    "Nesterov",
    "NesterovSC",
    "NesterovTorch",
    "ODESpec",
    "Rule",
    "parse",
]


# --------------------------------------------------------------------------------------------
# The rules.


@dataclass(frozen=True)
class GD(LinearRule):
    """Gradient descent, ``x_{k+1} = x_k - lr g(x_k)``. Registers: (x)."""

    name: ClassVar[str] = "gd"
    registers: ClassVar[int] = 1

    def step_matrices(self, k):
        return np.ones((1, 1)), np.ones(1)

    def ode(self):
        return ODESpec("flow", "lr")

    def max_stable_h(self):
        return 2.0


@dataclass(frozen=True)
class HeavyBall(LinearRule):
    """Polyak's heavy ball, ``x_{k+1} = x_k - lr g_k + beta (x_k - x_{k-1})``, ``x_{-1} = x_0``.

    Identical to ``torch.optim.SGD(lr, momentum=beta)``. Registers: (x, d = x_k - x_{k-1}),
    ``d' = beta d - lr g``, ``x' = x + d'``. ODE: ``e'' + gamma e' + K e = 0`` with
    ``gamma = (1 - beta) / sqrt(lr)``, ``t = k sqrt(lr)`` (docs/mathematics.md 4).
    """

    beta: float = 0.9
    name: ClassVar[str] = "hb"
    registers: ClassVar[int] = 2

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "beta", _check_unit("beta", self.beta))

    def step_matrices(self, k):
        return _momentum_matrices(self.beta, 1.0, 1.0)

    def ode(self):
        return ODESpec("oscillator", "sqrt_lr", gamma=(1 - self.beta) / math.sqrt(self.lr))

    def max_stable_h(self):
        return 2.0 * (1.0 + self.beta)


def _nag_beta(k: int, r: float) -> float:
    return (k - 1) / (k + r - 1)


@dataclass(frozen=True)
class NesterovSC(LinearRule):
    """Nesterov with constant momentum beta (two-sequence; equal to torch's nesterov=True).

    ``x_k = y_{k-1} - lr g(y_{k-1})``, ``y_k = x_k + beta (x_k - x_{k-1})``; the model sees y.
    Registers (y, u = y_k - x_k): ``y' = y + beta u - lr (1 + beta) g``,
    ``u' = beta u - lr beta g``. ODE: the heavy-ball oscillator with gamma = (1-beta)/sqrt(lr).
    """

    beta: float = 0.9
    name: ClassVar[str] = "nesterov-sc"
    registers: ClassVar[int] = 2

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "beta", _check_unit("beta", self.beta))

    def step_matrices(self, k):
        return _momentum_matrices(self.beta, 1.0 + self.beta, self.beta)

    def ode(self):
        return ODESpec("oscillator", "sqrt_lr", gamma=(1 - self.beta) / math.sqrt(self.lr))

    def max_stable_h(self):
        return 2.0 * (1.0 + self.beta) / (1.0 + 2.0 * self.beta)


@dataclass(frozen=True)
class Nesterov(LinearRule):
    """Textbook two-sequence NAG with vanishing damping, ``beta_k = (k-1)/(k+r-1)``.

    Same registers as :class:`NesterovSC` with beta replaced by beta_k. Limiting ODE
    ``e'' + (r/t) e' + K e = 0`` (Bessel solution, sublinear ``t^-r``). At a fixed step it is
    eventually linear after ``k ~ r / h_0`` (docs/mathematics.md 3, 7.2).
    """

    r: float = 3.0
    name: ClassVar[str] = "nesterov"
    registers: ClassVar[int] = 2
    constant_from: ClassVar[int | None] = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "r", _check_positive("r", self.r))

    def step_matrices(self, k):
        beta = _nag_beta(k, self.r)
        return _momentum_matrices(beta, 1.0 + beta, beta)

    def schedule(self, steps):
        beta = _nag_beta(np.arange(1, steps + 1, dtype=np.float64), self.r)
        A = np.zeros((steps, 2, 2))
        A[:, 0, 0] = 1.0
        A[:, 0, 1] = A[:, 1, 1] = beta
        return A, np.stack([1.0 + beta, beta], axis=1)

    def ode(self):
        return ODESpec("bessel", "sqrt_lr", r=self.r)

    def max_stable_h(self):
        return 4.0 / 3.0  # asymptotic, beta_k -> 1


@dataclass(frozen=True)
class NesterovTorch(LinearRule):
    """``torch.optim.SGD(nesterov=True)`` with ``mu_k = (k-1)/(k+r-1)`` set before step k.

    torch: ``buf_k = mu_k buf_{k-1} + g`` (created at the first step with mu != 0),
    ``p_k = p_{k-1} - lr (g + mu_k buf_k)``; with mu_k = 0 the buffer is left untouched.
    Registers (p, B = -lr buf): ``p' = p + mu^2 B - lr (1 + mu) g``, ``B' = mu B - lr g``
    (identity on B when mu = 0). Same ODE limit as :class:`Nesterov`.
    """

    r: float = 3.0
    name: ClassVar[str] = "nesterov-torch"
    registers: ClassVar[int] = 2
    constant_from: ClassVar[int | None] = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "r", _check_positive("r", self.r))

    def momentum(self, k: int) -> float:
        """The value written into ``param_groups[...]['momentum']`` before step k."""
        return _nag_beta(k, self.r)

    def step_matrices(self, k):
        mu = self.momentum(k)
        if mu == 0.0:
            return np.eye(2), np.array([1.0, 0.0])
        return np.array([[1.0, mu * mu], [0.0, mu]]), np.array([1.0 + mu, 1.0])

    def schedule(self, steps):
        mu = _nag_beta(np.arange(1, steps + 1, dtype=np.float64), self.r)
        A = np.zeros((steps, 2, 2))
        A[:, 0, 0] = 1.0
        A[:, 0, 1] = mu * mu
        A[:, 1, 1] = np.where(mu == 0.0, 1.0, mu)
        b = np.stack([1.0 + mu, np.where(mu == 0.0, 0.0, 1.0)], axis=1)
        return A, b

    def ode(self):
        return ODESpec("bessel", "sqrt_lr", r=self.r)

    def max_stable_h(self):
        return 4.0 / 3.0


def _hom_max_h(b1: float, b2: float) -> float:
    bound = 2.0 * (1.0 + b1 - b2)
    if b2 < 0:
        bound = min(bound, (1.0 + b2) * (1.0 - b1 - b2) / abs(b2))
    return bound


def _check_hom(rule) -> None:
    object.__setattr__(rule, "b1", _check_unit("b1", rule.b1))
    object.__setattr__(rule, "b2", _check_unit("b2", rule.b2, low=-1.0, closed_low=False))
    if rule.b1 + rule.b2 >= 1.0:
        warnings.warn(
            f"b1 + b2 = {rule.b1 + rule.b2:g} >= 1: higher-order momentum has no linear rate "
            "guarantee here and may diverge",
            RuntimeWarning,
            stacklevel=4,
        )


@dataclass(frozen=True)
class HigherOrderMomentum(LinearRule):
    """Exact higher-order momentum (docs/mathematics.md 2):
    ``x_{k+1} = x_k - lr g_k + b1 (x_k - x_{k-1}) + b2 (x_{k-1} - x_{k-2})``,
    ``x_{-1} = x_{-2} = x_0``. Registers (x, d_k, d_{k-1}) with ``d_k = x_k - x_{k-1}``.
    ODE (with b1 + b2 = 1 - gamma sqrt(lr)): ``(1 + b2) e'' + gamma e' + K e = 0``.
    """

    b1: float = 0.6
    b2: float = 0.2
    name: ClassVar[str] = "hom"
    registers: ClassVar[int] = 3

    def __post_init__(self):
        super().__post_init__()
        _check_hom(self)

    def step_matrices(self, k):
        b1, b2 = self.b1, self.b2
        A = np.array([[1.0, b1, b2], [0.0, b1, b2], [0.0, 1.0, 0.0]])
        return A, np.array([1.0, 1.0, 0.0])

    def ode(self):
        gamma = (1.0 - self.b1 - self.b2) / math.sqrt(self.lr)
        return ODESpec("oscillator", "sqrt_lr", gamma=gamma, mass=1.0 + self.b2)

    def max_stable_h(self):
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
    registers: ClassVar[int] = 3
    constant_from: ClassVar[int | None] = 2

    def __post_init__(self):
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

    def step_matrices(self, k):
        if self.b1 == 0.0:  # the notebook's `if momentum != 0` branch is skipped: plain GD
            return np.diag([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])
        a, c = self.roots
        A = np.array([[1.0, a, c], [0.0, a, c], [0.0, 0.0, c]])
        if k == 1:
            return A, np.array([1.0, 1.0, 0.0])  # q is created as zeros at step 1
        return A, np.array([1.0, 1.0, 1.0])

    def ode(self):
        if self.b1 == 0.0:
            return ODESpec("flow", "lr")
        gamma = (1.0 - self.b1 - self.b2) / math.sqrt(self.lr)
        return ODESpec("oscillator", "sqrt_lr", gamma=gamma, mass=1.0 + self.b2)

    def max_stable_h(self):
        return 2.0 if self.b1 == 0.0 else _hom_max_h(self.b1, self.b2)


@dataclass(frozen=True)
class Adam(Rule):
    """torch.optim.Adam, for comparison only: it has no linear description, so no per-mode
    recurrence, ODE or stability limit (those views are None)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name: ClassVar[str] = "adam"
    is_linear: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "beta1", _check_unit("beta1", self.beta1))
        object.__setattr__(self, "beta2", _check_unit("beta2", self.beta2))
        object.__setattr__(self, "eps", _check_positive("eps", self.eps))


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
    )
}


def parse(spec: str | Rule) -> Rule:
    """Build a rule from a spec such as ``"hb:lr=0.1,beta=0.9"`` (a Rule passes through).

    Names: gd, hb, nesterov, nesterov-torch, nesterov-sc, hom, hom-notebook, adam.
    Every key must belong to the rule; ``lr`` is required. Raises ValueError naming the field.
    """
    if isinstance(spec, Rule):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"`optimizer` must be a spec like 'hb:lr=0.1,beta=0.9', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in RULES:
        raise ValueError(f"`optimizer` name {name!r} is unknown; choose one of {sorted(RULES)}")
    cls = RULES[name]
    allowed = ["lr"] + [f.name for f in fields(cls) if f.name != "lr"]
    kwargs: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"`optimizer` item {item!r} in {spec!r} must look like key=value")
        if key not in allowed:
            raise ValueError(f"`{key}` is not a parameter of {name}; allowed keys: {allowed}")
        if key in kwargs:
            raise ValueError(f"`{key}` is given twice in {spec!r}")
        try:
            kwargs[key] = float(value)
        except ValueError:
            raise ValueError(f"`{key}` must be a number, got {value.strip()!r}") from None
    if "lr" not in kwargs:
        raise ValueError(f"`lr` is required in optimizer spec {spec!r}")
    return cls(**kwargs)
