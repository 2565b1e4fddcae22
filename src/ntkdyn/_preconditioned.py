"""A network seen through a fixed diagonal preconditioner, for ``ntkdyn.adaptive``.

:class:`Preconditioned` re-parametrises a network at weights ``theta_s`` as
``theta = theta_s + sqrt(P) * phi`` with ``phi = 0``: its Jacobian in ``phi`` is
``J sqrt(P)``, so the empirical NTK that ``ntkdyn.linearize`` computes of it is the
preconditioned kernel ``J P J^T`` (docs/adaptive.md), from the one kernel machinery of the
package (``empirical_ntk``, autodiff path) and not from a second copy of it. The other helpers
give the Jacobian-vector product ``J d`` (a parameter displacement seen in function space) and
the column energies ``||J_p||^2`` of every parameter entry (the weights of the preconditioner
drift).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp

__all__ = ["Preconditioned", "column_energies", "function_displacement"]

#: Memory for one block of Jacobian rows in :func:`column_energies` (rows x parameters).
_JACOBIAN_BLOCK_BYTES = 256 * 2**20


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


class Preconditioned(nn.Module):
    """``x -> net(x; theta_s + scale * phi)`` with trainable ``phi`` (zeros) per tensor.

    Args:
        net: the network (float64); a private copy is kept with its parameters frozen, so only
            ``phi`` is differentiated.
        theta: the weights ``theta_s`` by parameter name.
        scale: ``sqrt(P)`` by parameter name (the shapes of ``theta``).
    """

    def __init__(
        self, net: nn.Module, theta: dict[str, torch.Tensor], scale: dict[str, torch.Tensor]
    ):
        super().__init__()
        self.net = copy.deepcopy(net)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.names = list(theta)
        self.phi = nn.ParameterDict(
            {_key(k): nn.Parameter(torch.zeros_like(theta[k])) for k in self.names}
        )
        for k in self.names:
            self.register_buffer("theta__" + _key(k), theta[k].detach().clone())
            self.register_buffer("scale__" + _key(k), scale[k].detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {
            k: getattr(self, "theta__" + _key(k))
            + getattr(self, "scale__" + _key(k)) * self.phi[_key(k)]
            for k in self.names
        }
        return functional_call(self.net, values, (x,))


def _outputs(net: nn.Module, values: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    out = functional_call(net, values, (X,))
    return out.reshape(X.shape[0], -1)


def function_displacement(
    net: nn.Module, theta: dict[str, torch.Tensor], d: dict[str, torch.Tensor], X: torch.Tensor
) -> torch.Tensor:
    """``J d`` at ``theta``: the first-order change ``(n, C)`` of the outputs on ``X`` when the
    parameters move by ``d``."""
    result = jvp(lambda p: _outputs(net, p, X), (theta,), (d,))
    return result[1].detach()


def column_energies(
    net: nn.Module, theta: dict[str, torch.Tensor], X: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``||J_p||^2 = sum_{i,c} (d f_{ic} / d theta_p)^2`` for every parameter entry ``p`` (the
    diagonal of ``J^T J``), by vector-Jacobian products over blocks of output rows."""
    result = vjp(lambda p: _outputs(net, p, X), theta)
    out, pullback = result[0], result[1]
    rows = out.numel()
    entries = sum(t.numel() for t in theta.values())
    block = max(1, min(rows, _JACOBIAN_BLOCK_BYTES // (8 * max(entries, 1))))
    energy = {k: torch.zeros_like(t) for k, t in theta.items()}
    basis = torch.eye(rows, dtype=out.dtype, device=out.device).reshape(rows, *out.shape)
    for lo in range(0, rows, block):
        (grads,) = torch.vmap(pullback)(basis[lo : lo + block])
        for k, g in grads.items():
            energy[k] += (g * g).sum(dim=0)
    return energy
