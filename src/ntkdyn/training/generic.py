"""Generic path: a batch of identical-architecture ``nn.Module`` networks through torch.func.

The networks' tensors are stacked along a new leading axis (one entry per network) and one
``torch.func.vmap`` over ``functional_call`` evaluates all of them; ``grad_and_value`` gives every
network's gradient and loss in the same call. The optimizer update is the same per-network
elementwise update as the two-layer fast path (``updates``), with the leading axis indexing
networks. Trained tensors are the parameters with ``requires_grad``; other parameters and
buffers are carried along unchanged. The model maps ``X (n, ...)`` to outputs ``(n,)``,
``(n, 1)`` or ``(n, C)`` (the engine checks which); the loss is any ``ntkdyn.losses.Loss`` of the
outputs seen as ``F (n, C)``. A squared loss on ``(n,)`` outputs keeps the residual form
``e = u - y`` it has always had here, so those runs are unchanged to the last bit.

The empirical Gram at checkpoints is ``H = sum_p J_p J_p^T`` with ``J_p = jacrev`` of the
flattened outputs (``nC`` rows, row ``i C + c``) with respect to every trained tensor
(docs/mathematics.md §1.5).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch.func import functional_call, grad_and_value, jacrev, vmap

from .result import _to_host
from .updates import make_update

if TYPE_CHECKING:
    from torch import nn

    from ..losses import Loss
    from ..optim.rules import Rule

__all__ = ["GenericEnsemble"]


class GenericEnsemble:
    """A batch of networks of one architecture (same class, names and shapes), see module doc.

    Args:
        models: the networks (read only; their tensors are copied).
        rules: one rule per network, all linear or all Adam.
        X, T: ``(n, ...)`` inputs and ``(n, C)`` targets in the training dtype and device.
        steps: number of optimizer steps.
        loss: the loss of the outputs ``F (n, C)``.
        scalar: the models return ``(n,)`` (so ``C = 1``) rather than ``(n, C)``.
        bf16: run the training forward and backward passes under ``torch.autocast`` to
            bfloat16 (``_precision``); parameters, registers and losses keep the float32 dtype.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        rules: Sequence[Rule],
        X: torch.Tensor,
        T: torch.Tensor,
        *,
        steps: int,
        loss: Loss,
        scalar: bool,
        bf16: bool = False,
    ):
        self.N = len(models)
        self.dtype, self.device = X.dtype, X.device
        self.bf16 = bf16
        template = models[0]
        self.trained = [k for k, p in template.named_parameters() if p.requires_grad]
        constant = [k for k, p in template.named_parameters() if not p.requires_grad]
        constant += [k for k, _ in template.named_buffers()]

        param_names = {k for k, _ in template.named_parameters()}

        def stack(name):
            get = (
                (lambda m: m.get_parameter(name))
                if name in param_names
                else (lambda m: m.get_buffer(name))
            )
            stacked = torch.stack([get(m).detach() for m in models]).to(self.device)
            return stacked.to(self.dtype) if stacked.is_floating_point() else stacked

        self.update = make_update(list(rules), steps, self.dtype, self.device)
        self.regs = [self.update.registers_for(stack(k).contiguous()) for k in self.trained]
        self.params = {k: r.param for k, r in zip(self.trained, self.regs, strict=True)}
        self.params0 = {k: v.clone() for k, v in self.params.items()}
        self.constant = {k: stack(k) for k in constant}
        base = copy.deepcopy(template).to("meta")
        self.n, self.C = T.shape
        self._base = base

        def output(params, consts):
            return functional_call(base, (params, consts), (X,))

        if scalar and loss.is_squared:
            # The residual form this path has always used: bit-identical curves for old runs
            y, mean = T[:, 0].contiguous(), loss.name == "mse"

            def loss_fn(params, consts):
                e = output(params, consts) - y
                return (e * e).mean() if mean else 0.5 * (e * e).sum()

        else:
            n, C = self.n, self.C

            def loss_fn(params, consts):
                return loss.torch(output(params, consts).reshape(n, C), T)

        self._output = output
        self._loss = vmap(loss_fn)
        self._grad_and_loss = vmap(grad_and_value(loss_fn))
        self._jacobian = vmap(jacrev(output))
        self.grads: list[torch.Tensor] | None = None  # set by forward(need_grad=True)
        self._H0: torch.Tensor | None = None

    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        """Every network's outputs on ``X (n', ...)`` at the current parameters: ``(N, n', C)``."""

        def output(params, consts):
            return functional_call(self._base, (params, consts), (X,))

        F = vmap(output)(self.params, self.constant)
        return F.reshape(self.N, X.shape[0], self.C)

    def forward(self, need_grad: bool = True) -> torch.Tensor:
        """Losses ``(N,)`` at the current parameters (and their gradients if ``need_grad``)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if not need_grad:
                return self._loss(self.params, self.constant).to(self.dtype)
            grads, losses = self._grad_and_loss(self.params, self.constant)
        self.grads = [grads[k].to(self.dtype) for k in self.trained]
        return losses.to(self.dtype)

    def step(self, k: int, frozen: torch.Tensor) -> None:
        """Optimizer step ``k`` with the gradients of the last :meth:`forward`, in place."""
        assert self.grads is not None, "step() needs the gradients of a forward() first"
        self.update.apply(k, self.regs, self.grads, None, frozen)

    def diagnostics(self) -> dict:
        """Per-network Gram (float64) and weight change at the current parameters."""
        jac = self._jacobian(self.params, self.constant)
        grams = []
        for k in self.trained:
            # rows i C + c: the flattened outputs (n,) or (n, C), the order of F.reshape(-1)
            J = jac[k].reshape(self.N, self.n * self.C, -1).to(torch.float64)
            grams.append(J @ J.transpose(1, 2))
        H = _total(grams)
        if self._H0 is None:
            self._H0 = H
        sq = _total(
            ((self.params[k] - self.params0[k]).to(torch.float64) ** 2).reshape(self.N, -1).sum(1)
            for k in self.trained
        )
        return {"gram": H, "gram0": self._H0, "weight_change": sq.sqrt(), "pattern_change": None}

    def final_params(self, models: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
        """Final ``state_dict`` of every network (CPU tensors, training dtype)."""
        tensors = {**self.params, **self.constant}
        out = []
        for j, model in enumerate(models):
            state = {}
            for key, value in model.state_dict().items():
                source = tensors[key][j] if key in tensors else value.detach().to(self.dtype)
                state[key] = _to_host(source)
            out.append(state)
        return out


def _total(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """Left-to-right sum of one or more tensors (``sum``'s rounding, without its int start)."""
    first, *rest = terms
    for term in rest:
        first = first + term
    return first
