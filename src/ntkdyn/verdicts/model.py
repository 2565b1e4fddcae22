"""The window statistics the verdicts compare, and the kernel-model laws they are checked by.

What a verdict needs of the kernel is the network's kernel model
(:class:`ntkdyn.prediction.KernelModel`): the eigenvalues of the effective kernel
``K = c H(0)`` and the initial residual in its eigenbasis, ``xi_0 = Q^T e_0``. From it the
exact discrete prediction of *any* rule follows (docs/mathematics.md §3), so a run can be
judged against the rule it claims to be, not only the rule it was trained with.

Window statistics are least-squares slopes of the log *envelope* (suffix maximum, which removes
momentum oscillations; docs/mathematics.md §5) over a window of steps ``start <= k < stop``:
``slope`` against ``k`` (a per-step rate) and ``exponent`` against ``log k`` (a power law).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._curves import envelope, lstsq_line
from ..optim.rules import LinearRule, ODESpec, Rule, parse
from ..prediction import KernelModel
from .tolerances import WINDOW_FIRST

__all__ = [
    "Window",
    "envelope_exponent",
    "envelope_slope",
    "expected_power_law",
    "finite_step_correction",
    "first_below",
    "late_slope",
    "linear_rule",
    "ode_window_exponent",
    "rate_sensitivity",
]


def linear_rule(rule: Rule | str) -> LinearRule:
    """The rule (or spec) as a linear rule; ValueError naming ``rule`` if it has no kernel model."""
    rule = parse(rule)
    if not isinstance(rule, LinearRule):
        raise ValueError(f"`rule` must be a linear rule with a kernel model, got {rule.spec!r}")
    return rule


#: Fewest points a window statistic is computed on.
MIN_WINDOW_POINTS = 6


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
    env = envelope(c[window.start : stop])
    if not (np.isfinite(env).all() and env.min() > 0):
        return None
    return np.arange(window.start, stop, dtype=np.float64), np.log(env)


def _lstsq_slope(x: np.ndarray, y: np.ndarray) -> float:
    return lstsq_line(x, y)[0]


def envelope_slope(curve: np.ndarray, window: Window) -> float | None:
    """Least-squares slope of ``log E_k`` against ``k`` on the window (None if too short or
    not finite and positive there)."""
    pts = _window_log_envelope(curve, window)
    return None if pts is None else _lstsq_slope(*pts)


def envelope_exponent(curve: np.ndarray, window: Window) -> float | None:
    """``p`` of ``E_k ~ k^-p``: minus the least-squares slope of ``log E_k`` on ``log k``."""
    pts = _window_log_envelope(curve, window)
    return None if pts is None else -_lstsq_slope(np.log(pts[0]), pts[1])


def _envelope_law_exponent(
    model: KernelModel, rule: LinearRule, window: Window, *, step_decay: bool
) -> float:
    r = float(_limiting_ode(rule).r)
    h = rule.lr * model.eigenvalues
    k = np.arange(max(window.start, 1), window.stop, dtype=np.float64)
    log_terms = np.log(model.modes**2 * h ** (-r / 2))[:, None] + np.zeros_like(k)[None, :]
    if step_decay:
        log_terms = log_terms + np.log1p(-np.minimum(h, 1 - 1e-12))[:, None] * k[None, :]
    top = log_terms.max(axis=0)
    log_env = -r * np.log(k) + top + np.log(np.exp(log_terms - top).sum(axis=0))
    return -_lstsq_slope(np.log(k), log_env)


def _limiting_ode(rule: LinearRule) -> ODESpec:
    spec = rule.ode()
    if spec is None:
        raise ValueError(f"`rule` {rule.spec!r} has no limiting ODE")
    return spec


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

    times = _limiting_ode(rule).times(rule.lr, np.arange(window.stop))
    # 1/2 ||xi||^2 without the loss factor: the exponent does not depend on it
    return envelope_exponent(predict_ode(model.eigenbasis, model.modes, rule, times), window)


def late_slope(r: float, h0: float, window: Window) -> float:
    """Least-squares slope of ``log(k^-r (1 - h0)^k)`` on the window: scheduled Nesterov's
    per-step rate after the crossover (docs/mathematics.md §3; docs/verdicts.md §6)."""
    k = np.arange(max(window.start, 1), window.stop, dtype=np.float64)
    return math.log1p(-h0) - r * _lstsq_slope(k, np.log(k))


def rate_sensitivity(model: KernelModel, rule: Rule | str, *, step: float = 0.01) -> float:
    """``|d log|log q| / d log lambda_min|`` of the rule's asymptotic rate on this kernel, by
    a central difference in ``lambda_min`` (the kernel's drift moves the rate by about this
    times the relative drift; docs/verdicts.md §4). Infinite when ``q`` is not < 1."""
    rule = linear_rule(rule)
    logs = []
    for f in (1 - step, 1 + step):
        lam = np.array(model.eigenvalues)
        lam[0] *= f
        q = KernelModel(lam, model.modes).discrete_factor(rule)
        if not 0 < q < 1:
            return math.inf
        logs.append(math.log(-math.log(q)))
    return abs(logs[1] - logs[0]) / (math.log1p(step) - math.log1p(-step))
