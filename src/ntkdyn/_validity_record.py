"""The validity record, its summary line and its suggestion.

Private helper of ``ntkdyn.validity``, which re-exports :class:`ValidityRecord`.

The suggestion scales what was measured, to first order (docs/mathematics.md §1.3), by
``excess``: the largest ratio of a measured drift (kernel drift, flipped ReLU gates) to its
threshold. The least eigenvalue's relative change is left out (it is large whenever
``lambda_min`` is small and would scale nothing reliably), and so is the loss whenever a drift
was measured (its deviation integrates the drift over the run and overstates the scale).
Without any drift measured (a finished run without diagnostics) the loss's log-deviation
``|ln(L_net / L_pred)|``, which is ``~ delta ln D`` for a kernel error ``delta``
(``ntkdyn.validity``), over ``ln(1 + band)`` stands in.

* Wider: the kernel drift of a network of width ``m`` shrinks like ``1/sqrt(m)``, so a network
  ``excess^2`` times wider is expected back at the thresholds.
* Smaller step: with a stable limit known (a linear rule and a squared loss), a step above half
  of it is the likely cause (the top mode barely contracts and the network's curvature takes
  over), and half the limit is suggested; a step already below it is not the cause (over a
  whole run the weights travel about as far whatever the step) and no step is suggested.
  Without a known limit (Adam, other losses, a finished run) ``lr / excess`` is suggested: over
  a fixed number of steps the weights travel, and the kernel drifts, about linearly in ``lr``;
  without an excess to scale by (a diverged run, a departure no drift explains) ``lr / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ValidityRecord", "suggestion", "summary"]


@dataclass(frozen=True)
class ValidityRecord:
    """Whether a network stayed in its kernel regime (module docstring).

    Attributes:
        rule: the rule's spec string.
        steps: the steps trained (probe) or recorded (run).
        checkpoints: ``(c,)`` steps of the drift measurements (ascending, starting at 0).
        kernel_drift: ``(c,)`` relative kernel drift ``||H(t) - H(0)|| / ||H(0)||`` (norm in
            ``kernel_norm``), or None when not measured.
        lambda_min_drift: ``(c,)`` relative change ``lambda_min(H(t)) / lambda_min(H(0)) - 1``
            (NaN when ``H(0)`` is singular), or None.
        pattern_flips: ``(c,)`` share of ReLU gates ``1{z > 0}`` on the training inputs that
            differ from step 0, or None (no ReLU, or not measured).
        weight_movement: ``(c,)`` ``||W(t) - W(0)|| / ||W(0)||`` over the trained parameters,
            or None.
        network_loss: ``(steps + 1,)`` the network's loss (``inf`` or NaN after a divergence).
        predicted_loss: ``(steps + 1,)`` the kernel model's loss, or None (a rule without a
            prediction, e.g. Adam: the band is not judged).
        loss_ratio: ``(steps + 1,)`` ``network_loss / predicted_loss`` where judged (the
            prediction finite and above its float64 floor), NaN elsewhere; None without a
            prediction.
        departure_step: first judged step with ``|loss_ratio - 1| > band`` (or a non-finite
            network loss), None if the loss stays in the band.
        warning_step: first checkpoint at which a drift exceeds its threshold, or None.
        band: the band (``ntkdyn.validity.VALIDITY_BAND`` unless asked otherwise).
        kernel_norm: ``"frobenius"`` (``ntkdyn.validity.probe``) or ``"spectral"``
            (``ntkdyn.validity.from_run`` with the training engine's diagnostics, which record
            ``||H(t) - H(0)||_2``).
        diverged_at: first step with a non-finite network loss, or None.
        suggested_lr: a learning rate that should keep the network in its regime, or None when
            it holds (:meth:`summary`).
        width_factor: how much wider the network should be (drift shrinks like
            ``1/sqrt(width)``), or None.
        exceeded: the drifts that crossed their thresholds, with the threshold, e.g.
            ``("kernel drift 5%", "ReLU patterns 2.5%")``.
    """

    rule: str
    steps: int
    checkpoints: np.ndarray
    kernel_drift: np.ndarray | None
    lambda_min_drift: np.ndarray | None
    pattern_flips: np.ndarray | None
    weight_movement: np.ndarray | None
    network_loss: np.ndarray
    predicted_loss: np.ndarray | None
    loss_ratio: np.ndarray | None
    departure_step: int | None
    warning_step: int | None
    band: float
    kernel_norm: str = "frobenius"
    diverged_at: int | None = None
    suggested_lr: float | None = None
    width_factor: float | None = None
    exceeded: tuple[str, ...] = ()

    @property
    def judged(self) -> bool:
        """Whether the loss band was judged (there is a prediction to compare with)."""
        return self.loss_ratio is not None

    @property
    def holds(self) -> bool:
        """True when the loss stayed in the band and no drift crossed its threshold."""
        return self.departure_step is None and self.warning_step is None

    def summary(self) -> str:
        """One or two lines: the numbers, and what to change when the model does not hold."""
        return summary(self)


def suggestion(
    record: ValidityRecord, lr: float, stable_lr: float | None, drift_excess: float | None
) -> tuple[float | None, float | None]:
    """``(largest suggested lr or None, width factor or None)`` for a record that does not hold
    (module docstring). ``drift_excess`` is the largest drift over its threshold (None when no
    drift was measured: the loss's log-deviation stands in for it)."""
    scale = drift_excess if drift_excess is not None and drift_excess > 1.0 else None
    if drift_excess is None and record.loss_ratio is not None:
        judged = record.loss_ratio[~np.isnan(record.loss_ratio)]
        if judged.size:
            # |ln(L_net / L_pred)| ~ delta ln D is what scales with the drift delta
            with np.errstate(divide="ignore"):
                scale = float(np.max(np.abs(np.log(judged)))) / np.log1p(record.band)
    if scale is not None and not (np.isfinite(scale) and scale > 1.0):
        scale = None
    width = float(scale**2) if scale is not None and record.diverged_at is None else None
    if stable_lr is not None and np.isfinite(stable_lr):
        return (float(stable_lr / 2.0) if lr > stable_lr / 2.0 else None), width
    return float(lr / scale if width is not None and scale is not None else lr / 2.0), width


def summary(record: ValidityRecord) -> str:
    """One or two lines with the numbers and, when the model does not hold, what to change."""
    head = f"{record.rule} over {record.steps} steps"
    facts = _drift_facts(record)
    if record.holds:
        band = "loss band not judged (no kernel prediction for this rule)"
        if record.loss_ratio is not None:
            worst = _worst_ratio(record)
            band = (
                f"loss within {record.band:.0%} of the prediction "
                f"(largest |ratio - 1| {_pct(worst)})"
            )
        return f"kernel model holds for {head}: {band}" + (f"; {facts}" if facts else "")
    parts = [facts] if facts else []
    if record.warning_step is not None:
        over = ", ".join(record.exceeded)
        parts[0] += f" (over the thresholds {over} from step {record.warning_step})"
    if record.diverged_at is not None:
        parts.append(f"the network diverged at step {record.diverged_at}")
    elif record.departure_step is not None:
        assert record.loss_ratio is not None
        ratio = float(record.loss_ratio[record.departure_step])
        parts.append(
            f"its loss left the {record.band:.0%} band around the prediction at step "
            f"{record.departure_step} (network / predicted = {ratio:.3g})"
        )
    if record.loss_ratio is None:
        parts.append("loss band not judged (no kernel prediction for this rule)")
    wider = "a wider network"
    if record.width_factor is not None:
        factor = record.width_factor
        # beyond 1000x the first-order estimate says only that width alone will not do
        if factor > 1000:
            wider = "a far wider network (over 1000x, by the first-order estimate)"
        else:
            wider += f" (about {factor:.0f}x)" if factor >= 10 else f" (about {factor:.2g}x)"
    if record.suggested_lr is None:
        advice = f"try {wider}; the step is already within half its stable limit"
    else:
        advice = f"try {wider} or a smaller step (lr <= {record.suggested_lr:.2g})"
    # a departure no drift explains may as well be a wrong prediction: say only what is seen
    verdict = (
        "the network does not follow its kernel prediction"
        if record.warning_step is None and record.diverged_at is None
        else "the network is leaving its kernel regime"
    )
    return f"{head}: " + "; ".join(parts) + f": {verdict};\n{advice}"


def _drift_facts(record: ValidityRecord) -> str:
    """The drifts at the last checkpoint, e.g. ``kernel drift 12% and 6.5% of ReLU patterns
    flipped by step 30``."""
    last = -1
    facts = []
    if record.kernel_drift is not None:
        facts.append(f"kernel drift {_pct(record.kernel_drift[last])}")
    if record.lambda_min_drift is not None and np.isfinite(record.lambda_min_drift[last]):
        facts.append(f"lambda_min {_pct(record.lambda_min_drift[last], signed=True)}")
    if record.pattern_flips is not None:
        facts.append(f"{_pct(record.pattern_flips[last])} of ReLU patterns flipped")
    if record.weight_movement is not None:
        facts.append(f"weights moved {_pct(record.weight_movement[last])}")
    if not facts:
        return ""
    joined = facts[0] if len(facts) == 1 else ", ".join(facts[:-1]) + " and " + facts[-1]
    return f"{joined} by step {int(record.checkpoints[last])}"


def _worst_ratio(record: ValidityRecord) -> float:
    assert record.loss_ratio is not None
    judged = record.loss_ratio[~np.isnan(record.loss_ratio)]
    return float(np.max(np.abs(judged - 1.0))) if judged.size else 0.0


def _pct(value: float, *, signed: bool = False) -> str:
    """A share as a percentage: ``12%``, ``6.5%``, ``0.31%``, ``+230%``, ``4.1e-05%``; from
    1000x on as a factor, ``1.9e+16x``."""
    v = 100.0 * float(value)
    sign = "+" if signed else ""
    if abs(v) >= 1e5:  # a run that blew up: the digits mean nothing, the size does
        return f"{v / 100.0:{sign}.1e}x"
    if abs(v) >= 10.0:
        return f"{v:{sign}.0f}%"
    if abs(v) >= 0.01 or v == 0.0:
        return f"{v:{sign}.2g}%"
    return f"{v:{sign}.1e}%"
