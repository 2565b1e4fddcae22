"""Convergence rates: predicted from (rule, spectrum of K), and measured from a loss curve.

Conventions (docs/mathematics.md §0, 3, 4, 5):

* ``K`` is the *effective* kernel ``K = c H`` (loss factor included), or its ``Spectrum``, and
  ``h_j = lr * lambda_j(K)``; losses are ``L_k = 1/2 sum_j xi_{j,k}^2`` (any constant factor,
  e.g. 2/n for MSELoss, leaves every rate unchanged).
* A discrete rate is a per-step loss factor ``q = lim L_{k+1} / L_k``; an ODE rate is the
  exponent ``a`` of ``L(t) ~ exp(-a t)`` with ``t = k lr`` (GD) or ``t = k sqrt(lr)`` (momentum).
* :func:`fit_rate` is the linear-vs-sublinear classifier of docs/mathematics.md §5, step for step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ._curves import check_curve, envelope, lstsq_line, truncate_at_floor
from ._validate import finite_number, unit_interval
from .conventions import LATE_STEP
from .kernels import Spectrum, spectrum
from .optim.rules import NO_KERNEL_PREDICTION, LinearRule, Rule, parse

__all__ = ["FitWindow", "PredictedRate", "RateFit", "fit_rate", "local_exponent", "predicted_rate"]

#: Fewest tail points, and fewest per half of the tail, for the two fits and the ratio test.
_MIN_TAIL_POINTS = 6
_MIN_HALF_POINTS = 3


# --------------------------------------------------------------------------------------------
# Prediction from the rule and the spectrum.


@dataclass(frozen=True)
class PredictedRate:
    """What theory predicts for a rule on the kernel quadratic ``F(e) = 1/2 e^T K e``.

    kind: "linear", "sublinear" (the ODE limit of vanishing-damping Nesterov, ``t^-r``) or
        "none" (a nonlinear rule such as Adam: nothing is predicted, and the fields are None).
    discrete_factor: asymptotic per-step loss factor ``q = max_j rho(M(h_j))^2`` (docs/mathematics.md §3).
        For scheduled Nesterov it is the limit ``k -> inf`` of the per-step matrices,
        ``1 - h_0`` when ``h_max <= 1``: at a fixed lr the discrete scheme is eventually linear.
    stable: ``discrete_factor < 1``; an unstable rule keeps its kind, and its statement says
        "unstable".
    ode_rate: ``a`` in ``L(t) ~ exp(-a t)`` of the limiting ODE (docs/mathematics.md §4); None for Bessel.
    exponent: ``r`` of the ODE law ``L(t) ~ t^-r`` (scheduled Nesterov); else None.
    time_scale: "lr" (t = k lr) or "sqrt_lr" (t = k sqrt(lr)); step_time is that dt per step.
    crossover_step: ``r / h_0``, the step after which discrete scheduled Nesterov turns linear.
    """

    rule: str
    kind: str
    h_min: float
    h_max: float
    statement: str
    discrete_factor: float | None = None
    stable: bool | None = None
    ode_rate: float | None = None
    exponent: float | None = None
    time_scale: str | None = None
    step_time: float | None = None
    crossover_step: float | None = None

    @property
    def rate_per_step(self) -> float | None:
        """``log q``: the slope of ``log L_k`` per step (negative when stable)."""
        if self.discrete_factor is None:
            return None
        with np.errstate(divide="ignore"):
            return float(np.log(self.discrete_factor))


def predicted_rate(K: np.ndarray | Spectrum, rule: Rule | str) -> PredictedRate:
    """Predict the convergence of ``rule`` on ``F(e) = 1/2 e^T K e`` (docs/mathematics.md §3, 4, 7.2).

    Discrete: ``q = max_j rho(M(h_j))^2`` with ``M(h) = A - h b e_0^T`` from the rule's own
    register matrices (generic; a k-dependent schedule is taken at ``k = LATE_STEP``, its
    k -> inf limit; ``ntkdyn.conventions``).
    GD gives ``max_j (1 - h_j)^2``, HB (complex roots) ``beta``, NAG-SC ``beta (1 - h_0)``.
    ODE: flow ``2 lambda_min``; oscillator ``mass e'' + gamma e' + K e = 0`` gives
    ``2 alpha(lambda_min / mass, gamma / mass)`` with ``alpha(l, g) = g / 2`` if
    ``g^2 <= 4 l`` else ``(g - sqrt(g^2 - 4 l)) / 2``; Bessel (NAG-C) gives ``t^-r``.

    Args:
        K: effective kernel as an ``(n, n)`` array, a ``Spectrum``, or a 1-D array of its
            eigenvalues (validated by ``ntkdyn.kernels.spectrum``); it must be positive
            definite (``lambda_min > 0``), else ValueError naming ``K``.
        rule: a :class:`~ntkdyn.optim.Rule` or a spec string such as ``"hb:lr=0.1,beta=0.9"``.

    Examples:
        >>> import numpy as np
        >>> from ntkdyn import predicted_rate
        >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])  # eigenvalues 1 and 3
        >>> predicted_rate(K, "gd:lr=0.25").statement
        'linear: L_k ~ 0.5625^k (ODE: exp(-2 t), t = k lr)'
        >>> rate = predicted_rate(K, "nesterov:lr=0.25,r=3")
        >>> rate.kind, rate.exponent, round(rate.crossover_step, 6)
        ('sublinear', 3.0, 12.0)
    """
    rule = parse(rule)
    lam = _positive_definite(spectrum(K))
    h = rule.lr * lam
    h_min, h_max = float(h.min()), float(h.max())
    if not isinstance(rule, LinearRule):
        statement = f"none: {rule.name}: {NO_KERNEL_PREDICTION}; no rate is predicted"
        return PredictedRate(rule.spec, "none", h_min, h_max, statement)
    step = rule.constant_from if rule.constant_from is not None else LATE_STEP
    radius = np.abs(np.linalg.eigvals(rule.mode_matrix(step, h))).max(axis=-1)
    q = float(np.max(radius) ** 2)
    spec = rule.ode()  # None: a linear rule without a declared ODE gets the discrete view only
    ode_rate = exponent = crossover = time_scale = step_time = None
    if spec is not None:
        time_scale = spec.time_scale
        step_time = rule.lr if time_scale == "lr" else math.sqrt(rule.lr)
        if spec.kind == "flow":
            ode_rate = 2.0 * float(lam.min())
        elif spec.kind == "oscillator":
            ode_rate = 2.0 * float(np.min(_damping(lam / spec.mass, spec.gamma / spec.mass)))
        else:  # "bessel": e'' + (r/t) e' + K e = 0, sublinear t^-r; linear after k ~ r / h_0
            exponent = float(spec.r)
            crossover = exponent / h_min
    kind = "sublinear" if exponent is not None else "linear"
    statement = _statement(rule, kind, q, ode_rate, exponent, time_scale, crossover, h_max)
    return PredictedRate(
        rule.spec,
        kind,
        h_min,
        h_max,
        statement,
        discrete_factor=q,
        stable=q < 1.0,
        ode_rate=ode_rate,
        exponent=exponent,
        time_scale=time_scale,
        step_time=step_time,
        crossover_step=crossover,
    )


def _damping(lam: np.ndarray, gamma: float) -> np.ndarray:
    """``alpha(lambda, gamma)`` of ``e'' + gamma e' + lambda e = 0`` (docs/mathematics.md §4)."""
    disc = gamma * gamma - 4.0 * lam
    # 2 lam / (g + sqrt(disc)) equals (g - sqrt(disc)) / 2 without its cancellation at g^2 >> l
    over = 2.0 * lam / (gamma + np.sqrt(np.maximum(disc, 0.0)))
    return np.where(disc <= 0.0, 0.5 * gamma, over)


def _fmt_factor(q: float) -> str:
    return f"(1 - {1.0 - q:.3g})" if 0.99 < q < 1.0 else f"{q:.4g}"


def _statement(rule, kind, q, ode_rate, exponent, time_scale, crossover, h_max) -> str:
    t_def = "t = k lr" if time_scale == "lr" else "t = k sqrt(lr)"
    if q >= 1.0:
        return (
            f"unstable: L_k grows like {q:.4g}^k (h_max = {h_max:.4g} is beyond "
            f"{rule.name}'s stable step)"
        )
    if kind == "linear" and ode_rate is None:
        return f"linear: L_k ~ {_fmt_factor(q)}^k (no ODE limit declared)"
    if kind == "linear":
        return f"linear: L_k ~ {_fmt_factor(q)}^k (ODE: exp(-{ode_rate:.4g} t), {t_def})"
    return (
        f"sublinear: L(t) ~ t^-{exponent:g} in the ODE limit ({t_def}); at lr = {rule.lr:g} "
        f"eventually linear, L_k ~ k^-{exponent:g} {_fmt_factor(q)}^k, "
        f"after k ~ r/h_0 = {crossover:.3g}"
    )


def _positive_definite(spec: Spectrum) -> np.ndarray:
    """The eigenvalues of a validated kernel, which rates need strictly positive."""
    if spec.lambda_min <= 0:
        raise ValueError(
            f"`K` must be positive definite for a rate (lambda_min > 0), got lambda_min = "
            f"{float(spec.lambda_min)!r}: a singular kernel has a mode that never converges"
        )
    return spec.eigenvalues


# --------------------------------------------------------------------------------------------
# Measurement: the classifier of docs/mathematics.md §5.


@dataclass(frozen=True)
class FitWindow:
    """The tail used by :func:`fit_rate`: ``t_first <= t <= t_end``, indices ``start:stop``."""

    t_first: float
    t_end: float
    start: int
    stop: int


@dataclass(frozen=True)
class RateFit:
    """Result of :func:`fit_rate` (docs/mathematics.md §5).

    kind: "linear", "sublinear" or "undetermined" (then ``reason`` says why).
    rate, factor: for "linear", the slope ``s`` of ``log E`` per unit t and ``q = e^s``.
    exponent: for "sublinear", ``p`` in ``E ~ t^-p``.
    slope, power: the two least-squares fits on the tail whatever the verdict (s and p).
    r_exp, r_pow: their RMS residuals in ``log E``.
    rho, rho_pow: the slope ratio of the two tail halves, and its value for a power law.
    truncated_at: index of the first value at or below the floor (or non-finite), if any.
    """

    kind: str
    rate: float | None = None
    factor: float | None = None
    exponent: float | None = None
    slope: float | None = None
    power: float | None = None
    window: FitWindow | None = None
    r_exp: float | None = None
    r_pow: float | None = None
    rho: float | None = None
    rho_pow: float | None = None
    n_points: int = 0
    truncated_at: int | None = None
    reason: str = ""

    @property
    def statement(self) -> str:
        """One line for reports."""
        if self.kind == "linear":
            assert self.factor is not None  # fit_rate sets it with kind "linear"
            return f"linear: L ~ {_fmt_factor(self.factor)}^t (rate {self.rate:.4g} per unit t)"
        if self.kind == "sublinear":
            return f"sublinear: L ~ t^-{self.exponent:.3f}"
        return f"undetermined: {self.reason}"


def fit_rate(
    losses: np.ndarray, times: np.ndarray | None = None, *, floor_rel: float = 1e-20
) -> RateFit:
    """Classify a loss curve as linear (``exp(s t)``) or sublinear (``t^-p``), docs/mathematics.md §5.

    1. truncate at the first ``L <= floor_rel * L_0`` or non-finite value (rounding floors
       otherwise look like stagnation); 2. envelope ``E_i = max_{j >= i} L_j``;
    3. tail ``T = {t_i >= t_end / 4, t_i > 0}``; 4. least squares ``log E = a + s t`` and
    ``log E = a' - p log t`` on T (RMS residuals R_exp, R_pow); 5. split T at
    ``sqrt(t_first t_end)``, ``rho = s_2 / s_1``, ``rho_pow`` = the same ratio for ``log t``;
    6. linear if ``|log rho| < |log(rho / rho_pow)|`` and ``R_exp < R_pow``, sublinear if both
    favour the power law, else undetermined (also if ``rho <= 0`` or both distances exceed
    ``|log rho_pow| / 2``).

    Args:
        losses: 1-D array of nonnegative losses ``L_0..L_K`` (inf/nan mark divergence).
        times: 1-D strictly increasing finite times, same length; default ``t_i = i``.
        floor_rel: relative floor in [0, 1); 1e-20 for float64, about 1e-11 for float32.

    Examples:
        >>> import numpy as np
        >>> from ntkdyn import fit_rate
        >>> t = np.arange(200.0)
        >>> fit = fit_rate(np.exp(-0.1 * t), t)
        >>> fit.kind, round(fit.rate, 6)
        ('linear', -0.1)
        >>> fit = fit_rate((1.0 + t) ** -2.0, t)
        >>> fit.kind, round(fit.exponent, 1)
        ('sublinear', 2.0)
    """
    L, t = check_curve(losses, times)
    floor_rel = unit_interval("floor_rel", floor_rel)
    if L.size == 0:
        return RateFit("undetermined", reason="no points")
    if not np.isfinite(L[0]) or L[0] == 0.0:
        return RateFit(
            "undetermined", reason=f"L_0 = {float(L[0])!r}: nothing to fit relative to it"
        )
    keep, truncated_at = truncate_at_floor(L, floor_rel)
    L, t = L[:keep], t[:keep]
    E = envelope(L)
    t_end = t[-1]
    tail = np.flatnonzero((t >= t_end / 4.0) & (t > 0.0))
    n = int(tail.size)
    if n < _MIN_TAIL_POINTS:
        return RateFit(
            "undetermined",
            n_points=n,
            truncated_at=truncated_at,
            reason=f"only {n} points in the tail (need {_MIN_TAIL_POINTS})",
        )
    tt, logE = t[tail], np.log(E[tail])
    window = FitWindow(float(tt[0]), float(t_end), int(tail[0]), int(tail[-1]) + 1)
    s, r_exp = lstsq_line(tt, logE)
    minus_p, r_pow = lstsq_line(np.log(tt), logE)
    first = tt < math.sqrt(tt[0] * t_end)
    fits = RateFit(  # both fits, whatever the verdict; `replace` adds the verdict
        "undetermined",
        slope=s,
        power=-minus_p,
        window=window,
        r_exp=r_exp,
        r_pow=r_pow,
        n_points=n,
        truncated_at=truncated_at,
    )
    if min(first.sum(), (~first).sum()) < _MIN_HALF_POINTS:
        return replace(fits, reason="too few points in a half of the tail")
    s1, _ = lstsq_line(tt[first], logE[first])
    s2, _ = lstsq_line(tt[~first], logE[~first])
    rho_pow = (
        lstsq_line(tt[~first], np.log(tt[~first]))[0] / lstsq_line(tt[first], np.log(tt[first]))[0]
    )
    fits = replace(fits, rho_pow=float(rho_pow))
    if s1 == 0.0:
        return replace(fits, reason="the envelope does not decay on the tail")
    rho = s2 / s1
    fits = replace(fits, rho=float(rho))
    kind, reason = _decide(rho, rho_pow, r_exp, r_pow)
    if kind == "linear":
        return replace(fits, kind=kind, rate=s, factor=math.exp(s))
    if kind == "sublinear":
        return replace(fits, kind=kind, exponent=-minus_p)
    return replace(fits, kind=kind, reason=reason)


def _decide(rho: float, rho_pow: float, r_exp: float, r_pow: float) -> tuple[str, str]:
    """docs/mathematics.md §5 step 6: the verdict from the slope ratio and the residuals, and why."""
    if not rho > 0.0:
        return "undetermined", f"slope ratio rho = {rho:.3g} <= 0"
    d_lin, d_pow = abs(math.log(rho)), abs(math.log(rho / rho_pow))
    if min(d_lin, d_pow) > 0.5 * abs(math.log(rho_pow)):
        return "undetermined", f"rho = {rho:.3g} is far from both 1 and rho_pow = {rho_pow:.3g}"
    if d_lin < d_pow and r_exp < r_pow:
        return "linear", ""
    if d_pow < d_lin and r_pow < r_exp:
        return "sublinear", ""
    return "undetermined", (
        f"slope ratio (rho = {rho:.3g}, rho_pow = {rho_pow:.3g}) and "
        f"residuals (R_exp = {r_exp:.3g}, R_pow = {r_pow:.3g}) disagree"
    )


def local_exponent(
    losses: np.ndarray,
    times: np.ndarray | None = None,
    *,
    span: float = 2.0,
    floor_rel: float = 1e-20,
) -> np.ndarray:
    """Local power-law exponent ``p_eff(t) = -d log E / d log t`` of the envelope (docs/mathematics.md §5).

    The derivative is the secant of ``log E`` over ``[t / sqrt(span), t sqrt(span)]``
    (interpolated in ``log t``), which averages over the stair steps of an oscillating
    envelope. For discrete NAG-C, ``p_eff(k) ~ r + k |log(1 - h_0)|``.

    Returns:
        float64 array aligned with ``losses``; NaN where t <= 0, where the window leaves the
        curve, or beyond the truncation of :func:`fit_rate`.
    """
    L, t = check_curve(losses, times)
    floor_rel = unit_interval("floor_rel", floor_rel)
    span = finite_number("span", span, above=1.0)
    out = np.full(L.shape, np.nan)
    if L.size == 0 or not np.isfinite(L[0]) or L[0] == 0.0:
        return out
    keep, _ = truncate_at_floor(L, floor_rel)
    pos = np.flatnonzero(t[:keep] > 0.0)
    if pos.size < 2:
        return out
    E = envelope(L[:keep])[pos]
    x, y = np.log(t[pos]), np.log(E)
    half = 0.5 * math.log(span)
    inside = (x - half >= x[0]) & (x + half <= x[-1])
    lo, hi = np.interp(x - half, x, y), np.interp(x + half, x, y)
    out[pos[inside]] = -(hi - lo)[inside] / (2.0 * half)
    return out
