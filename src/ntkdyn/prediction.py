"""Predict a network's loss curve from its kernel at initialisation (docs/mathematics.md 3-4).

The kernel model of a network on a data set is the effective kernel ``K = c H`` (``c`` the
loss factor, docs/mathematics.md 0) with its eigenvectors, and the initial error
``e0 = u(W0) - y``. :func:`kernel_at_init` builds it (from the empirical Gram ``H(0)`` of a
network, or from ``H^inf`` with ``e0 = -y``, the infinite-width convention of zero output at
initialisation); :func:`predict_curves` runs the exact discrete recurrences and, on request,
the limiting ODE on it; :func:`predict_from_network` does both. ``ntkdyn predict`` and the
sweep (ntkdyn.experiments.sweep) both predict through this module.

Curves are in the units of the loss minimised: ``c * 1/2 ||e||^2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .conventions import loss_factor

if TYPE_CHECKING:
    from torch import nn

    from .data import Dataset
    from .kernels import Spectrum
    from .optim import Rule

__all__ = [
    "KernelModel",
    "NetworkPrediction",
    "PredictedCurves",
    "kernel_at_init",
    "predict_curves",
    "predict_from_network",
]


@dataclass(frozen=True)
class KernelModel:
    """The linearised dynamics: ``spectrum`` of ``K = c H`` (with eigenvectors), ``e0``, ``c``."""

    spectrum: Spectrum
    e0: np.ndarray
    loss_factor: float

    @property
    def modes(self) -> np.ndarray:
        """``e0`` in the eigenbasis of ``K``: ``q_j^T e0``, in ascending eigenvalue order."""
        return self.spectrum.eigenvectors.T @ self.e0


@dataclass(frozen=True)
class PredictedCurves:
    """Predicted losses at ``steps = 0..N``; ``times`` and ``ode_loss`` only when asked for."""

    steps: np.ndarray
    loss: np.ndarray
    times: np.ndarray | None = None
    ode_loss: np.ndarray | None = None


@dataclass(frozen=True)
class NetworkPrediction:
    """The kernel model of a network and the curves it predicts."""

    kernel: KernelModel
    curves: PredictedCurves


def kernel_at_init(model: nn.Module | None, data: Dataset, loss: str) -> KernelModel:
    """The kernel model of ``model`` at its current (initial) weights on ``data``.

    The network is evaluated on a float64 copy (the theory side is float64 even for a float32
    run). ``model`` None: ``H^inf`` of the two-layer network (first layer) with ``e0 = -y``.
    """
    from .kernels import spectrum, two_layer_gram

    c = loss_factor(loss, data.n)
    if model is None:
        return KernelModel(
            spectrum(c * two_layer_gram(data.X, layer="first"), vectors=True), -data.y, c
        )
    import copy

    import torch

    from .kernels import empirical_ntk

    net = copy.deepcopy(model).to(torch.float64)
    with torch.no_grad():
        e0 = net(torch.tensor(data.X, dtype=torch.float64)).numpy() - data.y
    # a writable copy of the (read-only) data: torch warns on read-only arrays
    K = c * empirical_ntk(net, np.array(data.X))
    return KernelModel(spectrum(K, vectors=True), e0, c)


def predict_curves(
    kernel: KernelModel, rule: Rule, steps: int, *, ode: bool = False
) -> PredictedCurves:
    """The exact loss curve of the linear ``rule`` on ``kernel`` for ``steps`` steps and, with
    ``ode``, that of its limiting ODE at the matching times ``rule.ode().times(lr, k)``
    (None when the rule has no limiting ODE)."""
    from .dynamics import predict_discrete, predict_ode

    c, spec, e0 = kernel.loss_factor, kernel.spectrum, kernel.e0
    k = np.arange(steps + 1)
    loss = c * predict_discrete(spec, e0, rule, steps)
    limit = rule.ode() if ode else None
    if limit is None:
        return PredictedCurves(k, loss)
    times = limit.times(rule.lr, k)
    return PredictedCurves(k, loss, times, c * predict_ode(spec, e0, rule, times))


def predict_from_network(
    data: Dataset,
    loss: str,
    rule: Rule,
    steps: int,
    *,
    model: nn.Module | None = None,
    ode: bool = False,
) -> NetworkPrediction:
    """Kernel model of ``model`` at initialisation (None: ``H^inf``, ``e0 = -y``) on ``data``
    with ``loss``, and the curves the linear ``rule`` is predicted to follow for ``steps``."""
    kernel = kernel_at_init(model, data, loss)
    return NetworkPrediction(kernel, predict_curves(kernel, rule, steps, ode=ode))
