"""``train``: many networks at once, each with its own optimizer rule (docs/design.md Performance).

Networks that share ``X`` and ``y`` are grouped into batches and every batch runs one step loop:

* :class:`~ntkdyn.models.TwoLayerReLU` networks of one parameterisation trained on a squared
  loss go through the width-concatenated fast path (``ensemble``): one GEMM forward and one
  backward over the total width per step, optionally in the input-space reparametrisation
  ``W = W_0 + C X``. Networks trained with a nonlinear rule form one batch per rule class
  (Adam, RMSprop: no linear description, so they run in W-space); networks with linear rules of
  any kind and schedule share one batch.
* any other ``nn.Module``, or any network on another loss, goes through ``torch.func``
  (``generic``): networks of the same class with the same parameter names and shapes are
  stacked and vmapped as one batch. Models may take inputs of any shape ``(n, ...)`` and return
  ``(n,)``, ``(n, 1)`` or ``(n, C)`` outputs.

Losses (``ntkdyn.losses``, docs/mathematics.md §0): ``"half-sum"`` is ``1/2 sum (F - T)^2``
(c = 1), ``"mse"`` is ``torch.nn.MSELoss()`` (mean over the nC outputs, c = 2/(nC)): the dynamics
are those of the effective kernel ``K = c H``. ``"logistic"``, ``"cross-entropy"`` and custom
torch losses train on the generic path. Divergence handling and the result records:
``result.py``; the boundary checks: ``_inputs.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .._validate import choice, integer
from ..losses import Loss, resolve_loss
from ..models import TwoLayerReLU
from ..optim.rules import Rule
from ._inputs import (
    as_inputs,
    check_custom_loss,
    check_models,
    check_outputs_at,
    check_rules,
    output_columns,
    resolve_device,
    targets,
)
from ._precision import matmul_precision, resolve_precision, warn_tf32_off_cuda
from .ensemble import TwoLayerEnsemble
from .generic import GenericEnsemble
from .loop import BatchRun, run_batch
from .result import RunResult

__all__ = ["checkpoint_steps", "train"]


def checkpoint_steps(steps: int, every: int | None) -> set[int]:
    """The steps at which :func:`train` takes its diagnostics: the first and the last, and
    every multiple of ``every``."""
    return {0, steps} | (set(range(0, steps + 1, every)) if every else set())


def _group_key(model: nn.Module, rule: Rule, fast: bool) -> tuple:
    kind = "linear" if rule.is_linear else type(rule).__name__
    if fast and isinstance(model, TwoLayerReLU):
        return ("two-layer", model.parameterization, kind)
    params = tuple((k, tuple(p.shape), p.requires_grad) for k, p in model.named_parameters())
    buffers = tuple((k, tuple(b.shape), b.dtype) for k, b in model.named_buffers())
    return ("generic", type(model), params, buffers, kind)


def train(
    models: nn.Module | Sequence[nn.Module],
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    rules: Rule | str | Sequence[Rule | str],
    steps: int,
    *,
    loss: str | Loss | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "half-sum",
    outputs_at: Iterable[int] | None = None,
    X_test: torch.Tensor | np.ndarray | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    diagnostics_every: int | None = None,
    diagnostics: bool = True,
    progress: Callable[[int, int], None] | None = None,
    reparametrize: bool | str = "auto",
    allow_tf32: bool = False,
    fast_path: bool = True,
) -> list[RunResult]:
    """Train every network in ``models`` on ``(X, y)`` for ``steps`` full-batch steps.

    Each network follows its own rule; the models passed in are left unchanged (their tensors
    are copied). Losses are recorded before the first step and after every step, in the loss's
    own units (module doc for the losses and the paths, ``result.py`` for divergence and the
    records).

    Args:
        models: an ``nn.Module`` mapping ``X (n, ...)`` to outputs ``(n,)``, ``(n, 1)`` or
            ``(n, C)``, or a list of them.
        X: ``(n, ...)`` inputs (tensor or array; e.g. ``(n, d)``, or ``(n, 1, 8, 8)`` for a CNN).
        y: targets, read by :meth:`ntkdyn.losses.Loss.targets`: ``(n,)`` for ``(n,)`` models;
            ``(n,)`` or ``(n, C)`` otherwise; integer labels ``(n,)`` for cross-entropy; labels
            +-1 for logistic.
        rules: one :class:`~ntkdyn.optim.rules.Rule` or spec string for all models, or one per
            model.
        steps: number of optimizer steps (>= 0).
        loss: a name of :data:`ntkdyn.conventions.LOSSES` (``"half-sum"``, ``"mse"``,
            ``"logistic"``, ``"cross-entropy"``), a :class:`~ntkdyn.losses.Loss`, or a torch
            function ``fn(F, T) -> scalar`` of outputs and targets ``(n, C)`` (it must work under
            ``torch.func.vmap``: no ``.item()``, no in-place changes of its inputs).
        outputs_at: steps in ``0..steps`` after which to record every network's outputs on
            ``X`` (and ``X_test``); None records none (no cost). Each recorded step costs one
            forward pass per input set and a copy to the host.
        X_test: further inputs ``(n_test, ...)`` whose outputs are recorded at ``outputs_at``.
        dtype: the precision: a name of :data:`ntkdyn.conventions.DTYPES` (``"float64"``,
            ``"float32"``, or the opt-in reduced ones: ``"tf32"``, float32 with TF32 GEMMs on
            CUDA, plain float32 elsewhere with one warning; ``"bfloat16"``, float32 weights,
            registers and losses with GEMM operands rounded to bfloat16 and float32
            accumulation), ``torch.float32``, ``torch.float64``, ``torch.bfloat16`` (the same
            as ``"bfloat16"``) or None (the models' dtype). Results are float32 for the reduced
            precisions. Details: ``ntkdyn.training._precision``.
        device: where to train; None uses the models' device.
        diagnostics_every: diagnostics at every multiple of this step, plus the first and last
            step (None: first and last only).
        diagnostics: False skips them altogether (``RunResult.diagnostics`` is None): the
            per-network Gram eigendecompositions cost ~(nC)^3 each, which matters for large n.
        progress: optional ``progress(done, total)`` callback, called about 100 times per batch.
        reparametrize: ``"auto"`` (two-layer batches with linear rules when ``n < d``), True
            (every two-layer batch with linear rules) or False.
        allow_tf32: allow TF32 matrix products on CUDA (off by default: float32 means float32);
            with a float32 ``dtype`` the same as ``dtype="tf32"``.
        fast_path: use the width-concatenated two-layer path for two-layer networks on squared
            losses (False forces torch.func; for cross-checks).

    Returns:
        One :class:`~ntkdyn.training.result.RunResult` per model, in order.

    Examples:
        >>> import torch
        >>> from ntkdyn import TwoLayerReLU, load_dataset, train
        >>> data = load_dataset("gaussian:d=5", n=20)
        >>> net = TwoLayerReLU(5, 64, generator=torch.Generator().manual_seed(0))
        >>> (run,) = train(net, data.X, data.y, "gd:lr=0.5", steps=5)
        >>> run.status, len(run.losses)
        ('ok', 6)
        >>> [float(f"{loss:.3g}") for loss in run.losses]
        [12.8, 6.61, 4.23, 2.96, 2.19, 1.72]
    """
    models = check_models(models)
    rules = check_rules(rules, len(models))
    steps = integer("steps", steps, minimum=0)
    loss = resolve_loss(loss)
    recorded = check_outputs_at(outputs_at, steps)
    choice("reparametrize", reparametrize, ("auto", True, False))
    every = (
        None
        if diagnostics_every is None
        else integer("diagnostics_every", diagnostics_every, minimum=1)
    )
    if not isinstance(diagnostics, bool):
        raise ValueError(f"`diagnostics` must be True or False, got {diagnostics!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"`progress` must be a callable(done, total) or None, got {progress!r}")
    if X_test is not None and recorded is None:
        raise ValueError("`X_test` needs `outputs_at`: its outputs are recorded at those steps")
    precision = resolve_precision(dtype, models, allow_tf32)
    dtype = precision.storage
    device = resolve_device(device, models)
    if precision.tf32:
        warn_tf32_off_cuda(device)
    X = as_inputs(X, dtype, device)
    inputs = [("X", X)]
    if X_test is not None:
        inputs.append(("X_test", as_inputs(X_test, dtype, device, name="X_test", like=X)))

    # Every architecture is checked (one forward pass each) before anything trains.
    fast = fast_path and loss.is_squared
    groups: dict[tuple, list[int]] = {}
    for i, (m, r) in enumerate(zip(models, rules, strict=True)):
        groups.setdefault(_group_key(m, r, fast), []).append(i)
    n = X.shape[0]
    shapes = {key: output_columns(models[idx[0]], inputs, idx[0]) for key, idx in groups.items()}
    target_of: dict[tuple[int, bool], torch.Tensor] = {}
    for columns, scalar in shapes.values():
        if (columns, scalar) not in target_of:
            T = targets(loss, y, n, columns, scalar, dtype, device)
            check_custom_loss(loss, T)
            target_of[columns, scalar] = T

    checkpoints = checkpoint_steps(steps, every) if diagnostics else set()
    results: list[RunResult | None] = [None] * len(models)
    with torch.no_grad(), matmul_precision(precision.tf32 or allow_tf32):
        for g, (key, idx) in enumerate(groups.items()):
            ms, rs = [models[i] for i in idx], [rules[i] for i in idx]
            columns, scalar = shapes[key]
            T = target_of[columns, scalar]
            if key[0] == "two-layer":
                linear = key[2] == "linear"
                reparam = linear and (
                    reparametrize is True or (reparametrize == "auto" and n < X.shape[1])
                )
                y0 = T[:, 0].contiguous()  # the fast path's (n,) targets
                batch: TwoLayerEnsemble | GenericEnsemble = TwoLayerEnsemble(
                    cast("list[TwoLayerReLU]", ms),
                    rs,
                    X,
                    y0,
                    steps=steps,
                    loss=loss.name,
                    reparametrize=reparam,
                    bf16=precision.bf16,
                )
            else:
                batch = GenericEnsemble(
                    ms, rs, X, T, steps=steps, loss=loss, scalar=scalar, bf16=precision.bf16
                )
            run = run_batch(
                batch,
                steps,
                checkpoints,
                progress,
                offset=g * steps,
                total=len(groups) * steps,
                record=recorded or (),
                inputs=[t for _, t in inputs] if recorded is not None else [],
            )
            finals = batch.final_params(ms)  # type: ignore[arg-type]
            rows = [t.shape[0] for _, t in inputs]
            for j, i in enumerate(idx):
                record = (recorded, rows, columns)
                results[i] = _result(run, j, finals[j], rules[i], models[i], loss, record)
    done = [r for r in results if r is not None]
    assert len(done) == len(models)  # every model is in exactly one group
    return done


def _result(
    run: BatchRun,
    j: int,
    params: dict[str, torch.Tensor],
    rule: Rule,
    model: nn.Module,
    loss: Loss,
    record: tuple[tuple[int, ...] | None, list[int], int],
) -> RunResult:
    """The record of network ``j`` of a batch run (``record``: the recorded steps, the rows of
    each input set and the output width C)."""
    recorded, rows, columns = record
    width = getattr(model, "width", None)
    outputs: list[Any] = [None, None]
    if recorded is not None:
        for s, (F, n) in enumerate(zip(run.outputs, rows, strict=True)):
            outputs[s] = F[:, j].copy() if recorded else np.empty((0, n, columns))
    return RunResult(
        losses=run.losses[:, j].copy(),
        status="ok" if run.diverged_at[j] is None else "diverged",
        diverged_at=run.diverged_at[j],
        params=params,
        rule=rule,
        width=width if isinstance(width, int) else None,
        loss=loss.name,
        diagnostics=run.diagnostics[j],
        output_steps=None if recorded is None else np.array(recorded, dtype=np.int64),
        outputs=outputs[0],
        test_outputs=outputs[1],
    )
