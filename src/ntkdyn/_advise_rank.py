"""From a family to a ranked candidate: the search's choice, its probe, the ranking.

:func:`choose` finds a family's recommendation on the kernel model (``_advise_search``) and
its exact predicted curve; :func:`assess` probes the real network with it and turns the drift
into an expected steps error and a verdict (``_advise_expect``); :func:`order` ranks the
candidates that hold and reach the target by predicted steps and lists the others after them,
each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ._advise_expect import expect, measured_drift, probe_record
from ._advise_lockstep import lockstep
from ._advise_search import (
    FAMILIES,
    function_space_grid,
    lr_max,
    search_family,
    spaces,
    steps_to_target,
)
from .validity import KERNEL_DRIFT_THRESHOLD

if TYPE_CHECKING:
    from ._advice import Candidate
    from ._advise_build import Built
    from .optim.rules import LinearRule
    from .validity import ValidityRecord

__all__ = ["Draft", "assess", "choose", "order"]

#: The predicted curve runs this share past the steps to target (for the figure), at least
#: :data:`_TAIL_MIN` steps.
_TAIL = 0.2
_TAIL_MIN = 10


@dataclass(frozen=True, eq=False)
class Draft:
    """A family's choice before its probe."""

    family: str
    rule: LinearRule
    lr_max: float
    curve: np.ndarray
    steps: int | None


def _horizon(steps: int | None, budget: int) -> int:
    if steps is None:
        return budget
    return min(budget, steps + max(_TAIL_MIN, int(_TAIL * steps)))


def choose(built: Built, family: str, target: float, budget: int) -> Draft:
    """The family's recommended rule and its predicted curve (module docstring)."""
    lam = built.lam
    km = built.kernel_model
    if km is not None:
        rule, _ = search_family(spaces(lam)[family], lam, km.modes, target, budget)
        found = int(lockstep(lam, km.modes, [rule], target, budget).steps[0])
        curve = km.curve(rule, _horizon(found if found >= 0 else None, budget))
        steps = steps_to_target(curve, target)
        if steps is None and curve.size <= budget:  # rounding at the crossing: look further
            curve = km.curve(rule, budget)
            steps = steps_to_target(curve, target)
    else:
        best: tuple[float, float] | None = None
        chosen = None
        for candidate in function_space_grid(lam, family):
            losses = built.lin.predict(candidate, budget, outputs_at=[0]).loss
            k = steps_to_target(losses, target)
            last = float(losses[-1] / losses[0]) if np.isfinite(losses[-1]) else np.inf
            key = (float(k) if k is not None else np.inf, last)
            if best is None or key < best:
                best, chosen = key, (candidate, losses, k)
        assert chosen is not None
        rule, losses, steps = chosen
        curve = losses[: _horizon(steps, budget) + 1]
    return Draft(family, rule, lr_max(rule, float(lam[-1])), curve, steps)


def _reason(record: ValidityRecord, drift: float, steps: int | None) -> str:
    """Why the kernel model is not expected to hold, in the record's words."""
    parts = []
    if record.diverged_at is not None:
        parts.append(f"the network diverged at step {record.diverged_at} of the probe")
    if record.exceeded:
        parts.append("probe over the thresholds " + ", ".join(record.exceeded))
    if record.departure_step is not None and record.diverged_at is None:
        parts.append(f"probe loss left the {record.band:.0%} band at step {record.departure_step}")
    if not drift <= KERNEL_DRIFT_THRESHOLD:
        where = f"step {steps}" if steps is not None else "the budget"
        parts.append(
            f"kernel drift extrapolated to {where} {_share(drift)} > {KERNEL_DRIFT_THRESHOLD:.0%}"
        )
    return "kernel model not expected to hold: " + "; ".join(parts)


def _share(value: float) -> str:
    return "inf" if not np.isfinite(value) else f"{100 * value:.3g}%"


def assess(built: Built, draft: Draft, target: float, budget: int, probe_steps: int) -> Candidate:
    """The candidate of ``draft`` with its probe, expected error and verdict (unranked)."""
    from ._advice import Candidate

    margin = 1.0 - draft.rule.lr / draft.lr_max
    unprobed = Candidate(
        family=draft.family,
        rule=draft.rule,
        lr_max=draft.lr_max,
        margin=margin,
        predicted_steps=draft.steps,
        curve=draft.curve,
        expected_error=None,
        validity=None,
        holds=True,
        rank=None,
    )
    if built.network is None or probe_steps == 0:
        return unprobed
    # the model need hold only until the target: a probe past it would judge losses the
    # prediction is not used for (and that a float64 network may not resolve)
    steps = probe_steps if draft.steps is None else max(1, min(probe_steps, draft.steps))
    record = probe_record(built.lin, draft.rule, steps)
    drift = measured_drift(record)
    expected = expect(
        drift,
        draft.rule,
        draft.steps,
        probe_steps=steps,
        target=target,
        budget=budget,
        kernel=built.kernel_model,
        lin=None if built.kernel_model is not None else built.lin,
        basis=built.basis,
    )
    holds = record.holds and expected.drift <= KERNEL_DRIFT_THRESHOLD
    return replace(
        unprobed,
        expected_error=expected.error,
        validity=record,
        holds=bool(holds),
        drift=expected.drift,
        reason=None if holds else _reason(record, expected.drift, draft.steps),
    )


def order(candidates: list[Candidate]) -> tuple[Candidate, ...]:
    """Rank the holding candidates that reach the target by predicted steps (then expected
    error, then family order); list the others after them, in family order, with a reason."""
    family_index = {f: i for i, f in enumerate(FAMILIES)}
    ranked = sorted(
        (c for c in candidates if c.holds and c.predicted_steps is not None),
        key=lambda c: (
            c.predicted_steps,
            c.expected_error if c.expected_error is not None else 0.0,
            family_index[c.family],
        ),
    )
    out = [replace(c, rank=i + 1, reason=None) for i, c in enumerate(ranked)]
    for c in candidates:
        if c.holds and c.predicted_steps is None:
            out.append(replace(c, rank=None, reason="does not reach the target within the budget"))
        elif not c.holds:
            out.append(replace(c, rank=None))
    return tuple(out)
