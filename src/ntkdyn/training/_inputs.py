"""The boundary checks of :func:`~ntkdyn.training.train` (docs/design.md principle 5).

Everything a run is given is checked here, before any batch is built or trained: the models, the
rules, the device (the precision: ``_precision``), the inputs ``X`` (any shape ``(n, ...)``) and ``X_test``,
the recorded steps ``outputs_at``, and, from one forward pass of each architecture, the shape of
the models' outputs and the targets in that shape (``ntkdyn.losses.Loss.targets``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .._validate import output_width
from ..models import TwoLayerReLU
from ..optim.rules import Rule, parse

if TYPE_CHECKING:
    from ..losses import Loss

__all__ = [
    "as_inputs",
    "check_custom_loss",
    "check_models",
    "check_outputs_at",
    "check_rules",
    "output_columns",
    "resolve_device",
    "targets",
]


def check_models(models: object) -> list[nn.Module]:
    """``models`` as a non-empty list of modules."""
    if isinstance(models, nn.Module):
        return [models]
    if not isinstance(models, Sequence) or isinstance(models, str) or len(models) == 0:
        raise ValueError(
            f"`models` must be an nn.Module or a non-empty list of them, got {models!r}"
        )
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise ValueError(f"`models[{i}]` must be an nn.Module, got {type(m).__name__}")
    return list(models)


def check_rules(rules: object, count: int) -> list[Rule]:
    """One rule per model: a single rule (or spec) is shared by all."""
    if isinstance(rules, (Rule, str)):
        return [parse(rules)] * count
    if not isinstance(rules, Sequence) or len(rules) != count:
        raise ValueError(
            f"`rules` must be one Rule (or spec string) or a list of {count} (one per model), "
            f"got {rules!r}"
        )
    return [parse(r) for r in rules]


def resolve_device(device: object, models: Sequence[nn.Module]) -> torch.device:
    """The training device: ``device`` if given, else the models' one device (CPU if none)."""
    if device is not None:
        try:
            device = torch.device(device)  # type: ignore[call-overload]
        except (RuntimeError, TypeError):
            raise ValueError(f"`device` must name a torch device, got {device!r}") from None
        assert isinstance(device, torch.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"`device` is {str(device)!r} but CUDA is not available")
        return device
    found = {p.device for m in models for p in m.parameters()}
    if len(found) > 1:
        raise ValueError(f"`device` must be given when the models live on several devices {found}")
    return found.pop() if found else torch.device("cpu")


def as_inputs(
    X: object,
    dtype: torch.dtype,
    device: torch.device,
    *,
    name: str = "X",
    like: torch.Tensor | None = None,
) -> torch.Tensor:
    """Finite inputs of any shape ``(n, ...)`` with n >= 1 rows (``like``'s row shape if given)."""
    # Dataset arrays are read-only; torch warns on sharing them, so copy those (small) arrays
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = np.array(X)
    try:
        t = torch.as_tensor(X).detach()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"`{name}` must be a numeric array, got {type(X).__name__}") from None
    if t.ndim == 0 or t.shape[0] == 0 or t.numel() == 0 or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(
            f"`{name}` must be a non-empty real array of shape (n, ...), got {tuple(t.shape)}"
        )
    if like is not None and t.shape[1:] != like.shape[1:]:
        raise ValueError(
            f"`{name}` rows must have the shape of `X`'s, {tuple(like.shape[1:])}, "
            f"got {tuple(t.shape[1:])}"
        )
    t = t.to(dtype=dtype, device=device)
    if not torch.isfinite(t).all():
        raise ValueError(f"`{name}` must be finite (found NaN or inf)")
    return t.contiguous()


def check_outputs_at(outputs_at: object, steps: int) -> tuple[int, ...] | None:
    """The distinct recorded steps in ascending order, each in ``0..steps`` (None: none)."""
    if outputs_at is None:
        return None
    if isinstance(outputs_at, (str, bytes, torch.Tensor)) or not isinstance(outputs_at, Iterable):
        raise ValueError(
            f"`outputs_at` must be an iterable of step indices in [0, {steps}], got {outputs_at!r}"
        )
    chosen = list(outputs_at)
    for k in chosen:
        # bool is an int subclass; True is a bug, not step 1
        if isinstance(k, bool) or not isinstance(k, Integral) or not 0 <= int(k) <= steps:
            raise ValueError(
                f"`outputs_at` must hold integer steps in [0, {steps}] (`steps` = {steps}), "
                f"got {k!r}"
            )
    return tuple(sorted({int(k) for k in chosen}))


def output_columns(
    model: nn.Module, inputs: Sequence[tuple[str, torch.Tensor]], index: int
) -> tuple[int, bool]:
    """``(C, scalar)`` of a model's outputs on every input set: ``(n,)`` -> ``(1, True)``,
    ``(n, 1)`` or ``(n, C)`` -> ``(C, False)``; one forward pass of a converted copy each.

    Two-layer networks are checked without a forward pass (their output is ``(n,)`` by
    construction; only their input width can be wrong).
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"`models[{index}]` has no trainable parameters")
    if isinstance(model, TwoLayerReLU):
        for name, X in inputs:
            if X.ndim != 2 or X.shape[1] != model.d:
                raise ValueError(
                    f"`models[{index}]` has d={model.d} but `{name}` has shape {tuple(X.shape)}"
                )
        return 1, True
    dtype, device = inputs[0][1].dtype, inputs[0][1].device
    state = {k: p.detach().to(device, dtype) for k, p in model.named_parameters()}
    for k, b in model.named_buffers():
        # a copy: a forward pass may update buffers in place (running statistics)
        b = b.detach().to(device, dtype if b.is_floating_point() else b.dtype)
        state[k] = b.clone()
    found = set()
    for name, X in inputs:
        with torch.no_grad():
            F = torch.func.functional_call(model, state, (X,))
        width = output_width(F, X.shape[0], f"models[{index}]", f"`{name}`")
        found.add((1, True) if F.ndim == 1 else (width, False))
    if len(found) != 1:
        raise ValueError(f"`models[{index}]` gives outputs of different widths on `X` and `X_test`")
    return found.pop()


def targets(
    loss: Loss,
    y: object,
    n: int,
    columns: int,
    scalar: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """``y`` as ``(n, C)`` targets in the training dtype and device (``Loss.targets``).

    Models with ``(n,)`` outputs take ``(n,)`` targets only: an ``(n, 1)`` target is the
    broadcasting pitfall of docs/mathematics.md §0 and is refused rather than reshaped.
    """
    try:
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    except (TypeError, ValueError):
        raise ValueError(f"`y` must be a numeric array, got {type(y).__name__}") from None
    shape = y.shape
    if scalar and len(shape) != 1:
        raise ValueError(
            f"`y` must have shape ({n},) for models with outputs of shape ({n},), got {shape}"
        )
    T = loss.targets(y, n, columns)
    # a copy: T may be a read-only view of a dataset array
    return torch.tensor(T, dtype=dtype, device=device)


def check_custom_loss(loss: Loss, T: torch.Tensor) -> None:
    """A custom loss must give one scalar tensor for outputs ``(n, C)`` (tried at ``F = T``)."""
    if loss.fn is None:
        return
    value = loss.fn(T.clone(), T)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"`loss` must return a scalar torch tensor for F, T (n, C), got {got}")
