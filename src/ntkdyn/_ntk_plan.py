"""Planning an empirical NTK within its memory budget, before anything is computed.

Private helper of ``_empirical_ntk``: the bytes of the returned kernel, which path fits the
rest of ``budget_bytes`` (the layer-wise closed form of ``_ntk_layers`` or the autodiff plan of
``_ntk_autodiff``), and the one refusal, naming ``budget_bytes`` with the estimates. The size
arithmetic itself lives in ``_budget``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import _ntk_autodiff
from ._budget import TooLarge, array_bytes, format_bytes
from ._ntk_autodiff import Plan
from ._ntk_layers import Layers, block_rows_for, capture_bytes
from ._ntk_layout import Layout

__all__ = ["BUDGET_KNOB", "Route", "refuse", "result_bytes", "route"]

#: What to change when a request does not fit (the end of every budget refusal).
BUDGET_KNOB = "raise `budget_bytes`, use fewer rows, or structure='trace' (an n x n kernel)"


def result_bytes(layout: Layout, reference: torch.Tensor) -> int:
    """The returned float64 array, plus the work array when it lives in another dtype or on
    another device (then both exist while it is copied)."""
    result = array_bytes(*layout.shape)
    if reference.dtype == torch.float64 and reference.device.type == "cpu":
        return result
    return result + array_bytes(*layout.shape, itemsize=reference.element_size())


@dataclass(frozen=True)
class Route:
    """How a kernel will be computed: the layer-wise path's row block (0: not that path), the
    autodiff plan (None: none fits, or not wanted), and the work bytes at the peak."""

    layer_rows: int
    autodiff: Plan | None
    peak_bytes: int


def route(
    model: nn.Module,
    values: dict[str, torch.Tensor],
    layers: Layers | None,
    layout: Layout,
    budget: int,
    result: int,
    block_rows: int | None,
    autodiff: bool,
) -> Route:
    """Plan the layer-wise path (when ``layers``) and the autodiff path (when ``autodiff``)
    within ``budget - result`` bytes; raise :class:`TooLarge` when neither fits."""
    itemsize = next(iter(values.values())).element_size()
    work_bytes = budget - result
    layer_rows, layer_need = 0, 0
    if layers is not None:
        rows = layout.n + (0 if layout.symmetric else layout.n2)
        captured = capture_bytes(model, layers, rows, layout.outputs, itemsize)
        layer_rows = block_rows_for(layout, work_bytes - captured, itemsize)
        layer_need = captured + 2 * itemsize * layout.block_elements(
            max(layer_rows, 1), max(layer_rows, 1)
        )
    autodiff_plan: Plan | int | None = None
    if autodiff:
        sizes = {k: v.numel() for k, v in values.items()}
        autodiff_plan = _ntk_autodiff.plan(sizes, layout, itemsize, work_bytes, block_rows)
    if layer_rows > 0:
        fallback = autodiff_plan if isinstance(autodiff_plan, Plan) else None
        return Route(layer_rows, fallback, layer_need)
    if isinstance(autodiff_plan, Plan):
        return Route(0, autodiff_plan, autodiff_plan.peak_bytes)
    if autodiff_plan is None or (layers is not None and layer_need < autodiff_plan):
        raise refuse(budget, result, layout, layer_need, "layer-wise work set")
    what = "Jacobian tile" if block_rows is None else f"Jacobian tile of {block_rows} rows"
    raise refuse(budget, result, layout, autodiff_plan, what)


def refuse(budget: int, result: int, layout: Layout, tile: int, what: str) -> TooLarge:
    """The refusal of a ``budget_bytes`` too small for the kernel plus ``tile`` bytes."""
    return TooLarge(
        f"`budget_bytes` {format_bytes(budget)} cannot hold the {layout.describe()} float64 "
        f"kernel ({format_bytes(result)}) and the smallest {what} ({format_bytes(tile)}); "
        + BUDGET_KNOB
    )
