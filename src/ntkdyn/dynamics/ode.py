"""Limiting ODEs of the optimizers on the kernel quadratic, solved per eigenmode (docs/mathematics.md §4).

Conventions (docs/mathematics.md §0 and 4, stated once here):

* ``K`` is the *effective* kernel ``c H`` (the loss factor c is already in it). Per eigenmode
  ``lambda = lambda_j(K)`` with ``xi_j = q_j^T e``, the loss is ``L(t) = 1/2 sum_j xi_j(t)^2``.
* ``times`` are ODE times ``t``: ``t = k lr`` for GD and ``t = k sqrt(lr)`` for the momentum
  methods; ``rule.ode().times(lr, steps)`` converts step indices.
* Every ODE starts from ``e(0) = e0`` and ``e'(0) = 0``. The rule declares its ODE
  (``rule.ode()``, an :class:`~ntkdyn.optim.ODESpec`); Adam declares none.

Closed forms (``method="closed"``), per mode, derived in docs/mathematics.md §4: ``flow`` (GD)
``xi = exp(-lambda t) xi0``; ``oscillator`` (HB, NAG-SC, HOM) ``m xi'' + gamma xi' + lambda xi
= 0``, one formula free of cancellation for under-, over- and (nearly) critical damping;
``bessel`` (scheduled NAG, both variants) ``xi = xi0 Gamma(nu+1) (2/z)^nu J_nu(z)`` with
``nu = (r-1)/2``, ``z = sqrt(lambda) t``. Zero modes keep ``xi = xi0``. ``K`` is validated by
:func:`ntkdyn.kernels.spectrum`, like every theory input.

``method="numeric"`` (and every ``kernel_path``) integrates the first-order system with
``scipy.integrate.solve_ivp`` (DOP853) in :mod:`._ode_numeric` (docs/mathematics.md §4,
"Numeric path").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .._validate import finite_number, finite_vector
from ..conventions import SYMMETRY_RTOL
from ..kernels import Spectrum, spectrum
from ..optim.rules import ODESpec, Rule, parse
from ._ode_numeric import KernelPath, solve_numeric

__all__ = ["ODEModes", "ode_envelope", "ode_modes", "predict_ode"]

#: The Bessel solution uses its power series where ``|lambda| t^2 <= BESSEL_SERIES_Z2``.
BESSEL_SERIES_Z2 = 1.0
#: Series terms: at ``z^2 <= 1`` term k is below ``4^-k / k!^2``, so 14 reach 1e-24.
BESSEL_SERIES_TERMS = 14
#: Below this order Gamma(nu+1) (2/z)^nu is formed directly (no overflow for z > 1).
GAMMA_DIRECT_NU = 100.0
#: Closed forms are evaluated in chunks of at most this many (time, mode) entries.
CHUNK_ELEMENTS = 1 << 21
#: Default solve_ivp tolerances of the numeric path.
NUMERIC_RTOL = 1e-10
NUMERIC_ATOL = 1e-12

_KINDS = ("flow", "oscillator", "bessel")


@dataclass(frozen=True)
class ODEModes:
    """Per-mode ODE solution ``xi[i, j] = xi_j(times[i]) = q_j^T e(times[i])`` (closed form).

    ``loss`` is ``predict_ode``'s curve; ``xi`` shows which modes dominate it.
    """

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
    K: np.ndarray | Spectrum | None,
    e0: np.ndarray,
    rule: Rule | str | ODESpec,
    times: np.ndarray,
    *,
    kernel_path: tuple[np.ndarray, np.ndarray] | None = None,
    method: str = "closed",
    rtol: float = NUMERIC_RTOL,
    atol: float = NUMERIC_ATOL,
) -> np.ndarray:
    """Loss ``L(t) = 1/2 ||e(t)||^2`` of the rule's limiting ODE (docs/mathematics.md §4).

    Per eigenmode of K (closed form): ``L(t) = 1/2 sum_j (f(t, lambda_j) q_j^T e0)^2`` with
    ``f`` the flow, oscillator or Bessel solution of the module docstring.

    Args:
        K: effective kernel ``c H`` (n, n), symmetric, finite and PSD (validated by
            ``ntkdyn.kernels.spectrum``), or a ``Spectrum`` with eigenvectors such as
            ``spectrum(K, vectors=True)``. Must be None when ``kernel_path`` is given.
        e0: (n,) initial residual ``u(0) - y``; ``e'(0) = 0``.
        rule: an optimizer rule (or spec string) with a limiting ODE, or an ``ODESpec``.
            Adam has none (ValueError).
        times: (T,) ODE times ``t >= 0``, any order (``rule.ode().times(lr, steps)`` maps step
            indices: ``t = k lr`` for GD, ``t = k sqrt(lr)`` for momentum methods).
        kernel_path: ``(t_samples (S,), K_samples (S, n, n))``: effective kernels ``c H(t_i)``
            at strictly increasing ODE times, e.g. sampled during training; linear in between,
            constant outside. Always integrated numerically.
        method: ``"closed"`` (per-mode closed forms, evaluated in chunks of
            ``CHUNK_ELEMENTS`` (time, mode) entries) or ``"numeric"`` (solve_ivp DOP853 in the
            original coordinates).
        rtol, atol: solve_ivp tolerances of the numeric path (atol is absolute, in units of e).

    Returns:
        (T,) float64 losses ``L(t)``.
    """
    spec = _ode_spec(rule)
    if method not in ("closed", "numeric"):
        raise ValueError(f"`method` must be 'closed' or 'numeric', got {method!r}")
    if kernel_path is not None:
        if K is not None:
            raise ValueError(
                "`K` must be None when `kernel_path` is given (the path is the kernel)"
            )
        path = _check_path(kernel_path)
        e0 = finite_vector("e0", e0, path.K.shape[1], against="the kernel")
        t = _check_times(times)
        e = solve_numeric(spec, path, e0, t, *_tolerances(rtol, atol))
        return 0.5 * np.einsum("ti,ti->t", e, e)
    lam, Q = _modes(K)
    e0 = finite_vector("e0", e0, lam.size, against="the kernel")
    t = _check_times(times)
    if method == "numeric":
        path = KernelPath(np.zeros(1), ((Q * lam) @ Q.T)[None])
        e = solve_numeric(spec, path, e0, t, *_tolerances(rtol, atol))
        return 0.5 * np.einsum("ti,ti->t", e, e)
    xi0sq = (Q.T @ e0) ** 2
    out = np.empty(t.size)
    rows = max(1, CHUNK_ELEMENTS // max(lam.size, 1))
    for start in range(0, t.size, rows):  # bounded memory for many modes x many times
        f = _mode_factor(spec, lam, t[start : start + rows])
        out[start : start + rows] = 0.5 * (f * f) @ xi0sq
    return out


def ode_modes(
    K: np.ndarray | Spectrum, e0: np.ndarray, rule: Rule | str | ODESpec, times: np.ndarray
) -> ODEModes:
    """Closed-form per-mode solution ``xi_j(t)`` of the rule's ODE (all times x all modes).

    Same arguments as :func:`predict_ode` (closed form only); ``ode_modes(...).loss`` equals
    ``predict_ode(...)``. Memory is T x n floats.
    """
    spec = _ode_spec(rule)
    lam, Q = _modes(K)
    e0 = finite_vector("e0", e0, lam.size, against="the kernel")
    t = _check_times(times)
    xi0 = Q.T @ e0
    return ODEModes(t, lam, Q, xi0, _mode_factor(spec, lam, t) * xi0, spec)


def ode_envelope(
    K: np.ndarray | Spectrum,
    e0: np.ndarray,
    rule: Rule | str | ODESpec,
    times: np.ndarray,
    *,
    cap: bool = True,
) -> np.ndarray:
    """Asymptotic NAG envelope ``1/2 sum_j xi_j0^2 A_r^2 (sqrt(lambda_j) t)^-r`` (docs/mathematics.md §4).

    ``A_r = Gamma(nu+1) 2^nu sqrt(2/pi)``, ``nu = (r-1)/2``: ``|xi_j| ~ xi_j0 A_r z^-r/2`` at
    large ``z = sqrt(lambda_j) t``. With ``cap`` each mode's term is capped at its initial
    value ``xi_j0^2 / 2`` (``|Gamma(nu+1)(2/z)^nu J_nu(z)| <= 1`` for ``nu >= -1/2``), which
    keeps t = 0 and lambda = 0 modes finite; ``cap=False`` gives the bare power law.
    Only for rules whose ODE is of kind "bessel". Returns (T,) float64.
    """
    spec = _ode_spec(rule)
    if spec.kind != "bessel":
        raise ValueError(f"`rule` must have a Bessel (scheduled Nesterov) ODE, got {spec.kind!r}")
    lam, Q = _modes(K)
    e0 = finite_vector("e0", e0, lam.size, against="the kernel")
    t = _check_times(times)
    nu = 0.5 * (spec.r - 1.0)
    log_a2 = 2.0 * (special.gammaln(nu + 1.0) + nu * math.log(2.0) + 0.5 * math.log(2 / math.pi))
    xi0sq = (Q.T @ e0) ** 2
    z = np.sqrt(lam) * t[:, None]
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
    w0sq = lam / mass  # lambda >= 0 (validated)
    w0 = np.sqrt(w0sq)
    D = (a - w0) * (a + w0)  # = a^2 - w0^2; sign (damping case) exact to rounding of a, w0
    tt = t[:, None]
    over = D >= 0
    s = np.sqrt(np.where(over, D, 0.0))
    w = np.sqrt(np.where(over, 0.0, -D))
    # s - a, the slow real root, without cancellation when a > 0 (a <= 0: gamma <= 0 grows).
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
    """``Gamma(nu+1) (2/z)^nu J_nu(z)``, ``z^2 = lambda t^2``; power series for ``z^2 <= 1``."""
    zsq = np.outer(t * t, lam)
    small = zsq <= BESSEL_SERIES_Z2
    out = np.empty_like(zsq)
    q = -0.25 * zsq[small]
    term = np.ones_like(q)
    acc = np.ones_like(q)
    for k in range(1, BESSEL_SERIES_TERMS + 1):
        term = term * q / (k * (nu + k))
        acc += term
    out[small] = acc
    z = np.sqrt(zsq[~small])
    if nu < GAMMA_DIRECT_NU:  # a power is rounded once; exp(nu log z) amplifies by nu |log z|
        coef = special.gamma(nu + 1.0) * np.power(2.0 / z, nu)
    else:
        coef = np.exp(special.gammaln(nu + 1.0) + nu * np.log(2.0 / z))
    out[~small] = coef * special.jv(nu, z)
    return out


# --------------------------------------------------------------------------------------------
# Boundary validation.


def _modes(K: np.ndarray | Spectrum | None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of ``K`` through the one kernel path (None is refused)."""
    spec = spectrum(K, vectors=True)
    assert spec.eigenvectors is not None  # vectors=True
    return spec.eigenvalues, spec.eigenvectors


def _ode_spec(rule) -> ODESpec:
    if isinstance(rule, ODESpec):
        spec = rule
    else:
        if not isinstance(rule, (Rule, str)):
            raise ValueError(
                f"`rule` must be an optimizer rule, spec string or ODESpec, got {rule!r}"
            )
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


def _check_samples(Ks) -> np.ndarray:
    """Kernel samples ``(S, n, n)``: finite and symmetric (the same rule as for ``K``)."""
    try:
        Ks = np.asarray(Ks, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("`kernel_path` K_samples must be a numeric (S, n, n) array") from None
    if Ks.ndim != 3 or Ks.shape[1] != Ks.shape[2] or 0 in Ks.shape:
        raise ValueError(f"`kernel_path` K_samples must have shape (S, n, n), got {Ks.shape}")
    if not np.all(np.isfinite(Ks)):
        raise ValueError("`kernel_path` K_samples must be finite; found NaN or inf")
    KT = np.swapaxes(Ks, 1, 2)
    asym = float(np.max(np.abs(Ks - KT)))
    if asym > SYMMETRY_RTOL * float(np.max(np.abs(Ks))):
        raise ValueError(f"`kernel_path` K_samples must be symmetric: max|K - K^T| = {asym:.3g}")
    return 0.5 * (Ks + KT)


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


def _check_path(kernel_path) -> KernelPath:
    try:
        ts, Ks = kernel_path
    except (TypeError, ValueError):
        raise ValueError("`kernel_path` must be a pair (t_samples, K_samples)") from None
    ts = np.asarray(ts, dtype=np.float64)
    Ks = _check_samples(Ks)
    if ts.shape != (Ks.shape[0],) or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
        raise ValueError(
            f"`kernel_path` times must be finite, strictly increasing and match "
            f"K_samples' first axis ({Ks.shape[0]}), got shape {ts.shape}"
        )
    return KernelPath(ts, Ks)


def _tolerances(rtol: float, atol: float) -> tuple[float, float]:
    return finite_number("rtol", rtol), finite_number("atol", atol)
