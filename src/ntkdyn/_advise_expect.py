"""The error the advisor expects of a prediction, from a short validity probe (docs/advise.md).

The probe (``ntkdyn.validity.probe``) trains the real network for ``probe_steps`` steps of the
candidate's rule and measures its relative kernel drift ``D_p``. To first order the kernel
moves linearly with the parameters, so the drift at the predicted steps-to-target ``N`` is
extrapolated by the ratio of the linearised model's parameter movement,

    D_N = D_p * sqrt(max_{k <= N} ||theta_k - theta_0||^2 / max_{k <= p} ||theta_k - theta_0||^2),

the movement being exact in the kernel eigenbasis (``_advise_lockstep``, squared losses) or
from the predicted outputs (``||theta_k - theta_0||^2 = dF^T K^+ dF``, any loss). The expected
relative steps error is what a kernel off by ``D_N`` would do to the prediction: the steps to
target recomputed on the kernel scaled by ``1 + D_N`` and ``1 - D_N`` (for every linear rule
the same as scaling ``lr``), ``max |N_pm - N| / N``; inf when a scaled kernel never reaches the
target (it diverges or needs more than the budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._advise_lockstep import lockstep
from ._advise_search import steps_to_target
from .conventions import EIG_FLOOR_RTOL

if TYPE_CHECKING:
    from ._kernel_operator import Eigenbasis
    from .linearized import Linearized
    from .optim.rules import LinearRule
    from .prediction import KernelModel
    from .validity import ValidityRecord

__all__ = ["Expectation", "expect", "measured_drift", "probe_record"]

#: Checkpoints of the probe after step 0 (the last step among them): the drift at the end of
#: the probe is what is extrapolated; one more in the middle sees a drift that comes and goes.
PROBE_CHECKPOINTS = 2
#: Outputs recorded along a function-space prediction to find its largest movement.
_MOVEMENT_SAMPLES = 64


@dataclass(frozen=True)
class Expectation:
    """The extrapolated drift at the target and the relative steps error it implies (None:
    the nominal prediction does not reach the target, so there is no steps error)."""

    drift: float
    error: float | None


def probe_record(lin: Linearized, rule: LinearRule, steps: int) -> ValidityRecord:
    """The validity probe of ``rule`` on the linearised network (module docstring)."""
    from .validity import probe

    return probe(lin, rule, steps, checkpoints=PROBE_CHECKPOINTS)


def measured_drift(record: ValidityRecord) -> float:
    """The largest kernel drift the probe measured (inf once the network diverged)."""
    if record.diverged_at is not None:
        return float("inf")
    if record.kernel_drift is None:
        return float("nan")
    values = np.asarray(record.kernel_drift, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else float("nan")


def _relative_error(nominal: int | None, scaled: list[int | None]) -> float | None:
    if nominal is None:
        return None
    if any(s is None for s in scaled):
        return float("inf")
    return max(abs(s - nominal) for s in scaled if s is not None) / max(nominal, 1)


def expect(
    drift: float,
    rule: LinearRule,
    steps: int | None,
    *,
    probe_steps: int,
    target: float,
    budget: int,
    kernel: KernelModel | None = None,
    lin: Linearized | None = None,
    basis: Eigenbasis | None = None,
) -> Expectation:
    """:class:`Expectation` of ``rule`` predicted to reach ``target`` in ``steps`` (None: not
    within ``budget``), from the probe's drift ``drift`` over ``probe_steps``; on the
    eigenbasis of ``kernel`` (squared losses) or through ``lin.predict`` (any loss; ``basis``
    is ``lin.kernel.eigenbasis()``, factorised once by the caller)."""
    if not np.isfinite(drift):
        return Expectation(float("inf"), None if steps is None else float("inf"))
    horizon = budget if steps is None else steps
    if kernel is not None:
        lam, xi0 = kernel.eigenvalues, kernel.modes
        early = lockstep(lam, xi0, [rule], 0.0, probe_steps).movement_max[0]
        late = lockstep(lam, xi0, [rule], target, horizon).movement_max[0]
    else:
        assert lin is not None and basis is not None
        early = _movement(lin, basis, rule, probe_steps)
        late = _movement(lin, basis, rule, horizon)
    grown = float(np.sqrt(late / early)) if early > 0 else 1.0
    drift_at = drift * grown
    if drift_at >= 1.0:  # a kernel off by 100%: the lower scaling is no kernel at all
        return Expectation(drift_at, None if steps is None else float("inf"))
    scaled = [rule.with_lr(rule.lr * (1.0 + s * drift_at)) for s in (1.0, -1.0)]
    if kernel is not None:
        found = lockstep(kernel.eigenvalues, kernel.modes, scaled, target, budget, until="all")
        counts = [int(k) if k >= 0 else None for k in found.steps]
    else:
        assert lin is not None
        counts = [
            steps_to_target(lin.predict(r, budget, outputs_at=[0]).loss, target) for r in scaled
        ]
    return Expectation(drift_at, _relative_error(steps, counts))


def _movement(lin: Linearized, basis: Eigenbasis, rule: LinearRule, steps: int) -> float:
    """The largest ``dF^T K^+ dF`` over about :data:`_MOVEMENT_SAMPLES` steps in ``0..steps``
    of the function-space prediction (``dF = F_k - F_0``, ``K^+`` on the kernel's range)."""
    prediction = lin.predict(rule, steps, outputs_at=_MOVEMENT_SAMPLES)
    lam = basis.eigenvalues
    # eigenvalues at rounding level carry no movement, only noise divided by ~0
    resolved = lam > EIG_FLOOR_RTOL * float(lam.max(initial=0.0))
    inv = np.where(resolved, 1.0 / np.where(resolved, lam, 1.0), 0.0)
    best = 0.0
    for outputs in prediction.outputs:
        if not np.all(np.isfinite(outputs)):
            return float("inf")
        modes = basis.to_modes(outputs - lin.F0)
        best = max(best, float(np.dot(modes**2, inv)))
    return best
