"""Fused elementwise kernels (``torch.compile``) for the reparametrised two-layer step on CUDA.

In eager mode one step of the ensemble (``ensemble``) makes ~35 passes over ``(M, n)`` tensors
(each elementwise op reads and writes them), which on a GPU costs more than the one GEMM of the
reparametrisation. The two functions below are the same mathematics written as pure functions,
so that the compiler fuses them into a few kernels:

* ``forward(P, s a) -> s a relu(P)``: one pass after the GEMM ``P = W~_0 X~^T + C G``;
* ``backward_update``: ``D = [dL/du]_{net} (s a) 1{P > 0}`` (``= grad_C``), the update
  program of ``ntkdyn.optim.program`` with ``D`` as the gradient, the frozen-network mask,
  and in notebook mode ``grad_a = s sum_i [dL/du]_{net,i} relu(P_i)``; ``D`` is never
  written to memory.

Same mathematics as ``updates.LinearUpdate`` and ``ensemble``; only the rounding differs (the
compiler may contract multiply-adds). Used only where it pays (``ensemble`` decides).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..optim import GRADIENT, UpdateProgram

if TYPE_CHECKING:  # annotations only
    from .updates import LinearUpdate

__all__ = ["make_backward_update", "make_forward"]


# One compiled callable per structure, shared by every batch: a fresh closure per batch would
# make the compiler start over (and, past its cache limit, silently fall back to eager).
_CACHE: dict[object, Callable] = {}


def _forward(P: torch.Tensor, as_u: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(P, 0.0) * as_u[:, None]


def make_forward() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if "forward" not in _CACHE:
        _CACHE["forward"] = torch.compile(_forward, fullgraph=True)
    return _CACHE["forward"]


def make_backward_update(update: LinearUpdate, notebook: bool) -> Callable[..., tuple]:
    """The fused gradient + register update for ``update.program`` (``optim.program``)."""
    structure = update.program.structure
    key = ("backward", structure, notebook)
    if key not in _CACHE:
        _CACHE[key] = _compile_backward_update(update.program, notebook)
    return _CACHE[key]


def _compile_backward_update(program: UpdateProgram, notebook: bool) -> Callable[..., tuple]:
    # plain tuples: the compiled function closes over constants only
    increment = tuple((t.source, t.column) for t in program.increment.terms)
    auxiliary = tuple(tuple((t.source, t.column) for t in u.terms) for u in program.auxiliary)

    def backward_update(P, dldu, net, as_u, scale, coefs, frozen_u, param, *aux):
        E = dldu[net]
        D = E * as_u[:, None] * (P > 0)

        def col(i):
            return coefs[i][:, None]

        def source(c):
            return D if c == GRADIENT else aux[c - 1]

        def value(terms):  # the left-to-right sum of the terms (optim.program)
            acc = None
            for c, i in terms:
                term = source(c) * col(i)
                acc = term if acc is None else acc + term
            return torch.zeros_like(P) if acc is None else acc

        inc = value(increment)
        new_aux = [value(terms) for terms in auxiliary]
        out = [param + torch.where(frozen_u[:, None], 0.0, inc), *new_aux]
        if notebook:
            out.append((E * torch.clamp_min(P, 0.0)).sum(1) * scale)
        return tuple(out)

    return torch.compile(backward_update, fullgraph=True)
