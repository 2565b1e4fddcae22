"""Empirical NTK of any ``nn.Module``: ``H = sum_p J_p J_p^T`` (docs/mathematics.md §1.1, 1.4, 1.5).

Private; the public entry is ``ntkdyn.kernels`` (which re-exports ``empirical_ntk``,
``NTK_METHODS`` and ``JACOBIAN_BUDGET_BYTES``).

* Closed forms for ``TwoLayerReLU`` (docs/mathematics.md §1.1, 1.4) and ``DeepReLU`` (row-wise backprop,
  docs/mathematics.md §1.5): no Jacobian is ever formed.
* Any other model (or ``method="autodiff"``): per-row gradients through ``torch.func``
  (``vmap(grad(...))``), tiled over row blocks so memory stays within
  ``JACOBIAN_BUDGET_BYTES`` instead of ``n x #params``.

The boundary conversion helpers also live here (not in ``kernels``) so that imports point one
way: ``kernels`` -> ``_empirical_ntk``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ._budget import check_fits, kernel_bytes
from ._validate import choice, integer
from .models import DeepReLU, TwoLayerReLU

__all__ = ["JACOBIAN_BUDGET_BYTES", "NTK_METHODS", "empirical_ntk"]

#: ``method`` choices of ``empirical_ntk``.
NTK_METHODS = ("auto", "closed_form", "autodiff")
#: Memory allowed for the two row blocks of Jacobians held at once by ``empirical_ntk``.
JACOBIAN_BUDGET_BYTES = 512 * 2**20


# --------------------------------------------------------------------------------------------
# Boundary conversion (shared with ``kernels``).


def _as_matrix(name: str, value: object) -> np.ndarray:
    """``value`` as a finite, non-empty 2-D float64 array, or ValueError naming ``name``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real 2-D array, got {type(value).__name__}") from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"`{name}` must be a non-empty 2-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or inf values")
    return array


# --------------------------------------------------------------------------------------------
# Empirical kernels.


def _resolve_params(model: nn.Module, params: object) -> dict[str, torch.Tensor]:
    """The tensors to differentiate with respect to, by name (detached)."""
    available: dict[str, torch.Tensor] = dict(model.named_parameters())
    available.update(model.named_buffers())
    values: dict[str, torch.Tensor]
    if params is None:
        values = {k: p for k, p in model.named_parameters() if p.requires_grad}
    elif isinstance(params, Mapping):
        values = dict(params)
    elif isinstance(params, Sequence) and not isinstance(params, str):
        values = {}
        for key in params:
            if key not in available:
                raise ValueError(
                    f"`params` names {key!r}, which is not a parameter or buffer of the model; "
                    f"allowed: {sorted(available)}"
                )
            values[key] = available[key]
    else:
        raise ValueError(
            f"`params` must be None, a sequence of names or a dict name -> tensor, got {params!r}"
        )
    for key, value in values.items():
        if key not in available or not isinstance(value, torch.Tensor):
            raise ValueError(f"`params` entry {key!r} is not a tensor named like the model's")
    if not values:
        raise ValueError("`params` selects no tensor: the model has no trainable parameters")
    return {k: v.detach() for k, v in values.items()}


def _closed_form_for(model: nn.Module, values: dict[str, torch.Tensor]):
    """The closed-form kernel function for this model and parameter selection, or None."""
    if isinstance(model, TwoLayerReLU) and set(values) <= {"W", "bias", "a"}:
        return _closed_form_two_layer
    if isinstance(model, DeepReLU) and set(values) <= {
        f"weights.{h}" for h in range(model.depth + 1)
    }:
        return _closed_form_deep
    return None


def _closed_form_two_layer(
    model: TwoLayerReLU, X: torch.Tensor, values: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``sum_p J_p J_p^T`` of a two-layer net in closed form (docs/mathematics.md §1.1, 1.4).

    With ``z = X W^T + b``, ``A = 1{z > 0}`` (torch's ``relu'(0) = 0``) and scale ``s``:
    ``W``: ``s^2 [(A diag(a^2) A^T) o (X X^T)]``; ``bias``: ``s^2 A diag(a^2) A^T``;
    ``a``: ``s^2 relu(z) relu(z)^T``.
    """
    W = values.get("W", model.W.detach())
    a = values.get("a", model.a.detach())
    bias = values.get("bias", None if model.bias is None else model.bias.detach())
    z = torch.nn.functional.linear(X, W, bias)
    scale2 = model.output_scale**2
    gram = torch.zeros(X.shape[0], X.shape[0], dtype=X.dtype, device=X.device)
    if "W" in values or "bias" in values:
        active = (z > 0).to(X.dtype)
        shared = (active * a.square()) @ active.T
        if "W" in values:
            gram += shared * (X @ X.T)
        if "bias" in values:
            gram += shared
    if "a" in values:
        hidden = torch.relu(z)
        gram += hidden @ hidden.T
    return gram * scale2


def _closed_form_deep(
    model: DeepReLU, X: torch.Tensor, values: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``sum_p J_p J_p^T`` of ``DeepReLU`` by backpropagating row-wise (docs/mathematics.md §1.5).

    ``d f / d W^h = delta^h (g^{h-1})^T`` with ``delta^h = d f / d f^h``, so layer ``h``
    contributes ``(Delta^h Delta^h^T) o (G^{h-1} G^{h-1}^T)``; the output layer contributes
    ``G^L G^L^T``; ``delta^h = sqrt(2/m) 1{f^h > 0} o (W^{h+1}^T delta^{h+1})``,
    ``delta^{L+1} = 1``.
    """
    depth = model.depth
    weights = [values.get(f"weights.{h}", model.weights[h].detach()) for h in range(depth + 1)]
    hidden, active = [X], []
    for h in range(depth):
        pre = torch.nn.functional.linear(hidden[-1], weights[h])
        active.append((pre > 0).to(X.dtype))
        hidden.append(model.hidden_scale * torch.relu(pre))
    gram = torch.zeros(X.shape[0], X.shape[0], dtype=X.dtype, device=X.device)
    if f"weights.{depth}" in values:
        gram += hidden[depth] @ hidden[depth].T
    upstream = weights[depth].expand(X.shape[0], -1)  # d f / d g^L, one row per input
    for h in range(depth - 1, -1, -1):
        delta = model.hidden_scale * active[h] * upstream  # d f / d f^{h+1}
        if f"weights.{h}" in values:
            gram += (delta @ delta.T) * (hidden[h] @ hidden[h].T)
        upstream = delta @ weights[h]
    return gram


def _autodiff_ntk(
    model: nn.Module, X: torch.Tensor, values: dict[str, torch.Tensor], block_rows: int | None
) -> torch.Tensor:
    """``sum_p J_p J_p^T`` through per-row gradients (``vmap(grad(...))``), tiled over rows.

    Jacobians are formed for row blocks ``I``, ``J`` two at a time and contracted into
    ``K[I, J] = J_I J_J^T``, so memory is two blocks, not ``n x #params``.
    """
    names = list(values)

    def output(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x.unsqueeze(0),)).reshape(())

    per_row_grad = vmap(grad(output), in_dims=(None, 0))

    def jacobian(rows: slice) -> torch.Tensor:
        grads = per_row_grad(values, X[rows])
        return torch.cat([grads[k].reshape(grads[k].shape[0], -1) for k in names], dim=1)

    n = X.shape[0]
    if block_rows is None:
        row_bytes = sum(v.numel() for v in values.values()) * X.element_size()
        block_rows = max(1, JACOBIAN_BUDGET_BYTES // (2 * row_bytes))
    blocks = [slice(i, min(i + block_rows, n)) for i in range(0, n, block_rows)]
    gram = torch.empty(n, n, dtype=X.dtype, device=X.device)
    for bi, rows_i in enumerate(blocks):
        jac_i = jacobian(rows_i)
        gram[rows_i, rows_i] = jac_i @ jac_i.T
        for rows_j in blocks[bi + 1 :]:
            block = jac_i @ jacobian(rows_j).T
            gram[rows_i, rows_j] = block
            gram[rows_j, rows_i] = block.T
    return gram


def empirical_ntk(
    model: nn.Module,
    X: object,
    *,
    params: Sequence[str] | Mapping[str, torch.Tensor] | None = None,
    method: str = "auto",
    block_rows: int | None = None,
) -> np.ndarray:
    """Empirical NTK Gram ``H = sum_p J_p J_p^T``, ``J_p = d f(X) / d p`` (docs/mathematics.md §1.1, 1.5).

    Args:
        model: any ``nn.Module`` mapping ``(n, d)`` to ``n`` outputs (one per row, rows
            processed independently), e.g. ``TwoLayerReLU`` or ``DeepReLU``.
        X: inputs ``(n, d)``; converted to the model's dtype and device.
        params: the tensors the kernel differentiates: None (every parameter with
            ``requires_grad``: ``W`` for a "theory" ``TwoLayerReLU``, ``W, bias, a`` for a
            "notebook" one), a sequence of parameter or buffer names (e.g. ``["W", "a"]``
            for a theory net with both layers trained, docs/mathematics.md §1.4), or a dict name -> tensor
            that also supplies the values to evaluate at.
        method: ``"auto"`` (closed form for ``TwoLayerReLU`` and ``DeepReLU``, autodiff
            otherwise), ``"closed_form"`` (those two only) or ``"autodiff"`` (``torch.func``).
        block_rows: rows per Jacobian block of the autodiff path; None picks the largest block
            with two blocks within ``JACOBIAN_BUDGET_BYTES``.

    Returns:
        ``(n, n)`` float64 array (computed in the model's dtype), exactly symmetric: a Gram is
        symmetric, but ``J J^T`` in floating point is only symmetric up to the BLAS's
        summation order, so the result is symmetrised here.
    """
    if not isinstance(model, nn.Module):
        # ntkdyn's boundary errors are all ValueErrors naming the field (not TypeError).
        message = f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        raise ValueError(message)
    method = choice("method", method, NTK_METHODS)
    if block_rows is not None:
        block_rows = integer("block_rows", block_rows, minimum=1)
    values = _resolve_params(model, params)
    reference = next(iter(values.values()))
    X_np = _as_matrix("X", X)
    check_fits(
        "X",
        f"with {X_np.shape[0]} rows",
        "its n x n kernel",
        kernel_bytes(X_np.shape[0]),
        "use fewer rows",
    )
    d = getattr(model, "d", None)  # the package's models know their input width
    if isinstance(d, int) and X_np.shape[1] != d:
        raise ValueError(f"`X` must have the model's {d} columns, got {X_np.shape[1]}")
    # torch.tensor copies: callers' arrays may be read-only (as_tensor would warn).
    X_t = torch.tensor(X_np, dtype=reference.dtype, device=reference.device)
    closed_form = _closed_form_for(model, values)
    if method == "closed_form" and closed_form is None:
        raise ValueError(
            "`method` 'closed_form' needs a TwoLayerReLU (params among W, bias, a) or a DeepReLU "
            f"(params weights.*), got {type(model).__name__} with params {sorted(values)}"
        )
    with torch.no_grad():
        probe = model(X_t[:1])
    if probe.numel() != 1:
        raise ValueError(
            f"`model` must return one output per row, got shape {tuple(probe.shape)} for one row"
        )
    if closed_form is not None and method != "autodiff":
        with torch.no_grad():
            gram = closed_form(model, X_t, values)
    else:
        gram = _autodiff_ntk(model, X_t, values, block_rows)
    gram = gram.detach().cpu().numpy().astype(np.float64)
    return (gram + gram.T) / 2.0
