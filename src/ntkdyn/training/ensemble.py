"""Fast path: many two-layer ReLU networks trained as one width-concatenated ensemble.

All networks share ``X (n, d)`` and ``y (n,)``. Their hidden units are laid side by side, unit-
major: row ``u`` of every ``(M, .)`` tensor belongs to network ``net[u]`` (``M`` = total width;
``layout`` says where). One step of the whole batch is

    P = W X^T + b                              (M, n)  one GEMM over the total width
    u_j = sum_{u in j} s_u a_u relu(P_u)               one segment-sum -> (N, n)
    e_j = u_j - y,  dL/du_j = c e_j                    per network (c = 1 half-sum, 2/n MSE)
    D_u = [dL/du_{net[u]}] s_u a_u 1{P_u > 0}  (M, n)
    grad_W = D X (one GEMM),  grad_b = D 1,  grad_a = s (dL/du * relu(P)) 1

followed by the per-unit elementwise optimizer update (``updates``). No Python loop over networks
runs inside a step and nothing reduces across networks, so a diverging network cannot perturb
the others. ``1{P > 0}`` is torch's ReLU derivative (sigma'(0) = 0, docs/mathematics.md §0).

The notebook bias is folded into the first layer as a constant input feature:
``X~ = [X, 1]`` and ``W~ = [W, b]``, so ``P = W~ X~^T`` and ``grad_W~ = D X~`` carry the bias and
its gradient with no extra pass (theory mode: ``X~ = X``).

Input-space reparametrisation (docs/design.md Performance 2): every first-layer gradient ``D X`` lies
in the row space of X and every linear rule combines gradients linearly, so
``W~_k = W~_0 + C_k X~`` exactly, each register of W~ being (that register of C) X~. The batch then
carries ``C (M, n)`` and ``G = X~ X~^T``: ``P = (W~_0 X~^T) + C G`` (``W~_0 X~^T`` computed
once) and ``grad_C = D``, i.e. ``n^2 M`` per step instead of ``2 n d M``: worth it when ``n < d``.
Adam is not linear in the gradient, so an Adam batch always runs in W-space.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from ..conventions import loss_factor
from . import fused
from ._precision import BF16Matmul
from .layout import UnitLayout
from .result import _to_host
from .updates import LinearUpdate, make_update

if TYPE_CHECKING:
    from ..models import TwoLayerReLU
    from ..optim.rules import Rule

#: The compiled kernels pay off (and their one-off compile time) from this many ``(M, n)``
#: elements on; smaller CUDA batches run eagerly.
FUSE_MIN_ELEMENTS = 1 << 22

__all__ = ["TwoLayerEnsemble"]


class TwoLayerEnsemble:
    """A batch of :class:`~ntkdyn.models.TwoLayerReLU` of one parameterisation (module doc).

    Args:
        models: the networks (read only; their tensors are copied).
        rules: one rule per network, all linear or all Adam.
        X, y: ``(n, d)`` inputs and ``(n,)`` targets in the training dtype and device.
        steps: number of optimizer steps (the schedules are built for all of them).
        loss: ``"half-sum"`` or ``"mse"``.
        reparametrize: carry ``C`` with ``W~ = W~_0 + C X~`` (linear rules only).
        bf16: the step's GEMMs (``P`` and ``grad_W``) take operands rounded to bfloat16 and
            accumulate in float32 (``_precision``); storage, residuals and the one-off
            products (``G``, ``W~_0 X~^T``, checkpoints) stay in ``X``'s dtype.
    """

    #: Force (True) or forbid (False) the chunked segment-sum; None: by device (``layout``).
    _chunked: bool | None = None
    #: Force (True) or forbid (False) the compiled kernels (``fused``); None: CUDA and large.
    _fused: bool | None = None

    def __init__(
        self,
        models: Sequence[TwoLayerReLU],
        rules: Sequence[Rule],
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        steps: int,
        loss: str,
        reparametrize: bool,
        bf16: bool = False,
    ):
        self.N = len(models)
        self.dtype, self.device = X.dtype, X.device
        to = {"dtype": self.dtype, "device": self.device}
        self.notebook = models[0].parameterization == "notebook"
        self.layout = UnitLayout([m.width for m in models], self.device, chunked=self._chunked)
        self.net = self.layout.net
        self.y, self.n, self.d = y, X.shape[0], X.shape[1]
        self.X = X
        self.mean_loss = loss == "mse"
        self.loss_factor = loss_factor(loss, self.n)

        place = self.layout.place
        W0 = place([m.W.detach() for m in models], **to)
        if self.notebook:  # bias as a constant input feature: X~ = [X, 1], W~ = [W, b]
            self.Xa = torch.cat(
                [X, torch.ones(self.n, 1, dtype=self.dtype, device=self.device)], dim=1
            )
            W0 = torch.cat([W0, place([m.bias.detach().unsqueeze(1) for m in models], **to)], 1)
        else:
            self.Xa = X
        self.W0 = W0
        self.G = self.Xa @ self.Xa.T
        # Padding rows get output scale 0 as well as zero weights (inert units).
        self.scale = place(
            [torch.full((m.width,), float(m.output_scale), dtype=torch.float64) for m in models],
            **to,
        )
        a = place([m.a.detach() for m in models], **to)
        self.update = make_update(list(rules), steps, self.dtype, self.device)
        self.reparam = bool(reparametrize)  # the engine allows it for linear rules only
        self.XaT = self.Xa.T.contiguous()
        # bfloat16 GEMMs: the constant right operands rounded once (module doc of _precision)
        self.bf16 = BF16Matmul(self.device) if bf16 else None
        if self.bf16 is not None:
            self.right16 = self.bf16.operand(self.G if reparametrize else self.XaT)
            self.Xa16 = self.bf16.operand(self.Xa)
        if self.reparam:
            self.Z0 = self.W0 @ self.XaT
            first = torch.zeros(self.layout.M, self.n, dtype=self.dtype, device=self.device)
        else:
            first = self.W0.clone()
        self.first = self.update.registers_for(first)
        self.regs = [self.first]
        if self.notebook:
            self.a = self.update.registers_for(a)
            self.regs.append(self.a)
            self.as_u = torch.empty_like(a)
        else:
            self.as_u = a * self.scale  # fixed output weights s a_r

        M = self.layout.M
        self.fused: (
            tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[..., tuple]] | None
        ) = None
        fuse = (
            self._fused
            if self._fused is not None
            else (self.device.type == "cuda" and M * self.n >= FUSE_MIN_ELEMENTS)
        )
        if fuse and self.reparam and isinstance(self.update, LinearUpdate):
            self.fused = (
                fused.make_forward(),
                fused.make_backward_update(self.update, self.notebook),
            )
        self.P = torch.empty(M, self.n, dtype=self.dtype, device=self.device)  # pre-activations
        self.mask = torch.empty(M, self.n, dtype=torch.bool, device=self.device)
        self.work: torch.Tensor | None = None  # s a relu(P)
        if self.fused is None:
            self._eager_buffers()
        self.e: torch.Tensor | None = None  # residual at the last forward
        self._mask0: torch.Tensor | None = None
        self._H0: torch.Tensor | None = None

    def _eager_buffers(self) -> None:
        """Work buffers of the eager step (the compiled one needs none)."""
        self.act = torch.empty_like(self.P)  # relu(P)
        self.work = torch.empty_like(self.P)  # s a relu(P); later dL/du * relu(P)
        self.D = torch.empty_like(self.P)  # dL/dP
        self.gW = None if self.reparam else torch.empty_like(self.W0)

    def _unfuse(self, error: Exception) -> None:
        """The compiler failed (e.g. no Triton): warn and continue eagerly (same mathematics).

        Called before any state was changed by the failing call, so the step can be redone.
        """
        warnings.warn(
            f"compiled kernels unavailable ({type(error).__name__}: {error}); "
            "training continues with the eager step",
            RuntimeWarning,
            stacklevel=3,
        )
        self.fused = None
        self._eager_buffers()

    # ---------------------------------------------------------------------------------------
    # One step.

    def forward(self, need_grad: bool = True) -> torch.Tensor:
        """Losses ``(N,)`` at the current parameters; keeps what the gradient needs."""
        if self.bf16 is not None:
            self.bf16.mm(self.first.param, self.right16, out=self.P)
            if self.reparam:
                self.P.add_(self.Z0)
        elif self.reparam:
            torch.addmm(self.Z0, self.first.param, self.G, out=self.P)
        else:
            torch.mm(self.first.param, self.XaT, out=self.P)
        if self.notebook:
            torch.mul(self.a.param, self.scale, out=self.as_u)
        if self.fused is not None:
            try:
                self.work = self.fused[0](self.P, self.as_u)
            except Exception as error:  # noqa: BLE001 (any compiler failure: fall back)
                self._unfuse(error)
        if self.fused is None:
            torch.clamp_min(self.P, 0.0, out=self.act)
            torch.mul(self.act, self.as_u.unsqueeze(1), out=self.work)
        assert self.work is not None  # the fused or the eager path has just written it
        self.e = self.layout.sum(self.work) - self.y
        sq = self.e * self.e
        return sq.mean(1) if self.mean_loss else 0.5 * sq.sum(1)

    def step(self, k: int, frozen: torch.Tensor) -> None:
        """Gradients at the last :meth:`forward`, then optimizer step ``k`` in place."""
        assert self.e is not None and self.work is not None, "step() needs a forward() first"
        dldu = self.e * self.loss_factor if self.mean_loss else self.e
        if self.fused is not None:
            try:
                return self._fused_step(k, dldu, frozen)
            except Exception as error:  # noqa: BLE001 (any compiler failure: fall back)
                self._unfuse(error)
                torch.clamp_min(self.P, 0.0, out=self.act)  # the eager step reads relu(P)
        torch.index_select(dldu, 0, self.net, out=self.D)
        if self.notebook:
            torch.mul(self.D, self.act, out=self.work)
            grad_a = self.work.sum(1).mul_(self.scale)
        self.D.mul_(self.as_u.unsqueeze(1))
        torch.gt(self.P, 0.0, out=self.mask)
        self.D.mul_(self.mask)
        if self.reparam:
            grads = [self.D]
        elif self.bf16 is not None:
            assert self.gW is not None  # allocated in W-space (_eager_buffers)
            grads = [self.bf16.mm(self.D, self.Xa16, out=self.gW)]
        else:
            grads = [torch.mm(self.D, self.Xa, out=self.gW)]
        if self.notebook:
            grads.append(grad_a)
        self.update.apply(k, self.regs, grads, self.net, frozen)

    def _fused_step(self, k: int, dldu: torch.Tensor, frozen: torch.Tensor) -> None:
        assert self.fused is not None and isinstance(self.update, LinearUpdate)  # fuse's condition
        coefs, frozen_u = self.update.coefficients(k, self.net, frozen)
        reg = self.first
        out = self.fused[1](
            self.P, dldu, self.net, self.as_u, self.scale, coefs, frozen_u, reg.param, *reg.aux
        )
        # Registers take the new tensors (no copy); the allocator recycles the old ones.
        reg.param, reg.aux = out[0], list(out[1 : len(reg.aux) + 1])
        if self.notebook:
            self.update.apply(k, [self.a], [out[-1]], self.net, frozen)

    # ---------------------------------------------------------------------------------------
    # Checkpoints and results.

    def weights(self) -> torch.Tensor:
        """Current first-layer weights ``W~ (M, d~)`` (``[W, b]`` in notebook mode)."""
        if self.reparam:
            return torch.addmm(self.W0, self.first.param, self.Xa)
        return self.first.param

    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        """Every network's outputs on ``X (n', d)`` at the current parameters: ``(N, n', 1)``.

        Recomputed from the weights (not the loop's residual), so recording them leaves the
        step's arithmetic untouched.
        """
        if self.notebook:
            ones = torch.ones(X.shape[0], 1, dtype=self.dtype, device=self.device)
            X = torch.cat([X, ones], dim=1)
            as_u = self.a.param * self.scale
        else:
            as_u = self.as_u
        act = (self.weights() @ X.T).clamp_min_(0.0).mul_(as_u.unsqueeze(1))
        return self.layout.sum(act).unsqueeze(-1)

    def _grams(self, rows: torch.Tensor) -> torch.Tensor:
        """``sum_{u in j} rows_u rows_u^T`` per network for unit-major ``rows (M, n)``."""
        return torch.stack(
            [rows[self.layout.rows(j)].T @ rows[self.layout.rows(j)] for j in range(self.N)]
        )

    def gram(self) -> torch.Tensor:
        """Empirical Gram ``H = J J^T`` at the last forward, all trained parameters: (N, n, n).

        Closed form (docs/mathematics.md §1.1, 1.4), float64: ``(X~ X~^T) o (B^T B) [+ R^T R]`` with
        ``B_ri = s a_r 1{P_ri > 0}`` and ``R = s relu(P)``; ``X~ X~^T = X X^T + 1`` carries the
        bias term and ``R^T R`` the output layer, both only in notebook mode (where they train).
        """
        f64 = torch.float64
        B = self.mask.to(f64) * self.as_u.to(f64).unsqueeze(1)
        H = self._grams(B) * self.G.to(f64)
        if self.notebook:
            R = self.P.clamp_min(0.0).to(f64) * self.scale.to(f64).unsqueeze(1)
            H = H + self._grams(R)
        return H

    def diagnostics(self) -> dict:
        """Per-network kernel/weight diagnostics at the last forward (checkpoint work)."""
        f64 = torch.float64
        torch.gt(self.P, 0.0, out=self.mask)
        H = self.gram()
        if self._mask0 is None:
            self._mask0, self._H0 = self.mask.clone(), H
        flips = self.layout.per_network((self.mask != self._mask0).sum(1).to(f64))
        widths = torch.as_tensor(self.layout.widths, dtype=f64, device=self.device)
        if self.reparam:  # ||C X||_F^2 = sum_u C_u (X X^T) C_u^T (the bias column excluded)
            C = self.first.param.to(f64)
            X = self.X.to(f64)
            sq = ((C @ (X @ X.T)) * C).sum(1).clamp_min_(0.0)
        else:
            diff = (self.first.param[:, : self.d] - self.W0[:, : self.d]).to(f64)
            sq = (diff * diff).sum(1)
        return {
            "gram": H,
            "gram0": self._H0,
            "weight_change": self.layout.per_network(sq).sqrt(),
            "pattern_change": flips / (widths * self.n),
        }

    def final_params(self, models: Sequence[TwoLayerReLU]) -> list[dict[str, torch.Tensor]]:
        """Final ``state_dict`` of every network (CPU tensors, training dtype)."""
        Wa = self.weights()
        trained = {"W": Wa[:, : self.d]}
        if self.notebook:
            trained.update(bias=Wa[:, self.d], a=self.a.param)
        out = []
        for j, model in enumerate(models):
            rows = self.layout.rows(j)
            state = {}
            for key, value in model.state_dict().items():
                if key in trained:  # one copy per network, straight to the host
                    state[key] = _to_host(trained[key][rows])
                else:
                    state[key] = _to_host(value.detach().to(self.dtype))
            out.append(state)
        return out
