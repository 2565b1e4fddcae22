"""Judging one run: pure functions of (measured curve, kernel model, rule, window rule).

Each returns a :class:`RunJudgment`: the measured quantity, the kernel model's on the same
window, their relative deviation and a per-run verdict, with the numbers that explain it. The
rule is the rule the run is *claimed* to be: its kernel curve is recomputed from the kernel
model, so a run trained with one rule and judged as another is compared with the wrong
prediction and fails (docs/verdicts.md §1).

Per-run verdicts: ``within`` / ``outside`` (the deviation against the tolerance passed in),
``refuted`` (decisively wrong whatever the tolerance: an unstable kernel model, a diverged
network, the other kind of convergence) and ``inconclusive`` (nothing to measure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..optim.rules import LinearRule, Rule
from ..prediction import KernelModel
from ..rates import fit_rate
from .model import (
    Window,
    envelope_exponent,
    envelope_slope,
    expected_power_law,
    finite_step_correction,
    first_below,
    late_slope,
    linear_rule,
    ode_window_exponent,
)
from .tolerances import (
    CROSSOVER_REACH,
    FLOOR_REL,
    POWER_LAW_RTOL,
    SMALL_STEP_FACTOR,
    SMALL_STEP_WINDOW,
)

__all__ = [
    "MAX_SMALL_STEPS",
    "RunJudgment",
    "judge_crossover",
    "judge_power_law",
    "judge_rate",
]

#: The small-step check of C3 is skipped (inconclusive) past this many steps.
MAX_SMALL_STEPS = 200_000


@dataclass(frozen=True)
class RunJudgment:
    """One run against its kernel model (module docstring)."""

    verdict: str
    measured: float | None = None
    reference: float | None = None
    deviation: float | None = None
    window: Window | None = None
    note: str = ""
    details: dict = field(default_factory=dict)

    def within(self, tol: float) -> RunJudgment:
        """The same judgment with its verdict set by ``|deviation| <= tol`` (if it has one)."""
        if self.verdict in ("refuted", "inconclusive") or self.deviation is None:
            return self
        verdict = "within" if abs(self.deviation) <= tol else "outside"
        return RunJudgment(
            verdict,
            self.measured,
            self.reference,
            self.deviation,
            self.window,
            self.note,
            self.details,
        )


def _curve(losses) -> np.ndarray:
    L = np.asarray(losses, dtype=np.float64).ravel()
    if L.size < 2:
        raise ValueError(f"`losses` must hold at least 2 values, got {L.size}")
    if not (np.isfinite(L[0]) and L[0] > 0):
        raise ValueError(f"`losses[0]` must be finite and > 0, got {L[0]!r}")
    return L


def _kernel_curve(model: KernelModel, rule: LinearRule, steps: int):
    """The kernel model's curve, or a refutation when it is unstable (q >= 1 or overflow)."""
    if model.lambda_min <= 0:  # no linear rate to judge against (docs/mathematics.md §3)
        raise ValueError(f"`eigenvalues` must be > 0, got lambda_min = {model.lambda_min:.3g}")
    q = model.discrete_factor(rule)
    P = model.curve(rule, steps)
    if not q < 1.0 or not np.isfinite(P).all():
        h_max = rule.lr * model.lambda_max
        note = (
            f"the kernel model is unstable for {rule.spec}: asymptotic loss factor "
            f"q = {q:.4g} >= 1 (h_max = lr lambda_max(K) = {h_max:.4g})"
        )
        return None, RunJudgment("refuted", note=note, details={"q": q, "h_max": h_max})
    return P, None


def _floor_end(curve, steps: int, floor_rel: float) -> int:
    """Last step before ``curve`` reaches ``floor_rel * curve[0]`` (or ``steps``)."""
    hit = first_below(curve, floor_rel)
    return steps if hit is None else min(steps, hit - 1)


def _diverged(L: np.ndarray) -> RunJudgment | None:
    bad = np.flatnonzero(~np.isfinite(L))
    if bad.size:
        return RunJudgment("refuted", note=f"the network diverged at step {int(bad[0])}")
    return None


def _kind_check(
    L: np.ndarray, P: np.ndarray, end: int, floor_rel: float, want: str
) -> RunJudgment | None:
    """The classifier (docs/mathematics.md §5) on ``L[:end+1]`` must say ``want``.

    Only where the kernel model's own curve ``P`` is classified ``want`` on the same steps:
    otherwise the run is too short to show that kind of convergence at all, and nothing about
    the network can be concluded (docs/verdicts.md §2).
    """
    kernel = fit_rate(P[: end + 1], floor_rel=floor_rel)
    if kernel.kind != want:
        return RunJudgment(
            "inconclusive",
            note=f"run too short: its kernel model is classified {kernel.kind} on k <= {end}, "
            f"not yet {want}",
        )
    fit = fit_rate(L[: end + 1], floor_rel=floor_rel)
    if fit.kind == want:
        return None
    if fit.kind == "undetermined":
        return RunJudgment("inconclusive", note=f"classifier undetermined: {fit.reason}")
    return RunJudgment(
        "refuted", note=f"the network is classified {fit.kind} on k <= {end}, not {want}"
    )


def judge_rate(
    losses: np.ndarray,
    model: KernelModel,
    rule: Rule | str,
    *,
    floor_rel: float = FLOOR_REL["float64"],
) -> RunJudgment:
    """A linear rule's per-step rate: network against its kernel model on one window.

    Window: ``[K/4, K]`` with ``K`` the last step before the kernel model's curve reaches
    ``floor_rel L_0`` (or the run's end). Measured: the least-squares slope ``s`` of the
    network's log envelope; reference: the same on the kernel model; deviation
    ``s_net / s_kernel - 1``. The network must also be classified linear up to ``K``.
    """
    rule = linear_rule(rule)
    L = _curve(losses)
    steps = L.size - 1
    P, unstable = _kernel_curve(model, rule, steps)
    if unstable is not None:
        return unstable
    end = _floor_end(P, steps, floor_rel)
    window = Window.tail(end)
    problem = _diverged(L[: end + 1]) or _kind_check(L, P, end, floor_rel, "linear")
    s_net, s_ker = envelope_slope(L, window), envelope_slope(P, window)
    q = model.discrete_factor(rule)
    details = {"log_q": math.log(q), "h0": model.h0(rule), "kernel_slope": s_ker}
    return _slope_judgment(problem, s_net, s_ker, window, details)


def _slope_judgment(
    problem: RunJudgment | None,
    s_net: float | None,
    s_ker: float | None,
    window: Window,
    details: dict,
) -> RunJudgment:
    """The judgment on the per-step slopes of a window: the problem found, else nothing to
    measure (no negative kernel slope), else the deviation ``s_net / s_kernel - 1``."""
    if problem is not None:
        return RunJudgment(problem.verdict, s_net, s_ker, None, window, problem.note, details)
    if s_net is None or s_ker is None or s_ker >= 0:
        return RunJudgment(
            "inconclusive",
            s_net,
            s_ker,
            None,
            window,
            "too few positive finite points in the window",
            details,
        )
    return RunJudgment("within", s_net, s_ker, s_net / s_ker - 1.0, window, "", details)


def _bessel_r(rule: LinearRule) -> float:
    spec = rule.ode()
    if spec is None or spec.kind != "bessel":
        raise ValueError(
            f"`rule` must be scheduled Nesterov (vanishing damping), got {rule.spec!r}"
        )
    return float(spec.r)


def _small_step(model: KernelModel, rule: LinearRule, r: float) -> dict:
    """C3's ODE-limit check: the kernel model at ``SMALL_STEP_FACTOR * lr`` on the window
    ``K = SMALL_STEP_WINDOW r / h0`` against the limiting ODE's exponent on the same window
    plus the finite-step correction (docs/verdicts.md §5)."""
    small = rule.with_lr(rule.lr * SMALL_STEP_FACTOR)
    k_end = math.floor(SMALL_STEP_WINDOW * r / model.h0(small))
    if k_end > MAX_SMALL_STEPS or k_end < 8:
        return {"small_ok": None, "small_note": f"small-step window of {k_end} steps"}
    window = Window.tail(k_end)
    p = envelope_exponent(model.curve(small, k_end), window)
    p_ode = ode_window_exponent(model, small, window)
    if p is None or p_ode is None:
        return {"small_ok": None, "small_note": "no small-step exponent could be measured"}
    p_law = p_ode + finite_step_correction(model, small, window)
    ok = abs(p - p_law) <= POWER_LAW_RTOL * r
    return {
        "small_exponent": p,
        "small_expected": p_law,
        "small_ode": p_ode,
        "small_window": str(window),
        "small_ok": ok,
    }


class _BesselStart(NamedTuple):
    rule: LinearRule
    r: float
    L: np.ndarray  # the network's curve
    P: np.ndarray  # the kernel model's, over as many steps
    h0: float


def _bessel_start(
    losses: np.ndarray, model: KernelModel, rule: Rule | str
) -> _BesselStart | RunJudgment:
    """What both scheduled-Nesterov judges start from, or the refutation when the kernel model
    is unstable."""
    rule = linear_rule(rule)
    r = _bessel_r(rule)
    L = _curve(losses)
    P, unstable = _kernel_curve(model, rule, L.size - 1)
    if unstable is not None:
        return unstable
    return _BesselStart(rule, r, L, P, model.h0(rule))


def judge_power_law(
    losses: np.ndarray,
    model: KernelModel,
    rule: Rule | str,
    *,
    floor_rel: float = FLOOR_REL["float64"],
) -> RunJudgment:
    """Scheduled Nesterov's power law in its pre-asymptotic window (claim C3).

    Window ``[K/4, K]``, ``K = min(r / h0, run end, kernel floor)``. Measured: the network's
    window exponent ``p``; reference: the kernel model's (same window); deviation: the larger
    of ``p_net / p_kernel - 1`` on the two halves of the window in log k. Refuted outright when the kernel model is unstable, the network
    is not classified sublinear up to ``K``, or the kernel model at a 100x smaller step misses
    the envelope law by more than ``POWER_LAW_RTOL r`` (the ODE limit, exponent -> r).
    """
    start = _bessel_start(losses, model, rule)
    if isinstance(start, RunJudgment):
        return start
    rule, r, L, P, h0 = start
    steps = L.size - 1
    end = min(_floor_end(P, steps, floor_rel), math.floor(r / h0))
    window = Window.tail(end)
    details: dict[str, object] = {
        "r": r,
        "h0": h0,
        "crossover": r / h0,
        "expected": expected_power_law(model, rule, window),
    }
    details.update(_small_step(model, rule, r))
    p_net, p_ker = envelope_exponent(L, window), envelope_exponent(P, window)
    problem = _diverged(L[: end + 1]) or _kind_check(L, P, end, floor_rel, "sublinear")
    if problem is None and details["small_ok"] is None:
        problem = RunJudgment("inconclusive", note=f"no ODE-limit check: {details['small_note']}")
    if problem is None and details["small_ok"] is False:
        problem = RunJudgment(
            "refuted",
            note=(
                f"at lr x {SMALL_STEP_FACTOR:g} the kernel model's exponent "
                f"{details['small_exponent']:.3f} misses "
                f"{details['small_expected']:.3f} (ODE + finite-step correction) by more than "
                f"{POWER_LAW_RTOL:.0%} of r"
            ),
        )
    if problem is not None:
        return RunJudgment(problem.verdict, p_net, p_ker, None, window, problem.note, details)
    halves = _half_deviations(L, P, window)
    if p_net is None or p_ker is None or p_ker <= 0 or halves is None:
        return RunJudgment(
            "inconclusive",
            p_net,
            p_ker,
            None,
            window,
            "too few positive finite points in the window",
            details,
        )
    details["half_deviations"] = halves
    return RunJudgment("within", p_net, p_ker, max(halves, key=abs), window, "", details)


def _half_deviations(L: np.ndarray, P: np.ndarray, window: Window) -> list[float] | None:
    """``p_net / p_kernel - 1`` on each half of the window in log k, ``[K/4, K/2]`` and
    ``[K/2, K]``. A power law keeps one exponent on both halves; a linearly converging curve
    does not (its local exponent grows like k), although on the whole window it can land
    within a few percent of the kernel model's (docs/verdicts.md §5)."""
    mid = math.ceil((window.stop - 1) / 2)
    out = []
    for half in (Window(window.start, mid + 1), Window(mid, window.stop)):
        p_net, p_ker = envelope_exponent(L, half), envelope_exponent(P, half)
        if p_net is None or p_ker is None or p_ker <= 0:
            return None
        out.append(p_net / p_ker - 1.0)
    return out


def judge_crossover(
    losses: np.ndarray,
    model: KernelModel,
    rule: Rule | str,
    *,
    floor_rel: float = FLOOR_REL["float64"],
) -> RunJudgment:
    """Scheduled Nesterov turns linear after ``r / h0`` (claim C7).

    Needs the kernel model's curve to stay above the floor until ``CROSSOVER_REACH r / h0``
    (else inconclusive: the precision cannot show the crossover). Window ``[K/4, K]`` with
    ``K`` that reach; measured: the network's per-step slope; reference: the kernel model's;
    deviation ``s_net / s_kernel - 1``. Refuted outright when the network is not classified
    linear there or the kernel model misses the late law ``log(1 - h0) - r cov(k, log k) /
    var(k)`` by more than ``POWER_LAW_RTOL``.
    """
    start = _bessel_start(losses, model, rule)
    if isinstance(start, RunJudgment):
        return start
    rule, r, L, P, h0 = start
    steps = L.size - 1
    crossover = r / h0
    end = _floor_end(P, steps, floor_rel)
    details = {"r": r, "h0": h0, "crossover": crossover, "reach": end}
    if end < CROSSOVER_REACH * crossover:
        why = (
            "the run ends"
            if end == steps
            else f"the kernel model reaches the {floor_rel:g} L0 floor"
        )
        note = (
            f"{why} at k = {end} < {CROSSOVER_REACH:g} r/h0 = {CROSSOVER_REACH * crossover:.0f}:"
            " the crossover cannot be seen"
        )
        return RunJudgment("inconclusive", note=note, details=details)
    window = Window.tail(end)
    s_net, s_ker = envelope_slope(L, window), envelope_slope(P, window)
    law = late_slope(r, h0, window)
    details.update({"late_law": law, "log_1mh0": math.log1p(-h0)})
    problem = _diverged(L[: end + 1]) or _kind_check(L, P, end, floor_rel, "linear")
    if problem is None and s_ker is not None and abs(s_ker / law - 1) > POWER_LAW_RTOL:
        problem = RunJudgment(
            "refuted",
            note=(
                f"the kernel model's late slope {s_ker:.4g} misses the law {law:.4g} by more "
                f"than {POWER_LAW_RTOL:.0%}"
            ),
        )
    return _slope_judgment(problem, s_net, s_ker, window, details)
