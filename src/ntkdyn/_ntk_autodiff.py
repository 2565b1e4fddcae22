"""The autodiff path of ``empirical_ntk``: per-row Jacobians through ``torch.func``
(``vmap(jacrev(...))``), contracted within a memory budget (docs/mathematics.md §1.6).

Private helper of ``_empirical_ntk``. :func:`plan` splits the differentiated tensors into
*groups* before anything is computed:

* tensors whose Jacobian over all rows fits the budget together form one group: their
  Jacobian is formed once, for all rows, and contracted with one product per tensor (no row
  block is ever recomputed; a small model is one group, one pass);
* a tensor too large for that gets a group of its own, tiled over row blocks: two blocks of
  Jacobian rows at a time (rows ``I`` and ``J``, ``K[I, J] = J_I J_J^T``), each holding only
  that tensor's entries, so the recomputation is confined to the large tensors.

Products go straight into the work array (``Layout.accumulate``), a square kernel's only on
and above the block diagonal (in panels of ``PANEL_ROWS`` rows within a block), so besides
the Jacobians nothing of the kernel's size is held. Passing ``block_rows`` restores the single
all-tensor row tiling of earlier versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ._ntk_layout import Layout

__all__ = ["Group", "Plan", "autodiff_ntk", "plan", "row_jacobian"]

RowJacobian = Callable[[torch.Tensor], list[torch.Tensor]]

#: Rows of the panels a square kernel's row blocks are contracted in, on and above the
#: diagonal only: the lower half costs at most ``PANEL_ROWS / (2 rows)`` of a full product
#: (1000 rows: 0.13), while 256-row products still run at full BLAS speed.
PANEL_ROWS = 256


@dataclass(frozen=True)
class Group:
    """Tensors differentiated together; ``block_rows`` None: all rows at once."""

    names: tuple[str, ...]
    block_rows: int | None


@dataclass(frozen=True)
class Plan:
    """The groups of one autodiff kernel, the rows of the diagonal panels a square kernel's
    row blocks are contracted in, and the Jacobian bytes held at the peak."""

    groups: tuple[Group, ...]
    panel_rows: int
    peak_bytes: int


def plan(
    sizes: dict[str, int],
    layout: Layout,
    itemsize: int,
    work_bytes: int,
    block_rows: int | None,
) -> Plan | int:
    """Split the tensors (``sizes``: name -> element count) into groups within ``work_bytes``.

    Returns the plan, or the bytes of the smallest tile (two rows of the largest tensor's
    Jacobian; with ``block_rows``, two blocks of every tensor's) when even that does not fit.
    Products go straight into the work array (``Layout.accumulate``): nothing else is held.
    """
    per_row = layout.outputs * itemsize  # bytes of one row's Jacobian per parameter
    largest = max(layout.n, layout.n2)
    panel = min(PANEL_ROWS, largest)
    if block_rows is not None:
        rows = min(block_rows, largest)
        need = 2 * rows * per_row * sum(sizes.values())
        return Plan((Group(tuple(sizes), rows),), panel, need) if need <= work_bytes else need
    smallest = 2 * per_row * max(sizes.values())
    if smallest > work_bytes:
        return smallest
    all_rows = (layout.n + (0 if layout.symmetric else layout.n2)) * per_row  # per parameter
    groups: list[Group] = []
    current: list[str] = []
    current_size = 0
    peak = 0
    for name, size in sizes.items():
        if all_rows * size > work_bytes:  # too large for all rows at once: tiled on its own
            rows = min(work_bytes // (2 * per_row * size), largest)
            groups.append(Group((name,), rows))
            peak = max(peak, 2 * rows * per_row * size)
            continue
        if all_rows * (current_size + size) > work_bytes:
            groups.append(Group(tuple(current), None))
            current, current_size = [], 0
        current.append(name)
        current_size += size
        peak = max(peak, all_rows * current_size)
    if current:
        groups.append(Group(tuple(current), None))
    return Plan(tuple(groups), panel, peak)


def row_jacobian(
    model: nn.Module, values: dict[str, torch.Tensor], names: tuple[str, ...]
) -> RowJacobian:
    """``X block (r, ...) -> [d f(x_i) / d t]`` for the tensors ``names``, each ``(r, C, |t|)``.

    Every row is evaluated alone (``vmap`` over rows of one-row batches), so the model's rows
    must be independent; the other tensors of ``values`` are held fixed at their values.
    """
    fixed = {k: v for k, v in values.items() if k not in names}
    selected = {k: values[k] for k in names}

    def output(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **p}, (x.unsqueeze(0),)).reshape(-1)

    per_row = vmap(jacrev(output), in_dims=(None, 0))

    def rows(X: torch.Tensor) -> list[torch.Tensor]:
        jac = per_row(selected, X)
        return [jac[k].reshape(X.shape[0], jac[k].shape[1], -1) for k in names]

    return rows


def _accumulate(
    layout: Layout,
    work: torch.Tensor,
    rows2: slice,
    rows: slice,
    A: list[torch.Tensor],
    B: list[torch.Tensor] | None,
) -> None:
    """``work[rows2 x rows] += sum_t A[t] B[t]^T`` (``B`` None: a diagonal block)."""
    for t in range(len(A)):
        layout.accumulate(work, rows2, rows, A[t], None if B is None else B[t])


def _blocks(n: int, rows: int) -> list[slice]:
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def autodiff_ntk(
    model: nn.Module,
    values: dict[str, torch.Tensor],
    X: torch.Tensor,
    X2: torch.Tensor | None,
    layout: Layout,
    the_plan: Plan,
) -> torch.Tensor:
    """The kernel's work array (``layout.work_shape``) by the groups of ``the_plan``."""
    work = layout.allocate(X.dtype, X.device)
    for group in the_plan.groups:
        # one call per group: its Jacobians are freed before the next group's are formed
        jacobian = row_jacobian(model, values, group.names)  # looked up now: tests replace it
        if group.block_rows is None:
            _add_all_rows(work, jacobian, X, X2, layout, the_plan.panel_rows)
        else:
            _add_tiled(work, jacobian, X, X2, layout, group.block_rows, the_plan.panel_rows)
    return work


def _add_all_rows(
    work: torch.Tensor,
    jacobian: RowJacobian,
    X: torch.Tensor,
    X2: torch.Tensor | None,
    layout: Layout,
    panel_rows: int,
) -> None:
    """One group's Jacobian over all rows, formed once; a square kernel is contracted panel by
    panel on and above the diagonal."""
    A = jacobian(X)
    if X2 is not None:
        _accumulate(layout, work, slice(0, layout.n2), slice(0, layout.n), jacobian(X2), A)
        return
    for rows in _blocks(layout.n, panel_rows):
        _accumulate(layout, work, rows, rows, [a[rows] for a in A], None)
        after = slice(rows.stop, layout.n)
        if after.start < after.stop:
            _accumulate(layout, work, rows, after, [a[rows] for a in A], [a[after] for a in A])


def _add_tiled(
    work: torch.Tensor,
    jacobian: RowJacobian,
    X: torch.Tensor,
    X2: torch.Tensor | None,
    layout: Layout,
    block_rows: int,
    panel_rows: int,
) -> None:
    """One group tiled over row blocks, two blocks of Jacobian rows held at a time."""
    blocks = _blocks(layout.n, block_rows)
    if X2 is not None:
        for rows_i in _blocks(layout.n2, block_rows):
            A = jacobian(X2[rows_i])
            for rows_j in blocks:
                _accumulate(layout, work, rows_i, rows_j, A, jacobian(X[rows_j]))
        return
    for bi, rows_i in enumerate(blocks):
        A = jacobian(X[rows_i])
        for panel in _blocks(rows_i.stop - rows_i.start, panel_rows):
            rows = slice(rows_i.start + panel.start, rows_i.start + panel.stop)
            _accumulate(layout, work, rows, rows, [a[panel] for a in A], None)
            after = slice(rows.stop, rows_i.stop)
            if after.start < after.stop:
                rest = slice(panel.stop, rows_i.stop - rows_i.start)
                _accumulate(layout, work, rows, after, [a[panel] for a in A], [a[rest] for a in A])
        for rows_j in blocks[bi + 1 :]:
            _accumulate(layout, work, rows_i, rows_j, A, jacobian(X[rows_j]))
