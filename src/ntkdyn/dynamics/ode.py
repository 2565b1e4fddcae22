"""Limiting ODEs of the optimizers on the kernel quadratic, solved per eigenmode (MATH.md 4).

Conventions (MATH.md 0 and 4, stated once here):

* ``K`` is the *effective* kernel ``c H`` (the loss factor c is already in it). Per eigenmode
  ``lambda = lambda_j(K)`` with ``xi_j = q_j^T e``, the loss is ``L(t) = 1/2 sum_j xi_j(t)^2``.
* ``times`` are ODE times ``t``: ``t = k lr`` for GD and ``t = k sqrt(lr)`` for the momentum
  methods; ``rule.ode().times(lr, steps)`` converts step indices.
* Every ODE starts from ``e(0) = e0`` and ``e'(0) = 0``. The rule declares its ODE
  (``rule.ode()``, an :class:`~ntkdyn.optim.ODESpec`); Adam declares none.

Closed forms (``method="closed"``), per mode:

* ``flow`` (GD):            ``xi = exp(-lambda t) xi0``.
* ``oscillator`` (HB, NAG-SC, HOM): ``m xi'' + gamma xi' + lambda xi = 0``. With
  ``a = gamma / 2m`` and ``D = a^2 - lambda / m`` the solution is
  ``xi = xi0 exp(-a t) (C + a t S)`` with ``C = cosh(sqrt(D) t)``, ``S = sinh(sqrt(D) t) /
  (sqrt(D) t)``, i.e. cos/sinc when ``D < 0``. Both pieces are entire in ``D t^2`` and are
  evaluated without differences of nearly equal numbers (expm1 form for ``D >= 0``, sinc for
  ``D < 0``), so exactly critical and nearly critical damping are as accurate as the rest.
* ``bessel`` (scheduled NAG, both variants): ``xi'' + (r/t) xi' + lambda xi = 0``,
  ``xi = xi0 Gamma(nu+1) (2/z)^nu J_nu(z)``, ``nu = (r-1)/2``, ``z = sqrt(lambda) t``; the
  power series is used for ``z^2 <= 1``. Negative eigenvalues (only from a non-PSD K) give the
  growing solutions (cosh-type, modified Bessel I_nu) of the same equations.

``method="numeric"`` (and every ``kernel_path``) integrates the first-order system in the
original coordinates with ``scipy.integrate.solve_ivp`` (DOP853). A kernel path
``(t_samples, K_samples)`` is interpolated piecewise linearly in t (held constant outside the
samples); integration restarts at every sample so each piece is smooth. The Bessel system is
singular at t = 0 and is started at a small ``t0 > 0`` from its Frobenius series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, special

from ..optim.rules import ODESpec, Rule, parse

__all__ = ["ODEModes", "ode_envelope", "ode_modes", "predict_ode"]

#: Largest ``|K - K^T|`` accepted, relative to ``max |K|`` (rounding of a computed Gram).
SYMMETRY_RTOL = 1e-10
#: The Bessel solution uses its power series where ``|lambda| t^2 <= BESSEL_SERIES_Z2``.
BESSEL_SERIES_Z2 = 1.0
#: Series terms: at ``z^2 <= 1`` term k is below ``4^-k / k!^2``, so 14 reach 1e-24.
BESSEL_SERIES_TERMS = 14
#: Numeric Bessel start ``t0 = BESSEL_T0_Z / sqrt(||K||)`` (``z0 <= 1e-2``, MATH.md 4).
BESSEL_T0_Z = 1e-2
#: Terms of the matrix Frobenius series used to start the numeric Bessel integration.
FROBENIUS_TERMS = 16
#: Closed forms are evaluated in chunks of at most this many (time, mode) entries.
CHUNK_ELEMENTS = 1 << 21
#: Default solve_ivp tolerances of the numeric path.
NUMERIC_RTOL = 1e-10
NUMERIC_ATOL = 1e-12

_KINDS = ("flow", "oscillator", "bessel")


@dataclass(frozen=True)
class ODEModes:
    """Per-mode ODE solution: ``xi[i, j] = xi_j(times[i])`` for eigenpair ``j`` of K."""

    times: np.ndarray  # (T,) ODE times
    eigenvalues: np.ndarray  # (n,) of K, ascending
    eigenvectors: np.ndarray  # (n, n), columns q_j
    xi0: np.ndarray  # (n,) = Q^T e0
    xi: np.ndarray  # (T, n)
    spec: ODESpec

    @property
    def loss(self) -> np.ndarray:
        """``L(t) = 1/2 sum_j xi_j(t)^2``, shape (T,)."""
        return 0.5 * np.einsum("tj,tj->t", self.xi, self.xi)


# --------------------------------------------------------------------------------------------
# Public entry points.


def predict_ode(
    K,
    e0,
    rule,
    times,
    *,
    kernel_path=None,
    method: str = "closed",
    rtol: float = NUMERIC_RTOL,
    atol: float = NUMERIC_ATOL,
) -> np.ndarray:
    """Loss ``L(t) = 1/2 ||e(t)||^2`` of the rule's limiting ODE (MATH.md 4).

    Args:
        K: effective kernel (n, n), symmetric and finite, or a record with ``.eigenvalues``
            (n,) and ``.eigenvectors`` (n, n) such as ``ntkdyn.kernels.Spectrum``. Must be None
            when ``kernel_path`` is given.
        e0: (n,) initial residual ``u(0) - y``.
        rule: an optimizer rule (or its spec string) with a limiting ODE, or an ODESpec.
        times: (T,) ODE times ``t >= 0`` (see the module docstring for the time scaling).
        kernel_path: ``(t_samples (S,), K_samples (S, n, n))``: a time-varying kernel H(t),
            linear between samples, constant outside; always integrated numerically.
        method: ``"closed"`` (per-mode closed forms) or ``"numeric"`` (solve_ivp, DOP853).
        rtol, atol: solve_ivp tolerances of the numeric path.

    Returns:
        (T,) float64 losses.
    """
    spec = _ode_spec(rule)
    if method not in ("closed", "numeric"):
        raise ValueError(f"`method` must be 'closed' or 'numeric', got {method!r}")
    if kernel_path is not None:
        if K is not None:
            raise ValueError("`K` must be None when `kernel_path` is given (the path is the kernel)")
        path = _check_path(kernel_path)
        e0 = _check_e0(e0, path.K.shape[1])
        t = _check_times(times)
        e = _numeric(spec, path, e0, t, _check_tol("rtol", rtol), _check_tol("atol", atol))
        return 0.5 * np.einsum("ti,ti->t", e, e)
    lam, Q = _spectrum(K)
    e0 = _check_e0(e0, lam.size)
    t = _check_times(times)
    if method == "numeric":
        path = _KernelPath(np.zeros(1), ((Q * lam) @ Q.T)[None])
        e = _numeric(spec, path, e0, t, _check_tol("rtol", rtol), _check_tol("atol", atol))
        return 0.5 * np.einsum("ti,ti->t", e, e)
    xi0sq = (Q.T @ e0) ** 2
    out = np.empty(t.size)
    rows = max(1, CHUNK_ELEMENTS // max(lam.size, 1))
    for start in range(0, t.size, rows):  # bounded memory for many modes x many times
        f = _mode_factor(spec, lam, t[start : start + rows])
        out[start : start + rows] = 0.5 * (f * f) @ xi0sq
    return out


def ode_modes(K, e0, rule, times) -> ODEModes:
    """Closed-form per-mode solution ``xi_j(t)`` of the rule's ODE (all times x all modes).

    Same arguments as :func:`predict_ode` (closed form only); ``ode_modes(...).loss`` equals
    ``predict_ode(...)``. Memory is T x n floats.
    """
    spec = _ode_spec(rule)
    lam, Q = _spectrum(K)
    e0 = _check_e0(e0, lam.size)
    t = _check_times(times)
    xi0 = Q.T @ e0
    return ODEModes(t, lam, Q, xi0, _mode_factor(spec, lam, t) * xi0, spec)


def ode_envelope(K, e0, rule, times, *, cap: bool = True) -> np.ndarray:
    """Asymptotic NAG envelope ``1/2 sum_j xi_j0^2 A_r^2 (sqrt(lambda_j) t)^-r`` (MATH.md 4).

    ``A_r = Gamma(nu+1) 2^nu sqrt(2/pi)``, ``nu = (r-1)/2``: ``|xi_j| ~ xi_j0 A_r z^-r/2`` at
    large ``z = sqrt(lambda_j) t``. With ``cap`` each mode's term is capped at its initial
    value ``xi_j0^2 / 2`` (``|Gamma(nu+1)(2/z)^nu J_nu(z)| <= 1`` for ``nu >= -1/2``), which
    keeps t = 0 and lambda = 0 modes finite; ``cap=False`` gives the bare power law.
    Only for rules whose ODE is of kind "bessel". Returns (T,) float64.
    """
    spec = _ode_spec(rule)
    if spec.kind != "bessel":
        raise ValueError(f"`rule` must have a Bessel (scheduled Nesterov) ODE, got {spec.kind!r}")
    lam, Q = _spectrum(K)
    e0 = _check_e0(e0, lam.size)
    t = _check_times(times)
    nu = 0.5 * (spec.r - 1.0)
    log_a2 = 2.0 * (special.gammaln(nu + 1.0) + nu * math.log(2.0) + 0.5 * math.log(2 / math.pi))
    xi0sq = (Q.T @ e0) ** 2
    z = np.sqrt(np.clip(lam, 0.0, None)) * t[:, None]
    with np.errstate(divide="ignore", over="ignore"):
        ratio = np.exp(log_a2 - spec.r * np.log(z))
    if cap:
        ratio = np.minimum(ratio, 1.0)
    return 0.5 * ratio @ xi0sq


# --------------------------------------------------------------------------------------------
# Closed forms: f(t, lambda) = xi(t) / xi0, shape (T, n).


def _mode_factor(spec: ODESpec, lam: np.ndarray, t: np.ndarray) -> np.ndarray:
    if spec.kind == "flow":
        return np.exp(-np.outer(t, lam))
    if spec.kind == "oscillator":
        return _oscillator_factor(spec.gamma, spec.mass, lam, t)
    return _bessel_factor(0.5 * (spec.r - 1.0), lam, t)


def _oscillator_factor(gamma: float, mass: float, lam, t) -> np.ndarray:
    """``exp(-a t) (cosh(s t) + a t sinh(s t)/(s t))``, ``s = sqrt(D)``, without cancellation."""
    a = gamma / (2.0 * mass)
    w0sq = lam / mass
    w0 = np.sqrt(np.abs(w0sq))
    # a^2 - w0^2 as a product: its sign (the damping case) is then exact near critical.
    D = np.where(w0sq >= 0, (a - w0) * (a + w0), a * a + w0 * w0)
    tt = t[:, None]
    over = D >= 0
    s = np.sqrt(np.where(over, D, 0.0))
    w = np.sqrt(np.where(over, 0.0, -D))
    # s - a, the slow real root, written without cancellation when a > 0.
    slow = -w0sq / (a + s) if a > 0 else s - a
    x = 2.0 * s * tt
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        phi = np.where(x > 0, -np.expm1(-x) / x, 1.0)  # (1 - e^-x)/x -> 1 as s -> 0
        f_over = np.exp(slow * tt) * (0.5 * (1.0 + np.exp(-x)) + a * tt * phi)
        wt = w * tt
        sinc = np.where(wt > 0, np.sin(wt) / wt, 1.0)
        f_under = np.exp(-a * tt) * (np.cos(wt) + a * tt * sinc)
    return np.where(over, f_over, f_under)


def _bessel_factor(nu: float, lam, t) -> np.ndarray:
    """``Gamma(nu+1) (2/z)^nu J_nu(z)`` (``I_nu`` of ``|z|`` for lambda < 0); series for z^2 <= 1."""
    zsq = np.outer(t * t, lam)  # signed z^2 = lambda t^2
    small = np.abs(zsq) <= BESSEL_SERIES_Z2
    out = np.empty_like(zsq)
    q = -0.25 * zsq[small]
    term = np.ones_like(q)
    acc = np.ones_like(q)
    for k in range(1, BESSEL_SERIES_TERMS + 1):
        term = term * q / (k * (nu + k))
        acc += term
    out[small] = acc
    log_g = special.gammaln(nu + 1.0)
    pos = ~small & (zsq > 0)
    z = np.sqrt(zsq[pos])
    out[pos] = np.exp(log_g + nu * np.log(2.0 / z)) * special.jv(nu, z)
    neg = ~small & (zsq < 0)
    y = np.sqrt(-zsq[neg])
    with np.errstate(over="ignore"):
        out[neg] = np.exp(log_g + nu * np.log(2.0 / y) + y) * special.ive(nu, y)
    return out


# --------------------------------------------------------------------------------------------
# Numeric fallback: the first-order system in the original coordinates.


@dataclass(frozen=True)
class _KernelPath:
    t: np.ndarray  # (S,) strictly increasing
    K: np.ndarray  # (S, n, n)

    def piece(self, ta: float, tb: float) -> tuple[float, np.ndarray, np.ndarray]:
        """``(t_ref, K_ref, slope)`` with ``K(t) = K_ref + (t - t_ref) slope`` on [ta, tb]."""
        mid = 0.5 * (ta + tb)
        i = int(np.searchsorted(self.t, mid, side="right")) - 1
        if i < 0 or i >= self.t.size - 1:  # constant outside the samples
            j = min(max(i, 0), self.t.size - 1)
            return float(self.t[j]), self.K[j], np.zeros_like(self.K[j])
        slope = (self.K[i + 1] - self.K[i]) / (self.t[i + 1] - self.t[i])
        return float(self.t[i]), self.K[i], slope


def _numeric(spec: ODESpec, path: _KernelPath, e0, t, rtol, atol) -> np.ndarray:
    """``e(t)`` (T, n) from solve_ivp, restarted at every kernel sample."""
    n = e0.size
    order = np.argsort(t, kind="stable")
    ts = t[order]
    out = np.empty((t.size, n))
    if spec.kind == "bessel":
        t_start, y = _bessel_start(spec.r, path, e0, ts)
        early = ts <= t_start
        for i in np.nonzero(early)[0]:  # the series is exact to rounding for t <= t0
            out[order[i]] = _frobenius(spec.r, path, e0, float(ts[i]), n)[0]
    else:
        t_start, y = 0.0, (e0.copy() if spec.kind == "flow" else np.concatenate([e0, np.zeros(n)]))
        early = ts <= 0.0
        out[order[early]] = e0
    t_end = float(ts[-1]) if ts.size else 0.0
    cuts = path.t[(path.t > t_start) & (path.t < t_end)]
    edges = np.concatenate([[t_start], cuts, [t_end]])
    for ta, tb in zip(edges[:-1], edges[1:]):
        if tb <= ta:
            continue
        sel = np.nonzero((ts > ta) & (ts <= tb))[0]
        t_ref, K_ref, slope = path.piece(ta, tb)
        rhs = _rhs(spec, n, t_ref, K_ref, slope)
        t_eval = np.append(ts[sel], tb)
        sol = integrate.solve_ivp(
            rhs, (ta, tb), y, method="DOP853", t_eval=t_eval, rtol=rtol, atol=atol
        )
        if sol.status != 0:
            raise RuntimeError(f"solve_ivp failed on [{ta:g}, {tb:g}]: {sol.message}")
        out[order[sel]] = sol.y[:n, :-1].T
        y = sol.y[:, -1]
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


def _bessel_start(r: float, path: _KernelPath, e0, ts) -> tuple[float, np.ndarray]:
    """``t0`` and ``(e, e')(t0)``; t0 stays inside the first linear piece of the path."""
    norm = float(np.abs(path.K).sum(axis=-1).max())  # bounds |lambda| on the whole path
    t0 = BESSEL_T0_Z / math.sqrt(norm) if norm > 0 else BESSEL_T0_Z
    first = path.t[path.t > 0]
    if first.size:
        t0 = min(t0, 0.5 * float(first[0]))
    e, v = _frobenius(r, path, e0, t0, e0.size)
    return t0, np.concatenate([e, v])


def _frobenius(r: float, path: _KernelPath, e0, t: float, n: int):
    """Series solution of ``e'' + (r/t) e' + (K0 + K1 t) e = 0``, exact on the first piece:
    ``e = sum_j a_j t^j``, ``a_0 = e0``, ``a_1 = 0``,
    ``j (j - 1 + r) a_j = -(K0 a_{j-2} + K1 a_{j-3})``. Returns ``(e(t), e'(t))``."""
    t_ref, K_ref, slope = path.piece(0.0, 2 * t) if t > 0 else path.piece(0.0, 0.0)
    K0 = K_ref - t_ref * slope
    a = [e0, np.zeros(n)]
    e, v = e0.copy(), np.zeros(n)
    for j in range(2, FROBENIUS_TERMS + 1):
        prev = K0 @ a[j - 2] + (slope @ a[j - 3] if j >= 3 else 0.0)
        a.append(-prev / (j * (j - 1 + r)))
        e += a[j] * t**j
        v += j * a[j] * t ** (j - 1)
    return e, v


# --------------------------------------------------------------------------------------------
# Boundary validation.


def _ode_spec(rule) -> ODESpec:
    if isinstance(rule, ODESpec):
        spec = rule
    else:
        if not isinstance(rule, (Rule, str)):
            raise ValueError(f"`rule` must be an optimizer rule, spec string or ODESpec, got {rule!r}")
        rule = parse(rule)
        spec = rule.ode()
        if spec is None:
            raise ValueError(f"`rule` {rule.name} has no limiting ODE (it is not a linear method)")
    if spec.kind not in _KINDS:
        raise ValueError(f"`rule` ODE kind must be one of {_KINDS}, got {spec.kind!r}")
    if not (math.isfinite(spec.gamma) and math.isfinite(spec.mass) and spec.mass > 0):
        raise ValueError(f"`rule` ODE needs finite gamma and mass > 0, got {spec!r}")
    if spec.kind == "bessel" and not (math.isfinite(spec.r) and spec.r > 0):
        raise ValueError(f"`rule` Bessel ODE needs a finite r > 0, got r={spec.r!r}")
    return spec


def _check_kernel(name: str, K, *, batched: bool = False) -> np.ndarray:
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a numeric array, got {type(K).__name__}") from None
    nd = 3 if batched else 2
    if K.ndim != nd or K.shape[-1] != K.shape[-2] or K.shape[-1] == 0:
        want = "(S, n, n)" if batched else "(n, n)"
        raise ValueError(f"`{name}` must have shape {want} with n >= 1, got {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"`{name}` must be finite, found NaN or inf")
    asym = float(np.max(np.abs(K - np.swapaxes(K, -1, -2))))
    if asym > SYMMETRY_RTOL * max(float(np.max(np.abs(K))), np.finfo(float).tiny):
        raise ValueError(f"`{name}` must be symmetric, max |K - K^T| = {asym:.3g}")
    return 0.5 * (K + np.swapaxes(K, -1, -2))


def _spectrum(K) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues (n,), eigenvectors (n, n))`` of a matrix or a spectrum record."""
    if K is None:
        raise ValueError("`K` must be an (n, n) kernel or a spectrum record, got None")
    if hasattr(K, "eigenvalues") and hasattr(K, "eigenvectors"):
        lam = np.asarray(K.eigenvalues, dtype=np.float64)
        Q = np.asarray(K.eigenvectors, dtype=np.float64)
        n = lam.size
        if lam.ndim != 1 or Q.shape != (n, n) or n == 0:
            raise ValueError(f"`K` spectrum needs eigenvalues (n,), eigenvectors (n, n), got "
                             f"{lam.shape} and {Q.shape}")
        if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(Q))):
            raise ValueError("`K` spectrum must be finite, found NaN or inf")
        return lam, Q
    return np.linalg.eigh(_check_kernel("K", K))


def _check_e0(e0, n: int) -> np.ndarray:
    try:
        e0 = np.asarray(e0, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`e0` must be a numeric vector, got {type(e0).__name__}") from None
    if e0.shape != (n,):
        raise ValueError(f"`e0` must have shape ({n},) to match the kernel, got {e0.shape}")
    if not np.all(np.isfinite(e0)):
        raise ValueError("`e0` must be finite, found NaN or inf")
    return e0


def _check_times(times) -> np.ndarray:
    try:
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"`times` must be numeric, got {type(times).__name__}") from None
    if t.ndim != 1:
        raise ValueError(f"`times` must be one-dimensional, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        bad = t[~np.isfinite(t) | (t < 0)][0]
        raise ValueError(f"`times` must be finite ODE times >= 0, got {bad!r}")
    return t


def _check_path(kernel_path) -> _KernelPath:
    try:
        ts, Ks = kernel_path
    except (TypeError, ValueError):
        raise ValueError("`kernel_path` must be a pair (t_samples, K_samples)") from None
    ts = np.asarray(ts, dtype=np.float64)
    Ks = _check_kernel("kernel_path", Ks, batched=True)
    if ts.shape != (Ks.shape[0],) or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
        raise ValueError(f"`kernel_path` times must be finite, strictly increasing and match "
                         f"K_samples' first axis ({Ks.shape[0]}), got shape {ts.shape}")
    return _KernelPath(ts, Ks)


def _check_tol(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)
