"""The limiting ODE of a rule in function space, for any smooth loss (docs/mathematics.md §9).

Private; ``ntkdyn.linearized`` exposes it as ``Linearized.ode``. With ``F = F0 + K alpha`` and
``g(alpha) = dL/dF(F0 + K alpha)``, the rule's limiting ODE (``ODESpec``, per unit of ODE time)
acts on the coefficients:

* flow:        ``alpha' = -g``
* oscillator:  ``m alpha'' + gamma alpha' + g = 0``
* bessel:      ``alpha'' + (r / t) alpha' + g = 0``, started at a small ``t0`` from
  ``alpha = -g0 t^2 / (2 (1 + r))``, exact to ``O(t0^4)``.

All start at rest (``alpha = alpha' = 0``) and are integrated by solve_ivp (DOP853). For a
squared loss this is the same ODE as :func:`ntkdyn.predict_ode` (whose closed form the tests
compare against).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate

from ._kernel_operator import KernelOperator
from .dynamics._ode_numeric import BESSEL_T0_Z
from .losses import Loss
from .optim.rules import ODESpec

__all__ = ["FunctionODE", "solve_function_ode"]

#: solve_ivp tolerances: the ODE is a reference curve, solved well below every tolerance that
#: judges it (>= 1e-6 relative).
ODE_RTOL = 1e-12
ODE_ATOL = 1e-14


@dataclass(frozen=True)
class FunctionODE:
    """The ODE solution at ``times``: loss ``(T,)``, outputs ``(T, n, C)`` and test outputs."""

    times: np.ndarray
    loss: np.ndarray
    outputs: np.ndarray
    test_outputs: np.ndarray | None


def solve_function_ode(
    spec: ODESpec,
    kernel: KernelOperator,
    F0: np.ndarray,
    T: np.ndarray,
    loss: Loss,
    times: np.ndarray,
    *,
    kernel_test: np.ndarray | None = None,
    F0_test: np.ndarray | None = None,
) -> FunctionODE:
    """Solve the rule's ODE (module docstring) and evaluate it at ``times`` (>= 0)."""
    times = np.asarray(times, dtype=np.float64).ravel()
    if times.size == 0 or not np.all(np.isfinite(times)) or times.min() < 0:
        raise ValueError("`times` must be a non-empty array of finite times >= 0")
    shape = kernel.shape
    N = F0.size

    def g(alpha_flat: np.ndarray) -> np.ndarray:
        F = F0 + kernel.apply(alpha_flat.reshape(shape))
        return loss.gradient(F, T).reshape(-1)

    order = np.argsort(times, kind="stable")
    ts = times[order]
    alphas = np.zeros((times.size, N))
    if spec.kind == "flow":
        t0, y0 = 0.0, np.zeros(N)

        def rhs(t, y):
            return -g(y)
    else:
        second = spec.kind == "oscillator"
        mass, gamma, r = spec.mass, spec.gamma, spec.r
        t0, y0 = 0.0, np.zeros(2 * N)
        if not second:
            g0 = g(np.zeros(N))
            t0 = _bessel_t0(g, g0, kernel)
            y0 = np.concatenate([-g0 * t0**2 / (2 * (1 + r)), -g0 * t0 / (1 + r)])
            early = ts <= t0
            alphas[order[early]] = -np.outer(ts[early] ** 2, g0) / (2 * (1 + r))

        def rhs(t, y):
            a, v = y[:N], y[N:]
            damping = gamma * v if second else (r / t) * v
            return np.concatenate([v, -(damping + g(a)) / (mass if second else 1.0)])

    later = ts > t0
    if later.any():
        sol = integrate.solve_ivp(
            rhs, (t0, float(ts[-1])), y0, method="DOP853", t_eval=ts[later],
            rtol=ODE_RTOL, atol=ODE_ATOL,
        )  # fmt: skip
        if sol.status != 0:
            raise RuntimeError(f"solve_ivp failed: {sol.message}")
        alphas[order[later]] = sol.y[:N].T
    coefficients = [a.reshape(shape) for a in alphas]
    outputs = np.stack([F0 + kernel.apply(a) for a in coefficients])
    losses = np.array([loss.value(F, T) for F in outputs])
    test = None
    if kernel_test is not None and F0_test is not None:
        test = np.stack([F0_test + kernel.apply_cross(kernel_test, a) for a in coefficients])
    return FunctionODE(times, losses, outputs, test)


def _bessel_t0(g, g0: np.ndarray, kernel: KernelOperator) -> float:
    """A start time small against every mode: ``BESSEL_T0_Z / sqrt(curvature)``, with the
    curvature of ``alpha -> g`` bounded by ``||K||`` times a finite-difference estimate of the
    loss's curvature along ``g0``."""
    size = float(np.linalg.norm(g0))
    if size == 0.0:
        return BESSEL_T0_Z
    step = 1e-4 / kernel.norm_bound()
    slope = float(np.linalg.norm(g(-step * g0 / size) - g0)) / step
    return BESSEL_T0_Z / math.sqrt(max(slope, 1e-300))
