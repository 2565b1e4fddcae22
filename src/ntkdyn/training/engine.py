"""``train``: many networks at once, each with its own optimizer rule (docs/design.md Performance).

Networks that share ``X`` and ``y`` are grouped into batches and every batch runs one step loop:

* :class:`~ntkdyn.models.TwoLayerReLU` networks of one parameterisation go through the
  width-concatenated fast path (``ensemble``): one GEMM forward and one backward over the total
  width per step, optionally in the input-space reparametrisation ``W = W_0 + C X``.
  Networks trained with Adam form a separate batch (Adam has no linear description, so it runs
  in W-space); networks with linear rules of any kind and schedule share one batch.
* any other ``nn.Module`` goes through ``torch.func`` (``generic``): networks of the same class
  with the same parameter names and shapes are stacked and vmapped as one batch.

Loss conventions (docs/mathematics.md §0): ``"half-sum"`` is ``1/2 sum_i (u_i - y_i)^2`` (c = 1),
``"mse"`` is ``torch.nn.MSELoss()`` (mean over the n rows, c = 2/n): the dynamics are those of
the effective kernel ``K = c H``. Divergence handling and the result records: ``result.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._validate import choice, integer
from ..conventions import DTYPES, LOSSES
from ..models import TwoLayerReLU
from ..optim.rules import Rule, parse
from .ensemble import TwoLayerEnsemble
from .generic import GenericEnsemble
from .loop import run_batch
from .result import RunResult

__all__ = ["train"]

#: The torch dtypes of the precision names a run may use (``ntkdyn.conventions.DTYPES``).
_DTYPES = tuple(getattr(torch, name) for name in DTYPES)


# --------------------------------------------------------------------------------------------
# Boundary validation.


def _check_models(models) -> list[nn.Module]:
    if isinstance(models, nn.Module):
        return [models]
    if not isinstance(models, Sequence) or isinstance(models, str) or len(models) == 0:
        raise ValueError(
            f"`models` must be an nn.Module or a non-empty list of them, got {models!r}"
        )
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            # ValueError naming the field: the project's boundary convention (docs/design.md)
            message = f"`models[{i}]` must be an nn.Module, got {type(m).__name__}"
            raise ValueError(message)
    return list(models)


def _check_rules(rules, count: int) -> list[Rule]:
    if isinstance(rules, (Rule, str)):
        return [parse(rules)] * count
    if not isinstance(rules, Sequence) or len(rules) != count:
        raise ValueError(
            f"`rules` must be one Rule (or spec string) or a list of {count} (one per model), "
            f"got {rules!r}"
        )
    return [parse(r) for r in rules]


def _resolve_dtype(dtype, models) -> torch.dtype:
    if dtype is not None:
        if dtype not in _DTYPES:
            raise ValueError(f"`dtype` must be torch.float32, torch.float64 or None, got {dtype!r}")
        return dtype
    found = {p.dtype for m in models for p in m.parameters() if p.is_floating_point()}
    if len(found) != 1 or next(iter(found)) not in _DTYPES:
        raise ValueError(
            f"`dtype` must be given when the models' dtypes are not one of float32/float64 "
            f"(found {sorted(map(str, found))})"
        )
    return found.pop()


def _resolve_device(device, models) -> torch.device:
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"`device` must name a torch device, got {device!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"`device` is {str(device)!r} but CUDA is not available")
        return device
    found = {p.device for m in models for p in m.parameters()}
    if len(found) > 1:
        raise ValueError(f"`device` must be given when the models live on several devices {found}")
    return found.pop() if found else torch.device("cpu")


def _as_tensor(a) -> torch.Tensor:
    # Dataset arrays are read-only; torch warns on sharing them, so copy those (small) arrays
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        a = np.array(a)
    return torch.as_tensor(a).detach()


def _check_data(X, y, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    X = _as_tensor(X).to(dtype=dtype, device=device)
    y = _as_tensor(y).to(dtype=dtype, device=device)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"`X` must be a non-empty (n, d) matrix, got shape {tuple(X.shape)}")
    if y.shape != (X.shape[0],):
        # An (n, 1) target makes MSELoss broadcast to (n, n) (docs/mathematics.md §0 pitfall).
        raise ValueError(f"`y` must have shape ({X.shape[0]},) to match `X`, got {tuple(y.shape)}")
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise ValueError("`X` and `y` must be finite (found NaN or inf)")
    return X.contiguous(), y.contiguous()


@contextlib.contextmanager
def _matmul_precision(allow_tf32: bool):
    """TF32 off (exact float32 GEMMs) unless asked; the global flags are restored afterwards."""
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = bool(allow_tf32)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous[0])
        torch.backends.cudnn.allow_tf32 = previous[1]


# --------------------------------------------------------------------------------------------
# Grouping.


def _group_key(model: nn.Module, rule: Rule, fast_path: bool):
    kind = "linear" if rule.is_linear else type(rule).__name__
    if fast_path and isinstance(model, TwoLayerReLU):
        return ("two-layer", model.parameterization, kind)
    params = tuple((k, tuple(p.shape), p.requires_grad) for k, p in model.named_parameters())
    buffers = tuple((k, tuple(b.shape), b.dtype) for k, b in model.named_buffers())
    return ("generic", type(model), params, buffers, kind)


def _check_model_fits(model: nn.Module, X: torch.Tensor, index: int) -> None:
    if isinstance(model, TwoLayerReLU):
        if model.d != X.shape[1]:
            raise ValueError(f"`models[{index}]` has d={model.d} but `X` has {X.shape[1]} columns")
        return
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"`models[{index}]` has no trainable parameters")


# --------------------------------------------------------------------------------------------
# Entry point.


def train(
    models: nn.Module | Sequence[nn.Module],
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    rules: Rule | str | Sequence[Rule | str],
    steps: int,
    *,
    loss: str = "half-sum",
    dtype: torch.dtype | None = None,
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
    are copied). Losses are recorded before the first step and after every step (module doc for
    the loss conventions, ``result.py`` for divergence and the records).

    Args:
        models: an ``nn.Module`` mapping ``X (n, d)`` to ``(n,)``, or a list of them.
        X: ``(n, d)`` inputs; y: ``(n,)`` targets (tensors or arrays).
        rules: one :class:`~ntkdyn.optim.rules.Rule` or spec string for all models, or one per
            model.
        steps: number of optimizer steps (>= 0).
        loss: ``"half-sum"`` (``1/2 sum (u - y)^2``) or ``"mse"`` (``MSELoss``, mean over n).
        dtype: ``torch.float32`` or ``torch.float64``; None uses the models' dtype.
        device: where to train; None uses the models' device.
        diagnostics_every: diagnostics at every multiple of this step, plus the first and last
            step (None: first and last only).
        diagnostics: False skips them altogether (``RunResult.diagnostics`` is None): the
            per-network Gram eigendecompositions cost ~n^3 each, which matters for large n.
        progress: optional ``progress(done, total)`` callback, called about 100 times per batch.
        reparametrize: ``"auto"`` (two-layer batches with linear rules when ``n < d``), True
            (every two-layer batch with linear rules) or False.
        allow_tf32: allow TF32 matrix products on CUDA (off by default: float32 means float32).
        fast_path: use the width-concatenated two-layer path (False forces torch.func; for
            cross-checks).

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
    models = _check_models(models)
    rules = _check_rules(rules, len(models))
    steps = integer("steps", steps, minimum=0)
    loss = choice("loss", loss, LOSSES)
    choice("reparametrize", reparametrize, ("auto", True, False))
    every = (
        None
        if diagnostics_every is None
        else integer("diagnostics_every", diagnostics_every, minimum=1)
    )
    if not isinstance(diagnostics, bool):
        message = f"`diagnostics` must be True or False, got {diagnostics!r}"
        raise ValueError(message)
    if progress is not None and not callable(progress):
        raise ValueError(f"`progress` must be a callable(done, total) or None, got {progress!r}")
    dtype = _resolve_dtype(dtype, models)
    device = _resolve_device(device, models)
    X, y = _check_data(X, y, dtype, device)
    for i, m in enumerate(models):
        _check_model_fits(m, X, i)

    groups: dict = {}
    for i, (m, r) in enumerate(zip(models, rules, strict=True)):
        groups.setdefault(_group_key(m, r, fast_path), []).append(i)
    checkpoints = {0, steps} | (set(range(0, steps + 1, every)) if every else set())
    if not diagnostics:
        checkpoints = set()
    n, d = X.shape
    results: list[RunResult | None] = [None] * len(models)
    with torch.no_grad(), _matmul_precision(allow_tf32):
        for g, (key, idx) in enumerate(groups.items()):
            ms, rs = [models[i] for i in idx], [rules[i] for i in idx]
            if key[0] == "two-layer":
                linear = key[2] == "linear"
                reparam = linear and (reparametrize is True or (reparametrize == "auto" and n < d))
                batch: TwoLayerEnsemble | GenericEnsemble = TwoLayerEnsemble(
                    ms, rs, X, y, steps=steps, loss=loss, reparametrize=reparam
                )
            else:
                batch = GenericEnsemble(ms, rs, X, y, steps=steps, loss=loss)
                _check_output_shape(batch, idx[0], n)
            run = run_batch(
                batch, steps, checkpoints, progress, offset=g * steps, total=len(groups) * steps
            )
            finals = batch.final_params(ms)
            for j, i in enumerate(idx):
                width = getattr(models[i], "width", None)
                results[i] = RunResult(
                    losses=run.losses[:, j].copy(),
                    status="ok" if run.diverged_at[j] is None else "diverged",
                    diverged_at=run.diverged_at[j],
                    params=finals[j],
                    rule=rules[i],
                    width=width if isinstance(width, int) else None,
                    loss=loss,
                    diagnostics=run.diagnostics[j],
                )
    done = [r for r in results if r is not None]
    assert len(done) == len(models)  # every model is in exactly one group
    return done


def _check_output_shape(batch: GenericEnsemble, index: int, n: int) -> None:
    shape = batch.output_shape()
    if shape != (n,):
        raise ValueError(
            f"`models[{index}]` must map X (n, d) to outputs of shape ({n},), got {shape}"
        )
