"""Predict a network's loss curve from its kernel at initialisation (docs/mathematics.md §3-4).

The kernel model of a network on a data set (:class:`KernelModel`, the one such record: the
verdicts judge runs against it too) is the effective kernel ``K = c H`` (``c`` the loss
factor, docs/mathematics.md §0) in its eigenbasis and the initial error ``e0 = u(W0) - y`` in
that basis, ``xi0 = Q^T e0``. :func:`kernel_at_init` builds it (from the empirical Gram ``H(0)`` of a
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

from ._validate import finite_number
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


@dataclass(frozen=True, eq=False)
class KernelModel:
    """The linearised dynamics of a network (docs/mathematics.md §3): the eigenvalues of the
    effective kernel ``K = c H`` (sorted ascending, ``>= 0``), the initial residual in its
    eigenbasis ``modes = xi0 = Q^T e0`` (in the same order) and the loss factor ``c`` that
    turns ``1/2 ||e||^2`` into the loss minimised (1 half-sum, 2/n MSE).

    ``e0`` is the residual itself when the model was built from it (:meth:`from_spectrum`),
    so that it can be projected on another kernel; None for a model given in its eigenbasis
    (a stored one). Curves are computed in the eigenbasis, which is exact: ``Q`` only enters
    through ``xi0``.
    """

    eigenvalues: np.ndarray
    modes: np.ndarray
    loss_factor: float = 1.0
    e0: np.ndarray | None = None

    def __post_init__(self) -> None:
        lam = np.asarray(self.eigenvalues, dtype=np.float64).ravel()
        xi = np.asarray(self.modes, dtype=np.float64).ravel()
        if lam.size == 0 or lam.shape != xi.shape:
            raise ValueError(
                f"`eigenvalues` and `modes` must be non-empty and of one length, got "
                f"{lam.size} and {xi.size}"
            )
        if not (np.isfinite(lam).all() and np.isfinite(xi).all()):
            raise ValueError("`eigenvalues` and `modes` must be finite")
        if lam.min() < 0:
            raise ValueError(f"`eigenvalues` must be >= 0, got lambda_min = {lam.min():.3g}")
        order = np.argsort(lam, kind="stable")  # a sorted spectrum keeps its order
        object.__setattr__(self, "eigenvalues", lam[order])
        object.__setattr__(self, "modes", xi[order])
        object.__setattr__(self, "loss_factor", finite_number("loss_factor", self.loss_factor))

    @classmethod
    def from_spectrum(cls, spectrum: Spectrum, e0: np.ndarray, loss_factor: float) -> KernelModel:
        """The model of ``spectrum`` (of ``K = c H``, with eigenvectors) and the residual ``e0``."""
        Q = spectrum.eigenvectors
        if Q is None:
            raise ValueError("`spectrum` must hold eigenvectors (spectrum(K, vectors=True))")
        e0 = np.asarray(e0, dtype=np.float64)
        return cls(spectrum.eigenvalues, Q.T @ e0, loss_factor, e0)

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def eigenbasis(self) -> Spectrum:
        """``K`` in its own eigenbasis (``diag(eigenvalues)``), to pair with ``modes``."""
        from .kernels import Spectrum

        return Spectrum.diagonal(self.eigenvalues)

    def h0(self, rule: Rule | str) -> float:
        """``h_0 = lr lambda_min(K)``."""
        from .optim import parse

        return parse(rule).lr * self.lambda_min

    def curve(self, rule: Rule | str, steps: int) -> np.ndarray:
        """Exact loss curve ``L_0..L_steps`` of the linear ``rule`` (in loss units, times c)."""
        from .dynamics import predict_discrete

        return self.loss_factor * predict_discrete(self.eigenbasis, self.modes, rule, steps)

    def ode_curve(self, rule: Rule | str, times: np.ndarray) -> np.ndarray:
        """The loss of the rule's limiting ODE at ``times`` (in loss units, times c)."""
        from .dynamics import predict_ode

        return self.loss_factor * predict_ode(self.eigenbasis, self.modes, rule, times)

    def discrete_factor(self, rule: Rule | str) -> float:
        """The rule's asymptotic per-step loss factor ``q`` on this kernel (>= 1: unstable)."""
        from .optim import parse
        from .rates import predicted_rate

        q = predicted_rate(self.eigenvalues, rule).discrete_factor
        if q is None:
            raise ValueError(f"`rule` {parse(rule).spec!r} is nonlinear: it has no per-step factor")
        return float(q)


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


def kernel_at_init(
    model: nn.Module | None, data: Dataset, loss: str, device: str | None = None
) -> KernelModel:
    """The kernel model of ``model`` at its current (initial) weights on ``data``.

    The network is evaluated on a float64 copy (the theory side is float64 even for a float32
    run), on ``device`` (default: the model's), so that a sweep computes the Gram where it
    trains; the eigendecomposition is numpy's. ``model`` None: ``H^inf`` of the two-layer
    network (first layer) with ``e0 = -y``.
    """
    from .kernels import spectrum, two_layer_gram

    c = loss_factor(loss, data.n)
    if model is None:
        K_inf = spectrum(c * two_layer_gram(data.X, layer="first"), vectors=True)
        return KernelModel.from_spectrum(K_inf, -data.y, c)
    import copy

    import torch

    from .kernels import empirical_ntk

    net = copy.deepcopy(model).to(device=device, dtype=torch.float64)
    where = next(net.parameters()).device
    with torch.no_grad():
        X = torch.tensor(data.X, dtype=torch.float64, device=where)
        e0 = net(X).cpu().numpy() - data.y
    # a writable copy of the (read-only) data: torch warns on read-only arrays
    K = c * empirical_ntk(net, np.array(data.X))
    return KernelModel.from_spectrum(spectrum(K, vectors=True), e0, c)


def predict_curves(
    kernel: KernelModel, rule: Rule, steps: int, *, ode: bool = False
) -> PredictedCurves:
    """The exact loss curve of the linear ``rule`` on ``kernel`` for ``steps`` steps and, with
    ``ode``, that of its limiting ODE at the matching times ``rule.ode().times(lr, k)``
    (None when the rule has no limiting ODE)."""
    k = np.arange(steps + 1)
    loss = kernel.curve(rule, steps)
    limit = rule.ode() if ode else None
    if limit is None:
        return PredictedCurves(k, loss)
    times = limit.times(rule.lr, k)
    return PredictedCurves(k, loss, times, kernel.ode_curve(rule, times))


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
