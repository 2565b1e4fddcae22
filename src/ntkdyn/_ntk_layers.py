"""The layer-wise closed form of ``empirical_ntk`` for ``nn.Linear`` parameters
(docs/mathematics.md §1.6).

Private helper of ``_empirical_ntk``. For a layer ``z = x W^T + b`` applied once to the rows,
``d f_c(x_i) / d W = delta_ic x_i^T`` and ``d f_c(x_i) / d b = delta_ic`` with
``delta_ic = d f_c(x_i) / d z_i``, so the layer's share of the kernel is, without forming a
Jacobian,

    K_W[(i, c), (j, c')] = (delta_ic . delta_jc') (x_i . x_j),
    K_b[(i, c), (j, c')] =  delta_ic . delta_jc'.

The inputs ``x`` are captured by forward hooks, and ``delta_c`` for all rows at once by one
backward pass of ``sum_i f_c(x_i)`` per output ``c`` (rows are independent, so the gradient
with respect to row ``i`` of ``z`` is row ``i``'s own). Cost: one forward and ``C`` backward
passes plus, per layer, products of ``n C x fan_out`` and ``n x fan_in`` matrices, instead of
the ``n C x #params`` Jacobian.

Preconditions, checked while capturing (:class:`NotLayerwise` says which failed): every
differentiated tensor is the weight or bias of an ``nn.Linear`` (whose own ``forward`` runs),
each such layer runs exactly once per forward pass on a 2-D ``(rows, fan_in)`` input, and the
parameters are used nowhere else: the gradient autograd reports for ``W`` must equal
``sum_i delta_ic x_i^T``. Row independence itself is checked by the caller
(:func:`rows_independent`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ._budget import array_bytes
from ._ntk_layout import Layout

__all__ = [
    "Captured",
    "NotLayerwise",
    "capture",
    "capture_bytes",
    "layerwise_ntk",
    "linear_layers",
    "rows_independent",
]


class NotLayerwise(Exception):
    """The model does not meet the layer-wise closed form's preconditions (the message says
    which); the caller falls back to autodiff or reports it."""


#: Largest row block of the layer-wise contraction: a square kernel's blocks are computed on
#: and above the block diagonal only, so smaller blocks skip more of the lower half (at most
#: ``1 / (2 #blocks)`` of the products is spent on it), while 1024-row products still run at
#: full BLAS speed.
MAX_BLOCK_ROWS = 1024

#: Per layer: the parameter names of its selected ``weight`` and ``bias`` (either may be absent).
Layers = dict[str, dict[str, str]]


def linear_layers(model: nn.Module, values: dict[str, torch.Tensor]) -> Layers | None:
    """The selected tensors grouped by the ``nn.Linear`` holding them, or None if one is not
    the weight or bias of an ``nn.Linear`` running ``nn.Linear.forward``."""
    modules = dict(model.named_modules())
    layers: Layers = {}
    for name in values:
        prefix, _, leaf = name.rpartition(".")
        module = modules.get(prefix)
        if (
            not isinstance(module, nn.Linear)
            or type(module).forward is not nn.Linear.forward
            or leaf not in ("weight", "bias")
        ):
            return None
        layers.setdefault(prefix, {})[leaf] = name
    return layers


def capture_bytes(model: nn.Module, layers: Layers, rows: int, outputs: int, itemsize: int) -> int:
    """Bytes of the captured inputs and output gradients of ``layers`` over ``rows`` rows."""
    modules = dict(model.named_modules())
    total = 0
    for name in layers:
        module = modules[name]
        assert isinstance(module, nn.Linear)
        features = module.in_features + outputs * module.out_features
        total += array_bytes(rows, features, itemsize=itemsize)
    return total


@dataclass(frozen=True)
class Captured:
    """What one set of rows contributes: the outputs ``(rows, C)`` and, per layer, its input
    ``x (rows, fan_in)`` and output gradients ``delta (rows, C, fan_out)``."""

    outputs: torch.Tensor
    inputs: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]


def rows_independent(batch_first: torch.Tensor, alone: torch.Tensor) -> bool:
    """Whether row 0's outputs in a batch equal its outputs evaluated alone.

    The tolerance is ``sqrt(eps)`` of the dtype relative to the largest output: far above the
    rounding by which a product over a batch and over one row may differ (a few eps per
    layer), far below the O(1) change that batch statistics or mixing across rows make.
    """
    tol = math.sqrt(torch.finfo(alone.dtype).eps)
    scale = float(torch.max(torch.abs(alone))) if alone.numel() else 0.0
    gap = float(torch.max(torch.abs(batch_first.reshape(-1) - alone.reshape(-1))))
    return gap <= tol * max(scale, torch.finfo(alone.dtype).tiny)


def capture(
    model: nn.Module,
    values: dict[str, torch.Tensor],
    X: torch.Tensor,
    layers: Layers,
    outputs: int,
) -> Captured:
    """One forward pass over ``X`` with hooks, and ``C`` backward passes (see the module)."""
    rows = X.shape[0]
    modules = dict(model.named_modules())
    params = {k: v.detach().requires_grad_(True) for k, v in values.items()}
    calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in layers}

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            calls[name].append((args[0], output))

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    try:
        with torch.enable_grad():
            out = functional_call(model, params, (X,))
    finally:
        for handle in handles:
            handle.remove()
    if out.ndim == 0 or out.shape[0] != rows or out[0].numel() != outputs:
        raise NotLayerwise(
            f"for {rows} rows the model returns shape {tuple(out.shape)}, not {rows} rows of "
            f"{outputs} outputs"
        )
    if not out.requires_grad:
        raise NotLayerwise("the outputs do not depend on the differentiated tensors")
    out = out.reshape(rows, outputs)
    inputs, zs = {}, {}
    for name, seen in calls.items():
        if len(seen) != 1:
            raise NotLayerwise(f"nn.Linear {name!r} runs {len(seen)} times per forward pass")
        x, z = seen[0]
        if x.ndim != 2 or x.shape[0] != rows:
            raise NotLayerwise(
                f"nn.Linear {name!r} gets input of shape {tuple(x.shape)}, not ({rows}, fan_in)"
            )
        if not z.requires_grad:  # e.g. run under torch.no_grad inside the model
            raise NotLayerwise(f"the output of nn.Linear {name!r} is not differentiable")
        inputs[name], zs[name] = x.detach(), z
    deltas = {
        name: torch.zeros(rows, outputs, z.shape[1], dtype=X.dtype, device=X.device)
        for name, z in zs.items()
    }
    names = list(layers)
    tensors = [zs[name] for name in names]
    owned = [(name, leaf, key) for name in names for leaf, key in layers[name].items()]
    for c in range(outputs):
        grads = torch.autograd.grad(
            out[:, c].sum(),
            tensors + [params[key] for _, _, key in owned],
            retain_graph=c + 1 < outputs,
            allow_unused=True,
        )
        for name, g in zip(names, grads[: len(names)], strict=True):
            if g is not None:
                deltas[name][:, c] = g
        for (name, leaf, key), g in zip(owned, grads[len(names) :], strict=True):
            _check_gradient(key, leaf, g, deltas[name][:, c], inputs[name])
    return Captured(out.detach(), inputs, deltas)


def _check_gradient(
    key: str, leaf: str, reported: torch.Tensor | None, delta: torch.Tensor, x: torch.Tensor
) -> None:
    """Autograd's gradient of ``sum_i f_c(x_i)`` for the tensor ``key`` must be the layer-wise
    one (``delta^T x`` for a weight, ``sum_i delta_i`` for a bias): otherwise the tensor is
    also used outside its layer's one call (tied or reused weights)."""
    expected = delta.T @ x if leaf == "weight" else delta.sum(0)
    got = torch.zeros_like(expected) if reported is None else reported.reshape(expected.shape)
    # |delta^T x|_F <= |delta|_F |x|_F bounds the entries' sums; rounding is a few eps of it.
    bound = float(torch.linalg.norm(delta)) * (
        float(torch.linalg.norm(x)) if leaf == "weight" else math.sqrt(delta.shape[0])
    )
    gap = float(torch.linalg.norm(got - expected))
    if gap > math.sqrt(torch.finfo(delta.dtype).eps) * max(bound, torch.finfo(delta.dtype).tiny):
        raise NotLayerwise(
            f"{key!r} is used outside its nn.Linear's one call (its gradient is not the "
            "layer's own; tied or reused weights)"
        )


def block_rows_for(layout: Layout, work_bytes: int, itemsize: int) -> int:
    """The largest row block, at most ``MAX_BLOCK_ROWS``, whose two block-sized temporaries
    fit ``work_bytes`` (0: none fits)."""
    largest = min(max(layout.n, layout.n2), MAX_BLOCK_ROWS)
    per_block = 2 * itemsize * layout.block_elements(1, 1)  # times rows^2
    rows = math.isqrt(max(work_bytes, 0) // per_block)
    return min(rows, largest)


def layerwise_ntk(
    layout: Layout,
    layers: Layers,
    first: Captured,
    second: Captured | None,
    block_rows: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """The kernel's work array from the captured rows of ``X`` (``first``) and ``X2``
    (``second``, None for a square kernel), over row blocks of ``block_rows``."""
    work = layout.allocate(dtype, device)
    left = first if second is None else second
    blocks = [slice(i, min(i + block_rows, layout.n)) for i in range(0, layout.n, block_rows)]
    blocks2 = [slice(i, min(i + block_rows, layout.n2)) for i in range(0, layout.n2, block_rows)]
    for bi, rows_i in enumerate(blocks2):
        for bj, rows_j in enumerate(blocks):
            if layout.symmetric and bj < bi:
                continue  # mirrored from (bj, bi)
            same = layout.symmetric and bi == bj
            layout.add(
                work, rows_i, rows_j, _block(layout, layers, left, first, rows_i, rows_j, same)
            )
    return work


def _block(
    layout: Layout,
    layers: Layers,
    left: Captured,
    right: Captured,
    rows_i: slice,
    rows_j: slice,
    same: bool,
) -> torch.Tensor:
    """``sum_layers (delta . delta') (x . x' [+ 1])`` for rows ``rows_i`` x ``rows_j``."""
    total: torch.Tensor | None = None
    for name, owned in layers.items():
        delta = left.deltas[name][rows_i]
        block = layout.contract(delta, None if same else right.deltas[name][rows_j])
        if "weight" in owned:
            x = left.inputs[name][rows_i]
            factor = x @ (x if same else right.inputs[name][rows_j]).T
            if "bias" in owned:
                factor += 1.0
            layout.scale(block, factor)
        total = block if total is None else total.add_(block)
    assert total is not None
    return total
