"""Records returned by :func:`ntkdyn.training.train`: one :class:`RunResult` per network.

Conventions (stated once here, relied on by the report and the store):

* ``losses[k]`` is the loss at the parameters after ``k`` optimizer steps, ``k = 0..steps``;
  ``losses[0]`` is the loss at initialisation, in the loss's own units (``ntkdyn.losses.Loss``):
  "half-sum" is ``1/2 sum_ic (F_ic - T_ic)^2`` (loss factor c = 1, docs/mathematics.md §0),
  "mse" is ``torch.nn.MSELoss()``, the mean over the ``n C`` outputs (c = 2/(nC), so the
  effective kernel is K = c H), "logistic" is the mean over the ``n C`` outputs and
  "cross-entropy" the mean over the n rows.
* ``outputs[j]`` are the network's outputs ``F (n, C)`` on X after ``output_steps[j]`` steps
  (``(n,)`` models give ``C = 1``); ``test_outputs[j]`` the same on ``X_test``.
* A network whose loss becomes non-finite or exceeds ``DIVERGENCE_FACTOR * losses[0]`` is
  frozen at that step ``k*``: ``status = "diverged"``, ``diverged_at = k*``, ``losses[k*]`` is
  the offending value and every later loss is NaN. Its ``params`` are the parameters at step
  ``k*`` (no update is applied from then on), and its diagnostics and recorded outputs after
  ``k*`` are NaN.
* Diagnostics use the empirical Gram ``H(t) = J J^T`` of *all trained parameters* (without the
  loss factor c; docs/mathematics.md §1.1 and 1.4), not the effective kernel ``K = c H``. For a
  model with C outputs it is the ``(nC, nC)`` Gram of the flattened outputs, row ``i C + c``
  for output c of input i (the order of ``outputs[j].reshape(-1)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..optim.rules import Rule

__all__ = ["DIVERGENCE_FACTOR", "Diagnostics", "RunResult"]

#: A loss above ``DIVERGENCE_FACTOR * L_0`` (or a non-finite loss) marks a network as diverged.
DIVERGENCE_FACTOR = 1e6


@dataclass(frozen=True)
class Diagnostics:
    """Kernel and weight diagnostics of one network at its checkpoints (docs/mathematics.md §1.1, 1.4, 6).

    Attributes:
        steps: ``(c,)`` checkpoint steps (always includes 0 and the last step).
        lambda_min: ``(c,)`` least eigenvalue of the empirical Gram ``H(t)``.
        lambda_max: ``(c,)`` largest eigenvalue of ``H(t)``.
        kernel_change: ``(c,)`` spectral norm ``||H(t) - H(0)||_2``.
        weight_change: ``(c,)`` ``||W(t) - W(0)||_F``: the first layer of a two-layer network;
            all trained parameters together for other models.
        pattern_change: ``(c,)`` fraction of the ``n * m`` ReLU activation indicators
            ``1{w_r . x_i + b_r > 0}`` that differ from initialisation (two-layer networks);
            None for other models, where it is not defined.
    """

    steps: np.ndarray
    lambda_min: np.ndarray
    lambda_max: np.ndarray
    kernel_change: np.ndarray
    weight_change: np.ndarray
    pattern_change: np.ndarray | None


@dataclass(frozen=True)
class RunResult:
    """The training record of one network (module docstring for the conventions).

    Attributes:
        losses: ``(steps + 1,)`` float64 loss curve; NaN after a divergence.
        status: ``"ok"`` or ``"diverged"``.
        diverged_at: the step at which the network was frozen, or None.
        params: the final ``state_dict`` of the network (CPU tensors, the training dtype):
            ``model.load_state_dict(result.params)`` restores the trained network.
        rule: the optimizer rule that trained it.
        width: the hidden width ``m`` (``model.width``), or None if the model has none.
        loss: the loss's name: one of ``ntkdyn.conventions.LOSSES`` or ``"custom"``.
        diagnostics: kernel/weight diagnostics at the checkpoints (None if switched off).
        output_steps: ``(k,)`` int64 steps at which outputs were recorded, ascending (None when
            ``outputs_at`` was None).
        outputs: ``(k, n, C)`` float64 outputs on X at those steps (None when not recorded).
        test_outputs: ``(k, n_test, C)`` float64 outputs on ``X_test`` (None without it).
    """

    losses: np.ndarray
    status: str
    diverged_at: int | None
    params: dict[str, torch.Tensor]
    rule: Rule
    width: int | None
    loss: str
    diagnostics: Diagnostics | None
    output_steps: np.ndarray | None = None
    outputs: np.ndarray | None = None
    test_outputs: np.ndarray | None = None

    @property
    def steps(self) -> int:
        """Number of optimizer steps that were requested."""
        return self.losses.shape[0] - 1

    @property
    def final_loss(self) -> float:
        """``losses[-1]`` (NaN for a diverged network)."""
        return float(self.losses[-1])


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of ``t`` that shares no storage with the batch it came from."""
    if t.device.type == "cpu":
        return t.clone(memory_format=torch.contiguous_format)
    return t.cpu()
