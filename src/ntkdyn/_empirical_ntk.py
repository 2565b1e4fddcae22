"""Empirical NTK of any ``nn.Module``: ``J(X2) J(X)^T``, ``J = d f / d theta``, for models
with any number of outputs per row (docs/mathematics.md §1.1, 1.4, 1.5, 1.6).

Private; the public entry is ``ntkdyn.kernels`` (which re-exports ``empirical_ntk``,
``NTK_METHODS``, ``NTK_STRUCTURES`` and ``JACOBIAN_BUDGET_BYTES``). Three paths, chosen in
this order by ``method="auto"``:

* closed forms for ``TwoLayerReLU`` and ``DeepReLU`` (``_ntk_models``);
* the layer-wise closed form when every differentiated tensor belongs to an ``nn.Linear``
  (``_ntk_layers``): captured layer inputs and output gradients, no Jacobian;
* per-row Jacobians through ``torch.func`` (``_ntk_autodiff``), grouped by tensor and tiled
  over rows within the memory budget.

The result's layout for each ``structure`` is in ``_ntk_layout``, the planning within
``budget_bytes`` in ``_ntk_plan``. Everything that can be refused (bad arguments, modules
coupling rows through batch statistics, a budget too small for the kernel or for the smallest
tile) is refused before the kernel computation starts; the only work done before is one
forward pass over one row, which tells the number of outputs. Mixing across rows that no module
announces is caught by comparing row 0's outputs in a batch with those of row 0 alone.

The boundary conversion helpers also live here (not in ``kernels``) so that imports point one
way: ``kernels`` -> ``_empirical_ntk``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from . import _ntk_autodiff, _ntk_layers
from ._budget import TooLarge, check_budget, check_fits, format_bytes, kernel_bytes
from ._ntk_layout import STRUCTURES, Layout
from ._ntk_models import closed_form_for
from ._ntk_plan import BUDGET_KNOB, result_bytes, route
from ._validate import choice, integer

__all__ = ["JACOBIAN_BUDGET_BYTES", "NTK_METHODS", "NTK_STRUCTURES", "empirical_ntk"]

#: ``method`` choices of ``empirical_ntk``.
NTK_METHODS = ("auto", "closed_form", "layerwise", "autodiff")
#: ``structure`` choices of ``empirical_ntk``: the whole ``(n C, n C)`` kernel, its ``C``
#: diagonal blocks ``(C, n, n)``, or their mean ``(n, n)``.
NTK_STRUCTURES = STRUCTURES
#: Default memory for the Jacobian tiles (or the layer-wise path's captured tensors and work
#: blocks) of ``empirical_ntk``, on top of the returned kernel.
JACOBIAN_BUDGET_BYTES = 512 * 2**20


# --------------------------------------------------------------------------------------------
# Boundary conversion (shared with ``kernels``).


def _as_matrix(name: str, value: object) -> np.ndarray:
    """``value`` as a finite, non-empty 2-D float64 array, or ValueError naming ``name``."""
    array = _as_rows(name, value)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a non-empty 2-D array, got shape {array.shape}")
    return array


def _as_rows(name: str, value: object) -> np.ndarray:
    """``value`` as a finite, non-empty float64 array of rows ``(n, ...)``, at least 2-D."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real array, got {type(value).__name__}") from None
    if array.ndim < 2 or array.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty array of rows (n, features...), at least 2-D, "
            f"got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or inf values")
    return np.ascontiguousarray(array)  # torch refuses negative strides (X[::-1])


# --------------------------------------------------------------------------------------------
# Checks of the model.


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


def _refuse_coupled_rows(model: nn.Module) -> None:
    """Refuse modules that make a row's output depend on the other rows or on chance."""
    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (
            module.training or not module.track_running_stats
        ):
            raise ValueError(
                f"`model` has {kind} {name!r} normalising by batch statistics (training mode), "
                "which couples the rows: the kernel of a row is undefined; call model.eval()"
            )
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
            raise ValueError(
                f"`model` has {kind} {name!r} in training mode, so its outputs are random; "
                "call model.eval()"
            )


def _forward(model: nn.Module, values: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """The outputs for the rows ``X`` at ``values``, without a graph."""
    with torch.no_grad():
        return functional_call(model, values, (X,))


def _probe(model: nn.Module, values: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """The outputs ``(C,)`` of row 0 evaluated alone: the number of outputs per row."""
    try:
        out = _forward(model, values, X[:1])
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"`model` fails on one row of `X` (shape {(1, *X.shape[1:])}): {exc}"
        ) from None
    if out.ndim == 0 or out.shape[0] != 1:
        raise ValueError(
            "`model` must return one row of outputs per input row (first axis = rows), got "
            f"shape {tuple(out.shape)} for one row"
        )
    return out.reshape(-1)


def _check_rows_independent(first: torch.Tensor, alone: torch.Tensor) -> None:
    if not _ntk_layers.rows_independent(first, alone):
        raise ValueError(
            "`model` couples its rows: row 0's outputs change when it is evaluated with other "
            "rows (batch statistics or mixing across rows); the NTK needs every row's outputs "
            "to depend on that row alone"
        )


# --------------------------------------------------------------------------------------------
# The entry point.


def empirical_ntk(
    model: nn.Module,
    X: object,
    X2: object = None,
    *,
    params: Sequence[str] | Mapping[str, torch.Tensor] | None = None,
    method: str = "auto",
    structure: str = "full",
    block_rows: int | None = None,
    budget_bytes: int | None = None,
) -> np.ndarray:
    """Empirical NTK ``J(X2) J(X)^T`` with ``J = d f(X) / d theta`` (docs/mathematics.md §1.1,
    1.4, 1.5, 1.6): ``sum_p J_p J_p^T`` over the differentiated tensors ``p``.

    A model maps rows ``(n, ...)`` to outputs ``(n, C)`` (also ``(n,)`` or ``(n, 1)``: ``C = 1``;
    more trailing axes are flattened, row-major, into ``C``). Rows must be processed
    independently: row ``i``'s outputs may depend on input row ``i`` only. Modules that break
    this (batch norm using batch statistics, active dropout) are refused, and so is a model
    whose row 0 gives other outputs in a batch than alone; call ``model.eval()`` first.

    Args:
        model: any ``nn.Module``, e.g. ``TwoLayerReLU``, ``DeepReLU``, an MLP or a CNN.
        X: inputs ``(n, ...)``; only the first axis is rows. Converted to the dtype and device
            of the differentiated tensors.
        X2: optional second inputs ``(n2, ...)`` (same trailing shape): the cross kernel
            ``J(X2) J(X)^T``, not symmetrised. None: the square kernel of ``X``, symmetrised
            exactly.
        params: the tensors the kernel differentiates: None (every parameter with
            ``requires_grad``, so frozen layers are left out), a sequence of parameter or
            buffer names (e.g. ``["W", "a"]`` for a theory ``TwoLayerReLU`` with both layers
            trained, docs/mathematics.md §1.4), or a dict name -> tensor that also supplies the
            values to evaluate at.
        method: ``"auto"`` (the first that applies of: ``"closed_form"``; ``"layerwise"``,
            falling back to ``"autodiff"`` when its preconditions fail at run time),
            ``"closed_form"`` (``TwoLayerReLU`` and ``DeepReLU`` only), ``"layerwise"`` (every
            differentiated tensor is the weight or bias of an ``nn.Linear`` that runs once per
            forward pass on ``(rows, fan_in)`` inputs, its parameters used nowhere else) or
            ``"autodiff"`` (``torch.func`` per-row Jacobians; any model).
        structure: ``"full"``: the ``(n2 C, n C)`` kernel, entry ``[i2 C + c, i C + c']`` for
            output ``c`` of row ``i2`` of ``X2`` and output ``c'`` of row ``i`` of ``X``, the
            order of ``outputs.reshape(-1)``; ``"block-diagonal"``: ``(C, n2, n)``, block ``c``
            is ``J_c(X2) J_c(X)^T`` (cross-output terms dropped); ``"trace"``: ``(n2, n)``,
            the mean of those blocks ``(1/C) sum_c J_c(X2) J_c(X)^T``. For ``C = 1`` all three
            are the ``(n2, n)`` kernel (block-diagonal: ``(1, n2, n)``).
        block_rows: rows per Jacobian block of the autodiff path, every tensor at once (the
            tiling of earlier versions); None plans the blocks within the budget (the
            Jacobian of tensors that fit is formed once for all rows; larger tensors are
            tiled on their own).
        budget_bytes: memory for the returned float64 kernel plus the Jacobian tiles (or the
            layer-wise path's captured tensors and work blocks); activations of the model's
            own forward and backward passes are not counted. None: the kernel plus
            ``JACOBIAN_BUDGET_BYTES`` (512 MiB). A budget that cannot hold the kernel and
            the smallest tile is refused before any computation, with the estimate.

    Returns:
        float64 array of the shape ``structure`` gives, computed in the model's dtype.

    Raises:
        ValueError: a bad argument (the message names it); ``TooLarge`` (a ValueError) when
            the request cannot fit ``budget_bytes`` or the machine's available memory.
    """
    if not isinstance(model, nn.Module):
        # ntkdyn's boundary errors are all ValueErrors naming the field (not TypeError).
        message = f"`model` must be a torch.nn.Module, got {type(model).__name__}"
        raise ValueError(message)
    method = choice("method", method, NTK_METHODS)
    structure = choice("structure", structure, NTK_STRUCTURES)
    if block_rows is not None:
        block_rows = integer("block_rows", block_rows, minimum=1)
    if budget_bytes is not None:
        budget_bytes = integer("budget_bytes", budget_bytes, minimum=1)
    values = _resolve_params(model, params)
    reference = next(iter(values.values()))
    X_np = _as_rows("X", X)
    X2_np = None if X2 is None else _as_rows("X2", X2)
    if X2_np is not None and X2_np.shape[1:] != X_np.shape[1:]:
        raise ValueError(
            f"`X2` must have the trailing shape of `X`, {X_np.shape[1:]}, got {X2_np.shape[1:]}"
        )
    d = getattr(model, "d", None)  # the package's models know their input width
    if isinstance(d, int):
        for name, array in (("X", X_np), ("X2", X2_np)):
            if array is not None and (array.ndim != 2 or array.shape[1] != d):
                raise ValueError(f"`{name}` must have the model's {d} columns, got {array.shape}")
    _refuse_coupled_rows(model)
    closed = closed_form_for(model, values) if method in ("auto", "closed_form") else None
    if method == "closed_form" and closed is None:
        raise ValueError(
            "`method` 'closed_form' needs a TwoLayerReLU (params among W, bias, a) or a DeepReLU "
            f"(params weights.*), got {type(model).__name__} with params {sorted(values)}"
        )
    layers = None
    if method in ("auto", "layerwise") and closed is None:
        layers = _ntk_layers.linear_layers(model, values)
    if method == "layerwise" and layers is None:
        raise ValueError(
            "`method` 'layerwise' needs every differentiated tensor to be the weight or bias "
            f"of an nn.Linear, got {type(model).__name__} with params {sorted(values)}"
        )
    # torch.tensor copies: callers' arrays may be read-only (as_tensor would warn).
    X_t = torch.tensor(X_np, dtype=reference.dtype, device=reference.device)
    X2_t = None if X2_np is None else torch.tensor(X2_np, dtype=X_t.dtype, device=X_t.device)
    alone = _probe(model, values, X_t)
    layout = Layout(
        structure,
        X_t.shape[0] if X2_t is None else X2_t.shape[0],
        X_t.shape[0],
        alone.numel(),
        X2_t is None,
    )

    # Plan within the budget, and refuse before computing anything.
    result = result_bytes(layout, reference)
    budget = JACOBIAN_BUDGET_BYTES + result if budget_bytes is None else budget_bytes
    check_budget(
        "budget_bytes", budget, f"the {layout.describe()} float64 kernel", result, BUDGET_KNOB
    )
    plan = None
    if closed is None:
        autodiff = method != "layerwise"
        plan = route(model, values, layers, layout, budget, result, block_rows, autodiff)
    kernel = kernel_bytes(layout.n2, layout.n, blocks=layout.block_elements(1, 1))
    check_fits(
        "X",
        f"with {X_t.shape[0]} rows",
        f"its {layout.describe()} kernel",
        kernel + (0 if plan is None else plan.peak_bytes),
        "use fewer rows",
    )

    if plan is None:
        assert closed is not None
        with torch.no_grad():
            gram = closed(model, X_t, X2_t, values)
        return layout.finish(gram.reshape(layout.work_shape), complete=True)
    if plan.layer_rows > 0:
        assert layers is not None
        try:
            first = _ntk_layers.capture(model, values, X_t, layers, layout.outputs)
            _check_rows_independent(first.outputs[0], alone)
            second = None
            if X2_t is not None:
                second = _ntk_layers.capture(model, values, X2_t, layers, layout.outputs)
        except _ntk_layers.NotLayerwise as exc:
            if method == "layerwise":
                message = f"`method` 'layerwise' does not apply to this model: {exc}"
                raise ValueError(message) from None
            if plan.autodiff is None:
                raise TooLarge(
                    f"the layer-wise path does not apply ({exc}) and `budget_bytes` "
                    f"{format_bytes(budget)} cannot hold the autodiff path's Jacobian tiles; "
                    + BUDGET_KNOB
                ) from None
        else:
            work = _ntk_layers.layerwise_ntk(
                layout, layers, first, second, plan.layer_rows, X_t.dtype, X_t.device
            )
            return layout.finish(work)
    assert plan.autodiff is not None
    if X_t.shape[0] > 1:
        _check_rows_independent(_forward(model, values, X_t[:2])[0], alone)
    work = _ntk_autodiff.autodiff_ntk(model, values, X_t, X2_t, layout, plan.autodiff)
    return layout.finish(work)
