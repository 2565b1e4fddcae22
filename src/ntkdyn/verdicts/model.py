"""The kernel model of one network and the window statistics the verdicts compare.

A :class:`KernelModel` is what a verdict needs of the kernel: the eigenvalues of the effective
kernel ``K = c H(0)`` and the initial residual in its eigenbasis, ``xi_0 = Q^T e_0``. From it
the exact discrete prediction of *any* rule follows (docs/mathematics.md §3), so a run can be
judged against the rule it claims to be, not only the rule it was trained with.

Window statistics are least-squares slopes of the log *envelope* (suffix maximum, which removes
momentum oscillations; docs/mathematics.md §5) over a window of steps ``start <= k < stop``:
``slope`` against ``k`` (a per-step rate) and ``exponent`` against ``log k`` (a power law).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..dynamics.discrete import predict_discrete
from ..kernels import Spectrum
from ..optim.rules import LinearRule, Rule, parse
from ..rates import predicted_rate
from .tolerances import WINDOW_FIRST

__all__ = [
    "KernelModel",
    "Window",
    "envelope_exponent",
    "envelope_slope",
    "expected_power_law",
    "finite_step_correction",
    "first_below",
    "late_slope",
    "ode_window_exponent",
]

#: Fewest points a window statistic is computed on.
MIN_WINDOW_POINTS = 6


@dataclass(frozen=True, eq=False)
class KernelModel:
    """Eigenvalues of ``K = c H(0)`` (ascending, > 0) and ``xi_0 = Q^T e_0``; ``scale`` turns
    ``1/2 ||e||^2`` into the loss actually minimised (``c``: 1 half-sum, 2/n MSE)."""

    eigenvalues: np.ndarray
    modes: np.ndarray
    scale: float = 1.0

    def __post_init__(self):
        lam = np.asarray(self.eigenvalues, dtype=np.float64).ravel()
        xi = np.asarray(self.modes, dtype=np.float64).ravel()
        if lam.size == 0 or lam.shape != xi.shape:
            raise ValueError(
                f"`eigenvalues` and `modes` must be non-empty and of one length, got "
                f"{lam.size} and {xi.size}"
            )
        if not (np.isfinite(lam).all() and np.isfinite(xi).all()):
            raise ValueError("`eigenvalues` and `modes` must be finite")
        if lam.min() <= 0:
            raise ValueError(f"`eigenvalues` must be > 0, got lambda_min = {lam.min():.3g}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"`scale` must be finite and > 0, got {self.scale!r}")
        order = np.argsort(lam)
        object.__setattr__(self, "eigenvalues", lam[order])
        object.__setattr__(self, "modes", xi[order])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    def h0(self, rule: Rule) -> float:
        """``h_0 = lr lambda_min(K)``."""
        return parse(rule).lr * self.lambda_min

    def curve(self, rule: Rule | str, steps: int) -> np.ndarray:
        """Exact loss curve ``L_0..L_steps`` of ``rule`` on this kernel (in ``scale`` units)."""
        lam = self.eigenvalues
        spec = Spectrum(lam, np.eye(lam.size), float(lam[0]), float(lam[-1]),
                        float(lam[-1] / lam[0]))  # fmt: skip
        return self.scale * predict_discrete(spec, self.modes, rule, steps)

    def discrete_factor(self, rule: Rule | str) -> float:
        """The rule's asymptotic per-step loss factor ``q`` on this kernel (>= 1: unstable)."""
        return float(predicted_rate(self.eigenvalues, rule).discrete_factor)


@dataclass(frozen=True)
class Window:
    """Steps ``start <= k < stop`` on which a statistic is taken."""

    start: int
    stop: int

    @classmethod
    def tail(cls, end: int) -> Window:
        """``[WINDOW_FIRST * end, end]`` (inclusive end), the classifier's tail."""
        return cls(max(1, math.ceil(WINDOW_FIRST * end)), int(end) + 1)

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)

    def __str__(self) -> str:
        return f"k = {self.start}..{self.stop - 1}"


def first_below(curve: np.ndarray, level: float) -> int | None:
    """First index ``k >= 1`` with ``curve[k] <= level * curve[0]`` or not finite, else None."""
    c = np.asarray(curve, dtype=np.float64)
    bad = np.flatnonzero(~(c[1:] > level * c[0]))
    return int(bad[0]) + 1 if bad.size else None


def _window_log_envelope(curve, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
    c = np.asarray(curve, dtype=np.float64)
    stop = min(window.stop, c.size)
    if stop - window.start < MIN_WINDOW_POINTS:
        return None
    # suffix maximum over the whole remaining curve, restricted to the window
    env = np.maximum.accumulate(c[window.start : stop][::-1])[::-1]
    if not (np.isfinite(env).all() and env.min() > 0):
        return None
    return np.arange(window.start, stop, dtype=np.float64), np.log(env)


def _lstsq_slope(x: np.ndarray, y: np.ndarray) -> float:
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def envelope_slope(curve: np.ndarray, window: Window) -> float | None:
    """Least-squares slope of ``log E_k`` against ``k`` on the window (None if too short or
    not finite and positive there)."""
    pts = _window_log_envelope(curve, window)
    return None if pts is None else _lstsq_slope(*pts)


def envelope_exponent(curve: np.ndarray, window: Window) -> float | None:
    """``p`` of ``E_k ~ k^-p``: minus the least-squares slope of ``log E_k`` on ``log k``."""
    pts = _window_log_envelope(curve, window)
    return None if pts is None else -_lstsq_slope(np.log(pts[0]), pts[1])


def _envelope_law_exponent(model: KernelModel, rule: LinearRule, window: Window,
                           *, step_decay: bool) -> float:
    r = float(rule.ode().r)
    h = rule.lr * model.eigenvalues
    k = np.arange(max(window.start, 1), window.stop, dtype=np.float64)
    log_terms = np.log(model.modes**2 * h ** (-r / 2))[:, None] + np.zeros_like(k)[None, :]
    if step_decay:
        log_terms = log_terms + np.log1p(-np.minimum(h, 1 - 1e-12))[:, None] * k[None, :]
    top = log_terms.max(axis=0)
    log_env = -r * np.log(k) + top + np.log(np.exp(log_terms - top).sum(axis=0))
    return -_lstsq_slope(np.log(k), log_env)


def expected_power_law(model: KernelModel, rule: LinearRule, window: Window) -> float:
    """The window exponent of scheduled Nesterov predicted by its asymptotic mode envelopes.

    Each mode's amplitude follows ``|xi_{j,k}| ~ |xi_{j,0}| A_r (k sqrt(h_j))^{-r/2}
    (1 - h_j)^{k/2}`` (docs/mathematics.md §3), so the loss envelope is
    ``E_k ~ k^-r sum_j xi_{j,0}^2 h_j^{-r/2} (1 - h_j)^k``; the result is minus its
    least-squares slope on ``log k`` over the window. For one mode this is
    ``r + |log(1 - h_0)| cov(k, log k) / var(log k)`` (docs/verdicts.md §5). It neglects the
    pre-asymptotic Bessel terms and the envelope's staircase: an explanation, not a criterion.
    """
    return _envelope_law_exponent(model, rule, window, step_decay=True)


def finite_step_correction(model: KernelModel, rule: LinearRule, window: Window) -> float:
    """How much the per-step decay ``(1 - h_j)^k`` steepens the window exponent: the envelope
    law with it minus without it (for one mode ``c_W K |log(1 - h_0)|``)."""
    return expected_power_law(model, rule, window) - _envelope_law_exponent(
        model, rule, window, step_decay=False
    )


def ode_window_exponent(model: KernelModel, rule: LinearRule, window: Window) -> float | None:
    """The window exponent of the rule's limiting ODE (exact Bessel modes, docs/mathematics.md
    §4) on this kernel, at the times ``t_k`` of the window's steps."""
    from ..dynamics.ode import predict_ode

    lam = model.eigenvalues
    spec = Spectrum(lam, np.eye(lam.size), float(lam[0]), float(lam[-1]),
                    float(lam[-1] / lam[0]))  # fmt: skip
    times = rule.ode().times(rule.lr, np.arange(window.stop))
    return envelope_exponent(predict_ode(spec, model.modes, rule, times), window)


def late_slope(r: float, h0: float, window: Window) -> float:
    """Least-squares slope of ``log(k^-r (1 - h0)^k)`` on the window: scheduled Nesterov's
    per-step rate after the crossover (docs/mathematics.md §3; docs/verdicts.md §6)."""
    k = np.arange(max(window.start, 1), window.stop, dtype=np.float64)
    return math.log1p(-h0) - r * _lstsq_slope(k, np.log(k))
