"""Training losses as functions of a network's outputs (docs/mathematics.md §9).

One record, :class:`Loss`, serves both sides: the function-space predictions evaluate it on
NumPy arrays (:meth:`Loss.value`, :meth:`Loss.gradient` with respect to the outputs) and the
training engine on torch tensors (:meth:`Loss.torch`). Outputs are always ``F`` of shape
``(n, C)``; targets ``T`` are stored in the same shape by :meth:`Loss.targets`.

* ``"half-sum"``: ``1/2 sum_ic (F - T)^2``; ``"mse"``: torch's ``MSELoss`` (mean over the
  ``n C`` entries). Both are ``c/2 ||F - T||^2`` with the loss factor ``c`` of
  :func:`ntkdyn.conventions.loss_factor`, so they keep their closed per-mode forms.
* ``"logistic"``: ``mean_ic log(1 + exp(-T_ic F_ic))`` with labels ``+-1``, one per output
  (a binary problem with one output, or C one-vs-rest ones; torch's ``soft_margin_loss``, written with ``logaddexp``: stable for large margins and with a
  ``torch.func.vmap`` batching rule).
* ``"cross-entropy"``: ``mean_i -sum_c T_ic log softmax(F_i)_c`` with integer labels (stored
  one-hot) or rows of class probabilities (torch's ``cross_entropy``).
* any smooth loss given as a torch function ``fn(F, T) -> scalar`` (:func:`custom_loss`); its
  gradient comes from autograd in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .conventions import LOSSES, SQUARED_LOSSES, loss_factor

if TYPE_CHECKING:
    import torch

__all__ = ["Loss", "custom_loss", "resolve_loss"]


@dataclass(frozen=True, eq=False)
class Loss:
    """A loss of the outputs ``F (n, C)`` against targets ``T (n, C)`` (module docstring).

    ``name`` is one of :data:`ntkdyn.conventions.LOSSES` or ``"custom"`` (then ``fn`` holds the
    torch function).
    """

    name: str
    fn: Callable[..., Any] | None = None

    @property
    def is_squared(self) -> bool:
        """True for ``c/2 ||F - T||^2`` losses: their dynamics have closed per-mode forms."""
        return self.name in SQUARED_LOSSES

    def factor(self, entries: int) -> float:
        """``c`` of a squared loss on ``entries = n C`` outputs; ValueError for the others."""
        if not self.is_squared:
            raise ValueError(f"`loss` {self.name!r} is not a squared loss: it has no factor c")
        return loss_factor(self.name, entries)

    def curvature(self, n: int, outputs: int) -> tuple[float, str | None]:
        """The factor that turns the kernel into the effective one of the loss's dynamics, and
        None, for a squared loss (``c``, exact); for logistic and cross-entropy the largest
        eigenvalue of their Hessian in the outputs and its formula: ``1/(4 n C)``
        (``sigma (1 - sigma) <= 1/4``, mean over n C entries) and ``1/(2 n)``
        (``diag(p) - p p^T <= 1/2``, mean over rows). The kernel times that bound is the
        steepest quadratic the loss can be, so its stable step is a bound, not a limit.
        ValueError for a custom loss (its curvature is unknown)."""
        if self.is_squared:
            return self.factor(n * outputs), None
        if self.name == "logistic":
            return 0.25 / (n * outputs), "1/(4nC)"
        if self.name == "cross-entropy":
            return 0.5 / n, "1/(2n)"
        raise ValueError(
            "`loss` is a custom function: its curvature, and so its stable step, is unknown"
        )

    # ---------------------------------------------------------------- targets

    def targets(self, y: object, n: int, outputs: int) -> np.ndarray:
        """``y`` as float64 targets ``(n, outputs)``, checked for this loss.

        Squared losses take ``(n,)`` (one output) or ``(n, C)``; logistic takes labels ``+-1``
        of shape ``(n,)`` (one output) or ``(n, C)``; cross-entropy takes integer labels ``(n,)`` in
        ``[0, C)`` or rows of probabilities ``(n, C)``. Raises ValueError naming ``y``.
        """
        if hasattr(y, "detach"):
            y = y.detach().cpu().numpy()
        T = np.asarray(y)
        if T.shape[:1] != (n,):
            raise ValueError(f"`y` must have one row per input ({n}), got shape {T.shape}")
        # the model's fault, not the targets': said before any check of `y`'s columns
        if self.name == "cross-entropy" and outputs < 2:
            raise ValueError(
                f"`loss` 'cross-entropy' needs a model with >= 2 outputs, got {outputs}"
            )
        if self.name == "cross-entropy" and T.ndim == 1:
            return _one_hot(T, outputs)
        T = _float_matrix(T, n)
        if T.shape[1] != outputs:
            raise ValueError(
                f"`y` must have {outputs} column(s), one per model output, got shape {T.shape}"
            )
        if self.name == "logistic" and not np.all(np.abs(T) == 1.0):
            raise ValueError("`y` must hold labels +1 or -1 for the logistic loss")
        if self.name == "cross-entropy":
            if np.any(T < 0) or not np.allclose(T.sum(axis=1), 1.0, rtol=0, atol=1e-12):
                raise ValueError(
                    "`y` rows must be class probabilities (>= 0, summing to 1) for cross-entropy"
                )
        return T

    # ---------------------------------------------------------------- NumPy side

    def value(self, F: np.ndarray, T: np.ndarray) -> float:
        """The loss at outputs ``F`` (float64)."""
        n = F.shape[0]
        if self.name == "half-sum":
            return float(0.5 * np.sum((F - T) ** 2))
        if self.name == "mse":
            return float(np.mean((F - T) ** 2))
        if self.name == "logistic":
            return float(np.mean(np.logaddexp(0.0, -T * F)))
        if self.name == "cross-entropy":
            return float(-np.sum(T * _log_softmax(F)) / n)
        return float(self._custom(F, T, gradient=False)[0])

    def gradient(self, F: np.ndarray, T: np.ndarray) -> np.ndarray:
        """``dL/dF`` at ``F``, shape ``(n, C)``."""
        n = F.shape[0]
        if self.name == "half-sum":
            return F - T
        if self.name == "mse":
            return (2.0 / F.size) * (F - T)
        if self.name == "logistic":
            return -T * _sigmoid(-T * F) / F.size
        if self.name == "cross-entropy":
            # (softmax - T)/n, written for probability rows that need not be one-hot
            return (np.exp(_log_softmax(F)) * T.sum(axis=1, keepdims=True) - T) / n
        return self._custom(F, T, gradient=True)[1]

    def value_and_gradient(self, F: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        """:meth:`value` and :meth:`gradient` together (one softmax, one autograd call)."""
        if self.name == "custom":
            return self._custom(F, T, gradient=True)
        if self.name == "cross-entropy":
            n = F.shape[0]
            log_p = _log_softmax(F)
            value = float(-np.sum(T * log_p) / n)
            return value, (np.exp(log_p) * T.sum(axis=1, keepdims=True) - T) / n
        return self.value(F, T), self.gradient(F, T)

    def _custom(self, F: np.ndarray, T: np.ndarray, *, gradient: bool) -> tuple[float, Any]:
        import torch

        assert self.fn is not None
        F_t = torch.tensor(F, dtype=torch.float64, requires_grad=gradient)
        value = self.fn(F_t, torch.tensor(T, dtype=torch.float64))
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError("the custom `loss` must return a scalar torch tensor")
        if not gradient:
            return float(value), None
        (g,) = torch.autograd.grad(value.reshape(()), F_t)
        return float(value.detach()), g.numpy()

    # ---------------------------------------------------------------- torch side

    def torch(self, F: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """The same loss on tensors (training): ``F, T`` of shape ``(n, C)``."""
        import torch
        import torch.nn.functional as fn

        if self.name == "half-sum":
            return 0.5 * ((F - T) ** 2).sum()
        if self.name == "mse":
            return ((F - T) ** 2).mean()
        if self.name == "logistic":
            return torch.logaddexp(torch.zeros_like(F), -T * F).mean()
        if self.name == "cross-entropy":
            return fn.cross_entropy(F, T)
        assert self.fn is not None
        return self.fn(F, T).reshape(())


def custom_loss(fn: Callable[..., Any]) -> Loss:
    """A smooth loss given as a torch function ``fn(F, T) -> scalar`` of outputs ``(n, C)``."""
    if not callable(fn):
        raise ValueError(f"`loss` must be a loss name or a callable, got {fn!r}")
    return Loss("custom", fn)


def resolve_loss(loss: str | Loss | Callable[..., Any]) -> Loss:
    """``loss`` as a :class:`Loss`: a name of :data:`~ntkdyn.conventions.LOSSES`, a Loss, or a
    torch function of the outputs. Raises ValueError naming ``loss``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {', '.join(LOSSES)}, got {loss!r}")
        return Loss(loss)
    return custom_loss(loss)


def _float_matrix(T: np.ndarray, n: int) -> np.ndarray:
    try:
        T = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("`y` must be numeric") from None
    if T.ndim == 1:
        T = T[:, None]
    if T.ndim != 2:
        raise ValueError(f"`y` must be of shape (n,) or (n, C), got {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("`y` contains NaN or inf values")
    return T.reshape(n, -1)


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    if labels.dtype.kind not in "iu" and not (
        labels.dtype.kind == "f"
        and np.all(np.isfinite(labels))
        and np.all(labels == np.round(labels))
    ):
        raise ValueError("`y` must hold integer class labels for cross-entropy")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(
            f"`y` labels must lie in [0, {classes}) for a model with {classes} outputs, got "
            f"[{labels.min()}, {labels.max()}]"
        )
    return np.eye(classes)[labels]


def _log_softmax(F: np.ndarray) -> np.ndarray:
    shifted = F - F.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))
