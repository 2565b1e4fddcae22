"""Stable learning rates, optimal parameters and the NAG-C crossover on the kernel quadratic.

Every eigenmode of ``K`` (effective kernel, ``K = c H``; docs/mathematics.md §0) with ``h = lr lambda``
evolves by ``M_k(h) = A_k - h b_k e_0^T`` (docs/mathematics.md §3). A rule with constant matrices is stable
on ``K`` iff the spectral radius ``rho(M(h)) < 1`` for every ``h_j = lr lambda_j``; the stable
set is ``0 < h < h*`` with ``h*`` declared in closed form by the rule (``rule.max_stable_h()``,
the docs/mathematics.md §3 table), so the largest stable learning rate is ``h* / lambda_max(K)``. Rules that
declare no closed form get ``h*`` by bisection on ``rho``. For vanishing-damping Nesterov the
matrices depend on ``k``; its bound ``h < 4/3`` is the ``beta_k -> 1`` limit.

Optimal constant parameters of the kernel (:func:`optimal_parameters`; ``kappa = lambda_max /
lambda_min``; rates are per-step contraction factors of the error, the loss contracts by their
square):

    GD:  lr = 2 / (lambda_max + lambda_min),        rho = (kappa - 1) / (kappa + 1)
    HB:  lr = 4 / (sqrt(lambda_max) + sqrt(lambda_min))^2,
         beta = ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^2,   rho = sqrt(beta).

Vanishing-damping NAG at a fixed step is eventually linear (docs/mathematics.md §3, 7.2): the ``t^-r`` phase
ends near ``k_x = r / h_0`` (``h_0 = lr lambda_min``), where the slowest mode's loss has fallen
to ``L/L_0 ~ A_r^2 e^-r (sqrt(h_0) / r)^r`` (``A_r = Gamma(nu+1) 2^nu sqrt(2/pi)``,
``nu = (r-1)/2``), relative to that mode's own initial loss (unit ``xi_0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from .._validate import integer
from ..conventions import LATE_STEP
from ..kernels import Spectrum, spectrum
from ..optim.rules import (
    GD,
    HeavyBall,
    HigherOrderMomentum,
    LinearRule,
    Nesterov,
    NesterovSC,
    NesterovTorch,
)
from .discrete import _check_rule

__all__ = [
    "OptimalParameters",
    "StabilityReport",
    "StabilityRow",
    "max_stable_h_numeric",
    "optimal_parameters",
    "spectral_radius",
    "stability",
    "stability_table",
]

#: Bisection on the spectral radius stops at this relative bracket width.
BISECT_RTOL = 1e-15
#: Resolution and reach of the scan that finds the first unstable h before bisecting.
_SCAN_POINTS = 4096
_SCAN_FIRST_SPAN = 16.0
_SCAN_MAX_H = 1e6


@dataclass(frozen=True)
class StabilityReport:
    """Stability of one rule on one kernel (the kernel's optimal parameters:
    :func:`optimal_parameters`).

    Attributes:
        rule: spec of the rule analysed.
        lambda_min, lambda_max, condition: extreme eigenvalues of K and ``kappa`` (inf if
            ``lambda_min = 0``).
        lr, h_min, h_max: the rule's learning rate and ``lr * lambda_min``, ``lr * lambda_max``.
        max_stable_h: largest stable ``h`` (``rule.max_stable_h()`` or bisection).
        max_stable_lr: ``max_stable_h / lambda_max``.
        bound: "closed form" or "numeric" (bisection on the spectral radius).
        asymptotic: True for step-dependent rules, whose bound is the ``k -> infinity`` limit.
        stable: ``h_max < max_stable_h``.
        crossover_step: NAG-C only (``ode().kind == "bessel"``), ``r / h_0``; else None.
        crossover_loss: NAG-C only, the slowest mode's ``L/L_0`` at the crossover; else None.
    """

    rule: str
    lambda_min: float
    lambda_max: float
    condition: float
    lr: float
    h_min: float
    h_max: float
    max_stable_h: float
    max_stable_lr: float
    bound: str
    asymptotic: bool
    stable: bool
    crossover_step: float | None = None
    crossover_loss: float | None = None


@dataclass(frozen=True)
class OptimalParameters:
    """The kernel's optimal constant GD and heavy-ball parameters (module docstring).

    Attributes:
        lambda_min, lambda_max, condition: extreme eigenvalues of K and ``kappa`` (inf if
            ``lambda_min = 0``).
        gd_lr, gd_rate: optimal GD step ``2 / (lambda_max + lambda_min)`` and its contraction
            ``(kappa-1)/(kappa+1)``.
        hb_lr, hb_beta, hb_rate: optimal heavy-ball pair and its contraction
            ``(sqrt kappa - 1)/(sqrt kappa + 1)``.
    """

    lambda_min: float
    lambda_max: float
    condition: float
    gd_lr: float
    gd_rate: float
    hb_lr: float
    hb_beta: float
    hb_rate: float


@dataclass(frozen=True)
class StabilityRow:
    """One line of :func:`stability_table`: a rule family's largest stable step on K."""

    label: str
    rule: str
    max_stable_h: float
    max_stable_lr: float
    bound: str


# --------------------------------------------------------------------------------------------
# Spectral radius and bisection.


def _matrix_step(rule: LinearRule, k: int | None) -> int:
    if k is None:
        if rule.constant_from is None:
            raise ValueError(
                f"`k` is required: {rule.name} has step-dependent matrices "
                "(constant_from is None); pass the step whose matrix to use"
            )
        return rule.constant_from
    return integer("k", k, minimum=1)


def spectral_radius(rule: LinearRule | str, h: np.ndarray, *, k: int | None = None) -> np.ndarray:
    """``max |eig M_k(h)|`` with ``M_k(h) = A_k - h b_k e_0^T``, vectorised over ``h``.

    ``k`` defaults to the rule's constant regime (``rule.constant_from``); step-dependent rules
    need an explicit ``k``. Returns an array of ``h``'s shape.
    """
    rule = _check_rule(rule)
    k = _matrix_step(rule, k)
    h = np.asarray(h, dtype=np.float64)
    if not np.all(np.isfinite(h)):
        raise ValueError("`h` must be finite")
    return np.max(np.abs(np.linalg.eigvals(rule.mode_matrix(k, h))), axis=-1)


def max_stable_h_numeric(rule: LinearRule | str, *, k: int | None = None) -> float:
    """Largest ``h*`` with ``rho(M_k(h)) < 1`` on all of ``(0, h*)``, by scan plus bisection.

    A grid scan finds the first unstable ``h`` (so a stable set that is not an interval gives
    its first boundary), then bisection brackets it to ``BISECT_RTOL``. Returns 0.0 if the rule
    is unstable for every small ``h > 0`` and ``inf`` if it is stable up to 1e6.
    """
    rule = _check_rule(rule)
    k = _matrix_step(rule, k)

    def unstable(h):
        return spectral_radius(rule, h, k=k) >= 1.0

    start, span, lo = 0.0, _SCAN_FIRST_SPAN, 0.0
    hi: float | None = None  # set, with lo, by the first grid that finds an unstable h
    while hi is None:
        if start >= _SCAN_MAX_H:
            return math.inf
        grid = np.linspace(start, span, _SCAN_POINTS + 1)[1:]
        bad = unstable(grid)
        if bad.any():
            i = int(np.argmax(bad))
            lo, hi = (grid[i - 1] if i > 0 else start), grid[i]
        start, span = span, span * 4.0
    if lo == 0.0:  # unstable at the first grid point: look closer to 0
        near = np.geomspace(1e-12 * hi, hi, 200)
        bad = unstable(near)
        if bad[0]:
            return 0.0
        i = int(np.argmax(bad))
        lo, hi = near[i - 1], near[i]
    while hi - lo > BISECT_RTOL * hi:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        if unstable(mid):
            hi = mid
        else:
            lo = mid
    return float(lo)


def _max_stable_h(rule: LinearRule) -> tuple[float, str]:
    closed = rule.max_stable_h()
    if closed is not None:
        return float(closed), "closed form"
    k = LATE_STEP if rule.constant_from is None else rule.constant_from
    return max_stable_h_numeric(rule, k=k), "numeric"


# --------------------------------------------------------------------------------------------
# Reports.


def _extremes(K: np.ndarray | Spectrum) -> tuple[float, float]:
    spec = spectrum(K)
    lmin, lmax = spec.lambda_min, spec.lambda_max
    if lmax <= 0.0:
        raise ValueError(f"`K` must have a positive eigenvalue, got lambda_max = {lmax:g}")
    return lmin, lmax


def _crossover(r: float, h0: float) -> tuple[float, float]:
    """``(r / h_0, A_r^2 e^-r (sqrt(h_0)/r)^r)`` (docs/mathematics.md §3), in logs to avoid overflow."""
    if h0 <= 0.0:
        return math.inf, 0.0
    nu = 0.5 * (r - 1.0)
    log_a = gammaln(nu + 1.0) + nu * math.log(2.0) + 0.5 * math.log(2.0 / math.pi)
    log_rel = 2.0 * log_a - r + r * (0.5 * math.log(h0) - math.log(r))
    return r / h0, math.exp(log_rel)


def stability(K: np.ndarray | Spectrum, rule: LinearRule | str) -> StabilityReport:
    """Stability of ``rule`` on the kernel: its largest stable step against ``h_max``.

    Args:
        K: effective kernel ``K = c H`` as an ``(n, n)`` array, a ``Spectrum``, or a 1-D
            array of its eigenvalues (validated by ``ntkdyn.kernels.spectrum``).
        rule: a linear rule (or spec string); its ``lr`` is judged.

    Returns:
        A :class:`StabilityReport` (module docstring for the formulas; docs/mathematics.md §3).

    Examples:
        >>> import numpy as np
        >>> from ntkdyn import stability
        >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])  # eigenvalues 1 and 3
        >>> report = stability(K, "gd:lr=0.5")  # GD is stable for lr * lambda_max < 2
        >>> report.stable, round(report.max_stable_lr, 6), report.bound
        (True, 0.666667, 'closed form')
        >>> round(stability(K, "hb:lr=0.5,beta=0.9").max_stable_h, 12)  # 2 (1 + beta)
        3.8
    """
    rule = _check_rule(rule)
    lmin, lmax = _extremes(K)
    h_star, bound = _max_stable_h(rule)
    h_max = rule.lr * lmax
    crossover_step = crossover_loss = None
    ode = rule.ode()
    if ode is not None and ode.kind == "bessel":
        crossover_step, crossover_loss = _crossover(ode.r, rule.lr * lmin)
    return StabilityReport(
        rule=rule.spec,
        lambda_min=lmin,
        lambda_max=lmax,
        condition=lmax / lmin if lmin > 0 else math.inf,
        lr=rule.lr,
        h_min=rule.lr * lmin,
        h_max=h_max,
        max_stable_h=h_star,
        max_stable_lr=h_star / lmax,
        bound=bound,
        asymptotic=rule.constant_from is None,
        stable=bool(h_max < h_star),
        crossover_step=crossover_step,
        crossover_loss=crossover_loss,
    )


def optimal_parameters(K: np.ndarray | Spectrum) -> OptimalParameters:
    """The kernel's optimal constant GD step and heavy-ball pair (module docstring).

    Args:
        K: effective kernel ``K = c H`` as an ``(n, n)`` array, a ``Spectrum``, or a 1-D
            array of its eigenvalues (validated by ``ntkdyn.kernels.spectrum``).

    Examples:
        >>> from ntkdyn import optimal_parameters
        >>> best = optimal_parameters([1.0, 3.0])  # the eigenvalues of K
        >>> round(best.gd_lr, 6), round(best.gd_rate, 6)  # 2 / (lambda_min + lambda_max)
        (0.5, 0.5)
        >>> round(best.hb_lr, 4), round(best.hb_beta, 4), round(best.hb_rate, 4)
        (0.5359, 0.0718, 0.2679)
    """
    lmin, lmax = _extremes(K)
    smin, smax = math.sqrt(lmin), math.sqrt(lmax)
    hb_rate = (smax - smin) / (smax + smin)
    return OptimalParameters(
        lambda_min=lmin,
        lambda_max=lmax,
        condition=lmax / lmin if lmin > 0 else math.inf,
        gd_lr=2.0 / (lmax + lmin),
        gd_rate=(lmax - lmin) / (lmax + lmin),
        hb_lr=4.0 / (smax + smin) ** 2,
        hb_beta=hb_rate**2,
        hb_rate=hb_rate,
    )


def _default_rules() -> list[LinearRule]:
    # lr is a placeholder: h* depends only on the momentum parameters.
    return [
        GD(1.0),
        *(HeavyBall(1.0, beta=b) for b in (0.5, 0.9, 0.99)),
        *(NesterovSC(1.0, beta=b) for b in (0.5, 0.9, 0.99)),
        Nesterov(1.0, r=3.0),
        NesterovTorch(1.0, r=3.0),
        HigherOrderMomentum(1.0, b1=0.6, b2=0.2),
        HigherOrderMomentum(1.0, b1=0.5, b2=-0.2),
    ]


def stability_table(
    K: np.ndarray | Spectrum, rules: Sequence[LinearRule | str] | None = None
) -> tuple[StabilityRow, ...]:
    """Largest stable lr on the kernel for each rule family (for ``ntkdyn kernel``).

    ``rules`` defaults to gd; hb and nesterov-sc at beta 0.5/0.9/0.99; nesterov and
    nesterov-torch (r=3, asymptotic bound 4/3); hom (0.6, 0.2) and (0.5, -0.2). The rules'
    own lr is ignored. Row label: the family name and its parameters.
    """
    _, lmax = _extremes(K)
    rows = []
    for rule in _default_rules() if rules is None else rules:
        rule = _check_rule(rule)
        h_star, bound = _max_stable_h(rule)
        params = ",".join(f"{key}={value:g}" for key, value in rule.params.items())
        if rule.constant_from is None:
            bound += " (k -> inf)"
        rows.append(
            StabilityRow(
                label=f"{rule.name} {params}".strip(),
                rule=rule.spec,
                max_stable_h=h_star,
                max_stable_lr=h_star / lmax,
                bound=bound,
            )
        )
    return tuple(rows)
