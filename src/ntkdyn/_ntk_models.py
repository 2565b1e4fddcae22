"""Closed-form empirical NTKs of the package's own models, ``TwoLayerReLU`` and ``DeepReLU``
(docs/mathematics.md §1.1, 1.4, 1.5): no Jacobian is ever formed.

Private helper of ``_empirical_ntk``. Both models have one output per row; each function
returns ``J(X2) J(X)^T`` as an ``(n2, n)`` tensor (``X2`` None: the square ``J(X) J(X)^T``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .models import DeepReLU, TwoLayerReLU

__all__ = ["closed_form_for"]

ClosedForm = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None", dict], torch.Tensor]


def closed_form_for(model: nn.Module, values: dict[str, torch.Tensor]) -> ClosedForm | None:
    """The closed-form kernel function for this model and parameter selection, or None."""
    if isinstance(model, TwoLayerReLU) and set(values) <= {"W", "bias", "a"}:
        return _two_layer  # type: ignore[return-value]
    if isinstance(model, DeepReLU) and set(values) <= {
        f"weights.{h}" for h in range(model.depth + 1)
    }:
        return _deep  # type: ignore[return-value]
    return None


def _two_layer(
    model: TwoLayerReLU,
    X: torch.Tensor,
    X2: torch.Tensor | None,
    values: dict[str, torch.Tensor],
) -> torch.Tensor:
    """``sum_p J_p(X2) J_p(X)^T`` of a two-layer net (docs/mathematics.md §1.1, 1.4).

    With ``z = X W^T + b``, ``A = 1{z > 0}`` (torch's ``relu'(0) = 0``) and scale ``s``:
    ``W``: ``s^2 [(A_2 diag(a^2) A^T) o (X_2 X^T)]``; ``bias``: ``s^2 A_2 diag(a^2) A^T``;
    ``a``: ``s^2 relu(z_2) relu(z)^T``.
    """
    W = values.get("W", model.W.detach())
    a = values.get("a", model.a.detach())
    bias = values.get("bias", None if model.bias is None else model.bias.detach())
    z = torch.nn.functional.linear(X, W, bias)
    z2 = None if X2 is None else torch.nn.functional.linear(X2, W, bias)
    rows2 = X.shape[0] if X2 is None else X2.shape[0]
    gram = torch.zeros(rows2, X.shape[0], dtype=X.dtype, device=X.device)
    if "W" in values or "bias" in values:
        active = (z > 0).to(X.dtype)
        active2 = active if z2 is None else (z2 > 0).to(X.dtype)
        shared = (active2 * a.square()) @ active.T
        if "W" in values:
            gram += shared * (X @ X.T if X2 is None else X2 @ X.T)
        if "bias" in values:
            gram += shared
    if "a" in values:
        hidden = torch.relu(z)
        gram += (hidden if z2 is None else torch.relu(z2)) @ hidden.T
    return gram * model.output_scale**2


def _deep_features(
    model: DeepReLU, X: torch.Tensor, weights: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer ``h``: the hidden rows ``G^h`` (``G^0 = X``) and ``Delta^{h+1} = d f / d f^{h+1}``."""
    depth = model.depth
    hidden, active = [X], []
    for h in range(depth):
        pre = torch.nn.functional.linear(hidden[-1], weights[h])
        active.append((pre > 0).to(X.dtype))
        hidden.append(model.hidden_scale * torch.relu(pre))
    deltas: list[torch.Tensor] = [X] * depth  # placeholders, all overwritten below
    upstream = weights[depth].expand(X.shape[0], -1)  # d f / d g^L, one row per input
    for h in range(depth - 1, -1, -1):
        deltas[h] = model.hidden_scale * active[h] * upstream
        upstream = deltas[h] @ weights[h]
    return hidden, deltas


def _deep(
    model: DeepReLU,
    X: torch.Tensor,
    X2: torch.Tensor | None,
    values: dict[str, torch.Tensor],
) -> torch.Tensor:
    """``sum_p J_p(X2) J_p(X)^T`` of ``DeepReLU`` by backpropagating row-wise
    (docs/mathematics.md §1.5).

    ``d f / d W^h = delta^h (g^{h-1})^T`` with ``delta^h = d f / d f^h``, so layer ``h``
    contributes ``(Delta_2^h Delta^h^T) o (G_2^{h-1} G^{h-1}^T)``; the output layer contributes
    ``G_2^L G^L^T``; ``delta^h = sqrt(2/m) 1{f^h > 0} o (W^{h+1}^T delta^{h+1})``,
    ``delta^{L+1} = 1``.
    """
    depth = model.depth
    weights = [values.get(f"weights.{h}", model.weights[h].detach()) for h in range(depth + 1)]
    hidden, deltas = _deep_features(model, X, weights)
    hidden2, deltas2 = (hidden, deltas) if X2 is None else _deep_features(model, X2, weights)
    gram = torch.zeros(hidden2[0].shape[0], X.shape[0], dtype=X.dtype, device=X.device)
    if f"weights.{depth}" in values:
        gram += hidden2[depth] @ hidden[depth].T
    for h in range(depth - 1, -1, -1):
        if f"weights.{h}" in values:
            gram += (deltas2[h] @ deltas[h].T) * (hidden2[h] @ hidden[h].T)
    return gram
