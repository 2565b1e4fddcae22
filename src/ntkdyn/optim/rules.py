"""Every optimizer described once, as data.

Conventions (MATH.md sections 0 and 2; stated here once and tested against torch.optim):

* A linear rule is a *register machine*. Its state is ``z = (z_0, z_1, ..., z_{s-1})``:
  register 0 holds the parameters the model sees (the point where the gradient is taken and
  the loss is reported), the other registers are displacement-like buffers that start at 0.
  Step ``k = 1, 2, ...`` is

      z_k = A_k z_{k-1} - lr * b_k * g(z_{k-1, 0})

  with ``A_k[0, 0] = 1`` and ``A_k[r, 0] = 0`` for ``r >= 1`` (updates are increments, so no
  register ever stores a second copy of the parameters; this keeps float32 training exact).
* On the quadratic ``F(e) = 1/2 e^T K e`` each eigenmode with ``h = lr * lambda_j(K)`` evolves
  by the per-mode matrix ``M_k(h) = A_k - h b_k e_0^T`` (MATH.md 3). The torch optimizer, the
  training engine, the discrete predictor and the stability analysis are all derived from
  ``(A_k, b_k)``; the limiting ODE and closed-form stability limits are declared per family.
* Step counting starts at ``k = 1``. Scheduled Nesterov uses ``beta_k = (k - 1) / (k + r - 1)``,
  so ``beta_1 = 0`` (the first step is a gradient step).
* ``nesterov`` is the textbook two-sequence NAG (Su, Boyd, Candes). ``nesterov-torch`` is
  ``torch.optim.SGD(nesterov=True)`` with ``mu_k`` written into the param group before step k:
  a *different* algorithm when mu varies (extrapolation coefficient ``mu_k^2 / mu_{k-1}``).
* Time: GD's ODE time is ``t = k lr``; every momentum method uses ``t = k sqrt(lr)``.
* Adam has no linear description: ``is_linear`` is False and the linear views are absent.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

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
# Validation helpers (boundary checks with messages that name the field).


def _check_lr(lr: float) -> float:
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"`lr` must be a positive number, got {lr!r}") from None
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"`lr` must be a finite number > 0, got {lr!r}")
    return lr


def _check_unit(name: str, value: float, *, low: float = 0.0, closed_low: bool = True) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number in [{low:g}, 1), got {value!r}") from None
    ok_low = value >= low if closed_low else value > low
    if not math.isfinite(value) or not ok_low or value >= 1:
        bracket = "[" if closed_low else "("
        raise ValueError(f"`{name}` must lie in {bracket}{low:g}, 1), got {value!r}")
    return value


def _check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Base classes.


@dataclass(frozen=True)
class Rule:
    """An optimizer with a learning rate. Abstract: use one of the final subclasses."""

    lr: float
    name: ClassVar[str] = ""
    is_linear: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _check_lr(self.lr))

    @property
    def params(self) -> dict[str, float]:
        """Hyperparameters other than lr, as a plain dict (for records and specs)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lr"}

    @property
    def spec(self) -> str:
        """Canonical spec string; ``parse(rule.spec) == rule``."""
        parts = [f"lr={self.lr!r}"] + [f"{k}={v!r}" for k, v in self.params.items()]
        return f"{self.name}:" + ",".join(parts)

    def with_lr(self, lr: float) -> Rule:
        """The same rule with another learning rate."""
        return type(self)(lr, **self.params)

    def torch(self, params, **kwargs):
        """A ``torch.optim.Optimizer`` whose plain ``step()`` calls give this rule's iterates."""
        from .torch import make_optimizer

        return make_optimizer(self, params, **kwargs)

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

    def schedule(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` for steps 1..steps stacked: shapes (steps, s, s) and (steps, s)."""
        s = self.registers
        A = np.empty((steps, s, s))
        b = np.empty((steps, s))
        for k in range(1, steps + 1):
            A[k - 1], b[k - 1] = self.step_matrices(k)
        return A, b

    def mode_matrix(self, k: int, h) -> np.ndarray:
        """Per-mode matrices ``M_k(h) = A_k - h b_k e_0^T`` for an array of h: (..., s, s)."""
        A, b = self.step_matrices(k)
        h = np.asarray(h, dtype=np.float64)
        M = np.broadcast_to(A, h.shape + A.shape).copy()
        M[..., :, 0] -= h[..., None] * b
        return M


def _momentum_matrices(beta: float, b0: float, b1: float):
    A = np.array([[1.0, beta], [0.0, beta]])
    return A, np.array([b0, b1])


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
    ``gamma = (1 - beta) / sqrt(lr)``, ``t = k sqrt(lr)`` (MATH.md 4).
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
    eventually linear after ``k ~ r / h_0`` (MATH.md 3, 7.2).
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
    """Exact higher-order momentum (MATH.md 2):
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
