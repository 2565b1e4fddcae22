"""The measuring side of ``ntkdyn.validity``: train the real network and watch its kernel.

Private; :func:`ntkdyn.validity.probe` is the entry. :func:`run_probe` trains a copy of the
network with the rule's torch optimizer and, at each checkpoint, measures what the kernel
model assumes stays put (docs/mathematics.md §1.1, §1.3):

* the empirical NTK ``H(t)`` (``ntkdyn.kernels.empirical_ntk``, in the structure of the
  linearisation), as the relative Frobenius drift ``||H(t) - H(0)||_F / ||H(0)||_F`` and the
  relative change of its least eigenvalue (every eigenvalue of the full multi-output kernel,
  of all blocks of a block-diagonal one);
* the ReLU gates: every call of ``torch.relu``, ``torch.nn.functional.relu`` or
  ``Tensor.relu`` (so every ``nn.ReLU`` module, and ntkdyn's own models) during the forward pass
  on the training inputs is recorded through a ``TorchFunctionMode``; the flip fraction is the
  share of recorded gates ``1{z > 0}`` that differ from step 0. Other activations (leaky ReLU,
  GELU, a hand-written ``clamp``) are not seen;
* the weights, as ``||W(t) - W(0)|| / ||W(0)||`` over all trained parameters together.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ._validate import integer
from .conventions import EIG_FLOOR_RTOL
from .losses import Loss
from .optim.rules import LinearRule, Rule

if TYPE_CHECKING:
    from ._kernel_operator import KernelOperator
    from .function_space import FunctionPrediction

__all__ = ["Linearisation", "ProbeMeasurements", "checkpoint_steps", "run_probe", "stable_lr_of"]


class Linearisation(Protocol):
    """What the probe reads of a :class:`ntkdyn.linearized.Linearized` (typed structurally:
    ``linearize`` imports ``validity``, so the import cannot point back)."""

    model: Any
    inputs: tuple[Any, Any] | None
    targets: np.ndarray
    loss: Loss
    kernel: KernelOperator

    def predict(
        self, rule: Rule | str, steps: int, *, outputs_at: int | Sequence[int] | None = None
    ) -> FunctionPrediction: ...

    def max_stable_lr(self, rule: Rule | str) -> float: ...

    def effective_eigenvalues(self) -> tuple[np.ndarray, float, str | None]: ...


# The functions whose outputs are ReLU gates; in-place forms included (nn.ReLU(inplace=True)).
_RELU_FUNCTIONS = frozenset(
    {torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_}
)


class _GateRecorder(TorchFunctionMode):
    """Records the sign pattern ``out > 0`` of every ReLU call, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[torch.Tensor] = []

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _RELU_FUNCTIONS and isinstance(out, torch.Tensor):
            self.gates.append((out.detach() > 0).reshape(-1).clone())
        return out


@dataclass(frozen=True)
class ProbeMeasurements:
    """What :func:`run_probe` measured.

    Attributes:
        losses: ``(steps + 1,)`` network loss at every step; ``inf`` from a divergence on.
        checkpoints: the checkpoint steps reached (ascending, starting at 0).
        kernel_drift, lambda_min_drift, weight_movement: one value per reached checkpoint.
        pattern_flips: the same for the ReLU gates, or None when the forward pass calls no
            ReLU.
        diverged_at: first step whose loss is not finite, or None.
    """

    losses: np.ndarray
    checkpoints: np.ndarray
    kernel_drift: np.ndarray
    lambda_min_drift: np.ndarray
    pattern_flips: np.ndarray | None
    weight_movement: np.ndarray
    diverged_at: int | None


def run_probe(
    model: torch.nn.Module,
    X: torch.Tensor,
    targets: np.ndarray,
    loss: Loss,
    rule: Rule,
    steps: int,
    checkpoints: np.ndarray,
    structure: str,
) -> ProbeMeasurements:
    """Train a float64 copy of ``model`` on ``(X, targets)`` for ``steps`` steps of ``rule``
    (module docstring); ``checkpoints`` are steps in ``[0, steps]`` that include 0."""
    net = copy.deepcopy(model)  # the linearisation keeps its network at W0
    n, C = targets.shape
    T = torch.tensor(np.array(targets), dtype=torch.float64, device=X.device)  # a copy
    params = {name: p for name, p in net.named_parameters() if p.requires_grad}
    W0 = torch.cat([p.detach().reshape(-1).clone() for p in params.values()])
    optimizer = rule.torch(list(params.values()))
    marks = set(checkpoints.tolist())
    losses = np.full(steps + 1, np.inf)
    reached: list[int] = []
    kernels: list[np.ndarray] = []
    gates: list[list[torch.Tensor]] = []
    moved: list[float] = []
    diverged_at = None
    for k in range(steps + 1):
        recorder = _GateRecorder() if k in marks else None
        if recorder is not None:
            with recorder:
                out = net(X)
        else:
            out = net(X)
        value = loss.torch(out.reshape(n, C), T)
        losses[k] = float(value.detach())
        if not np.isfinite(losses[k]):
            diverged_at = k
            losses[k:] = np.inf
            break
        if recorder is not None:
            reached.append(k)
            kernels.append(_kernel(net, X, structure))
            gates.append(recorder.gates)
            W = torch.cat([p.detach().reshape(-1) for p in params.values()])
            moved.append(_relative(float(torch.linalg.vector_norm(W - W0)), W0))
        if k == steps:
            break
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    drift, lam_drift = _kernel_drifts(kernels)
    return ProbeMeasurements(
        losses=losses,
        checkpoints=np.asarray(reached, dtype=np.int64),
        kernel_drift=drift,
        lambda_min_drift=lam_drift,
        pattern_flips=_flips(gates),
        weight_movement=np.asarray(moved, dtype=np.float64),
        diverged_at=diverged_at,
    )


def _kernel(net: torch.nn.Module, X: torch.Tensor, structure: str) -> np.ndarray:
    from .kernels import empirical_ntk

    return np.asarray(empirical_ntk(net, X, structure=structure), dtype=np.float64)


def _relative(distance: float, W0: torch.Tensor) -> float:
    norm = float(torch.linalg.vector_norm(W0))
    return distance / norm if norm > 0 else float("nan")


def _kernel_drifts(kernels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Relative Frobenius drift and relative least-eigenvalue change against the first kernel.

    The eigenvalue change is NaN when ``lambda_min(H(0))`` is not resolved (at most
    ``EIG_FLOOR_RTOL lambda_max``: a singular kernel has no relative change)."""
    H0 = kernels[0]
    norm0 = float(np.linalg.norm(H0))
    lam0 = np.linalg.eigvalsh(H0)  # (..., M): every block of a block-diagonal kernel
    lmin0, lmax0 = float(lam0.min()), float(lam0.max())
    resolved = lmin0 > EIG_FLOOR_RTOL * lmax0
    drift, lam_drift = [], []
    for H in kernels:
        drift.append(float(np.linalg.norm(H - H0)) / norm0 if norm0 > 0 else float("nan"))
        lmin = float(np.linalg.eigvalsh(H).min())
        lam_drift.append((lmin - lmin0) / lmin0 if resolved else float("nan"))
    return np.asarray(drift), np.asarray(lam_drift)


def _flips(gates: list[list[torch.Tensor]]) -> np.ndarray | None:
    """Fraction of ReLU gates differing from the first checkpoint's, per checkpoint."""
    if not gates or not gates[0]:
        return None
    first = torch.cat(gates[0])
    out = []
    for recorded in gates:
        now = torch.cat(recorded) if recorded else first
        if now.shape != first.shape:  # a data-dependent forward pass: no gate-by-gate match
            return None
        out.append(float((now != first).double().mean()))
    return np.asarray(out)


def checkpoint_steps(value: int | Sequence[int], steps: int) -> np.ndarray:
    """``checkpoints`` of :func:`ntkdyn.validity.probe` (an int N: N evenly spaced steps after
    0; or the steps) as sorted unique steps in ``[0, steps]`` with 0 added."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        count = integer("checkpoints", value, minimum=1)
        marks = np.round(np.linspace(0, steps, min(count, steps) + 1)).astype(np.int64)
    else:
        try:
            marks = np.asarray(list(value), dtype=np.float64)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(
                f"`checkpoints` must be an int or step indices, got {value!r}"
            ) from None
        if marks.ndim != 1 or not np.all(marks == np.round(marks)):
            raise ValueError(f"`checkpoints` must be integer steps, got {value!r}")
        if marks.size and (marks.min() < 0 or marks.max() > steps):
            raise ValueError(
                f"`checkpoints` must lie in [0, {steps}], got [{marks.min():g}, {marks.max():g}]"
            )
        marks = marks.astype(np.int64)
    return np.unique(np.concatenate([[0], marks]))


def stable_lr_of(lin: Linearisation, rule: LinearRule) -> float | None:
    """The rule's largest stable lr on the effective kernel (squared losses; None otherwise:
    for the others it is only a bound)."""
    if not lin.loss.is_squared:
        return None
    return lin.max_stable_lr(rule) if lin.effective_eigenvalues()[0][-1] > 0 else None
