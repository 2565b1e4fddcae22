"""Fused elementwise kernels (``torch.compile``) for the reparametrised two-layer step on CUDA.

In eager mode one step of the ensemble (``ensemble``) makes ~35 passes over ``(M, n)`` tensors
(each elementwise op reads and writes them), which on a GPU costs more than the one GEMM of the
reparametrisation. The two functions below are the same mathematics written as pure functions,
so that the compiler fuses them into a few kernels:

* ``forward(P, s a) -> s a relu(P)``: one pass after the GEMM ``P = W~_0 X~^T + C G``;
* ``backward_update``: ``D = [dL/du]_{net} (s a) 1{P > 0}`` (``= grad_C``), the register
  machine ``inc = sum_c A[0,c] z_c - lr b_0 D``, ``z_r' = sum_c A[r,c] z_c - lr b_r D``, the
  frozen-network mask, and in notebook mode ``grad_a = s sum_i [dL/du]_{net,i} relu(P_i)``;
  ``D`` is never written to memory.

Same mathematics as ``updates.LinearUpdate`` and ``ensemble``; only the rounding differs (the
compiler may contract multiply-adds). Used only where it pays (``ensemble`` decides).
"""

from __future__ import annotations

import torch

__all__ = ["make_backward_update", "make_forward"]


# One compiled callable per structure, shared by every batch: a fresh closure per batch would
# make the compiler start over (and, past its cache limit, silently fall back to eager).
_CACHE: dict = {}


def _forward(P: torch.Tensor, as_u: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(P, 0.0) * as_u[:, None]


def make_forward():
    if "forward" not in _CACHE:
        _CACHE["forward"] = torch.compile(_forward, fullgraph=True)
    return _CACHE["forward"]


def make_backward_update(update, notebook: bool):
    """The fused gradient + register update for ``update`` (a ``LinearUpdate``'s structure)."""
    inc_terms = tuple(update._inc_terms)
    aux_terms = tuple((tuple(t), g) for t, g in update._aux_terms)
    key = ("backward", inc_terms, aux_terms, notebook)
    if key not in _CACHE:
        _CACHE[key] = _compile_backward_update(inc_terms, aux_terms, notebook)
    return _CACHE[key]


def _compile_backward_update(inc_terms, aux_terms, notebook):
    def backward_update(P, dldu, net, as_u, scale, coefs, frozen_u, param, *aux):
        E = dldu[net]
        D = E * as_u[:, None] * (P > 0)
        col = lambda i: coefs[i][:, None]
        inc = D * col(0)
        for c, i in inc_terms:
            inc = inc + aux[c - 1] * col(i)
        new_aux = []
        for terms, grad_col in aux_terms:
            new = None
            for c, i in terms:
                term = aux[c - 1] * col(i)
                new = term if new is None else new + term
            if grad_col is not None:
                term = D * col(grad_col)
                new = term if new is None else new + term
            new_aux.append(torch.zeros_like(P) if new is None else new)
        out = [param + torch.where(frozen_u[:, None], 0.0, inc), *new_aux]
        if notebook:
            out.append((E * torch.clamp_min(P, 0.0)).sum(1) * scale)
        return tuple(out)

    return torch.compile(backward_update, fullgraph=True)
