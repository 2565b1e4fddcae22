"""Numeric fallback of :mod:`ntkdyn.dynamics.ode`: solve_ivp in the original coordinates.

The limiting ODEs (docs/mathematics.md §4) as first-order systems in ``e`` (not in the eigenbasis), so a
time-varying kernel ``K(t)`` can be followed:

* flow:        ``e' = -K(t) e``
* oscillator:  ``e' = v``, ``m v' = -gamma v - K(t) e``
* bessel:      ``e' = v``, ``v' = -(r/t) v - K(t) e``, singular at t = 0: started at a small
  ``t0 > 0`` from the Frobenius series, which is exact for a kernel linear in t.

``K(t)`` is piecewise linear between samples and constant outside them; solve_ivp (DOP853) is
restarted at every sample so that each integration sees a smooth right-hand side.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate

from ..optim.rules import ODESpec

#: Numeric Bessel start ``t0 = BESSEL_T0_Z / sqrt(||K||_inf)``, i.e. ``z0 <= 1e-2`` for every
#: mode (docs/mathematics.md §4), and at most half the first positive kernel sample time.
BESSEL_T0_Z = 1e-2
#: Terms of the Frobenius series: at ``z0 <= 1e-2`` term j is below ``1e-2^j``.
FROBENIUS_TERMS = 16


@dataclass(frozen=True)
class KernelPath:
    """A kernel ``K(t)``: samples ``K[i]`` at times ``t[i]`` (strictly increasing), linear in
    between, constant before the first and after the last sample."""

    t: np.ndarray  # (S,)
    K: np.ndarray  # (S, n, n), symmetric

    def piece(self, ta: float, tb: float) -> tuple[float, np.ndarray, np.ndarray]:
        """``(t_ref, K_ref, slope)`` with ``K(t) = K_ref + (t - t_ref) slope`` on ``[ta, tb]``
        (an interval that contains no sample time in its interior)."""
        mid = 0.5 * (ta + tb)
        i = int(np.searchsorted(self.t, mid, side="right")) - 1
        if i < 0 or i >= self.t.size - 1:  # constant outside the samples
            j = min(max(i, 0), self.t.size - 1)
            return float(self.t[j]), self.K[j], np.zeros_like(self.K[j])
        slope = (self.K[i + 1] - self.K[i]) / (self.t[i + 1] - self.t[i])
        return float(self.t[i]), self.K[i], slope


def solve_numeric(
    spec: ODESpec, path: KernelPath, e0: np.ndarray, t: np.ndarray, rtol: float, atol: float
) -> np.ndarray:
    """``e(t)`` of shape (T, n) for times ``t >= 0`` in any order, from ``e(0) = e0``,
    ``e'(0) = 0``."""
    n = e0.size
    order = np.argsort(t, kind="stable")
    ts = t[order]
    out = np.empty((t.size, n))
    if spec.kind == "bessel":
        t_start, y = _bessel_start(spec.r, path, e0)
        for i in np.nonzero(ts <= t_start)[0]:  # the series is exact to rounding for t <= t0
            out[order[i]] = _frobenius(spec.r, path, e0, float(ts[i]))[0]
    else:
        t_start = 0.0
        y = e0.copy() if spec.kind == "flow" else np.concatenate([e0, np.zeros(n)])
        out[order[ts <= 0.0]] = e0
    t_end = float(ts[-1]) if ts.size else 0.0
    cuts = path.t[(path.t > t_start) & (path.t < t_end)]
    for ta, tb in itertools.pairwise(np.concatenate([[t_start], cuts, [t_end]])):
        if tb <= ta:
            continue
        sel = np.nonzero((ts > ta) & (ts <= tb))[0]
        t_eval = ts[sel] if sel.size and ts[sel[-1]] == tb else np.append(ts[sel], tb)
        rhs = _rhs(spec, n, *path.piece(ta, tb))
        sol = integrate.solve_ivp(
            rhs, (ta, tb), y, method="DOP853", t_eval=t_eval, rtol=rtol, atol=atol
        )
        if sol.status != 0:
            raise RuntimeError(f"solve_ivp failed on t in [{ta:g}, {tb:g}]: {sol.message}")
        out[order[sel]] = sol.y[:n, : sel.size].T
        y = sol.y[:, -1]  # the state at tb starts the next piece
    return out


def _rhs(spec: ODESpec, n: int, t_ref: float, K_ref: np.ndarray, slope: np.ndarray):
    def kernel(t):
        return K_ref + (t - t_ref) * slope

    if spec.kind == "flow":
        return lambda t, e: -kernel(t) @ e
    if spec.kind == "oscillator":
        g, m = spec.gamma, spec.mass
        return lambda t, y: np.concatenate([y[n:], -(g * y[n:] + kernel(t) @ y[:n]) / m])
    r = spec.r
    return lambda t, y: np.concatenate([y[n:], -(r / t) * y[n:] - kernel(t) @ y[:n]])


def _bessel_start(r: float, path: KernelPath, e0) -> tuple[float, np.ndarray]:
    """``t0`` and the state ``(e, e')(t0)``; t0 lies inside the first linear piece."""
    norm = float(np.abs(path.K).sum(axis=-1).max())  # >= |lambda| of every sample
    t0 = BESSEL_T0_Z / math.sqrt(norm) if norm > 0 else BESSEL_T0_Z
    later = path.t[path.t > 0]
    if later.size:
        t0 = min(t0, 0.5 * float(later[0]))
    e, v = _frobenius(r, path, e0, t0)
    return t0, np.concatenate([e, v])


def _frobenius(r: float, path: KernelPath, e0, t: float):
    """``(e(t), e'(t))`` of ``e'' + (r/t) e' + (K0 + K1 t) e = 0`` as ``e = sum_j a_j t^j``:
    ``a_0 = e0``, ``a_1 = 0``, ``j (j - 1 + r) a_j = -(K0 a_{j-2} + K1 a_{j-3})``, with
    ``K0 + K1 t`` the path's first piece (exact there)."""
    t_ref, K_ref, K1 = path.piece(0.0, 2.0 * t)
    K0 = K_ref - t_ref * K1
    a = [e0, np.zeros_like(e0)]
    e, v = e0.copy(), np.zeros_like(e0)
    for j in range(2, FROBENIUS_TERMS + 1):
        rhs = K0 @ a[j - 2] + (K1 @ a[j - 3] if j >= 3 else 0.0)
        a.append(-rhs / (j * (j - 1 + r)))
        e += a[j] * t**j
        v += j * a[j] * t ** (j - 1)
    return e, v
