"""Per-network optimizer rules as one elementwise update over a whole batch (no network loop).

Every parameter tensor of a batch has a leading axis whose entries belong to networks: hidden
units of the width-concatenated two-layer ensemble (``index`` maps unit -> network) or the
networks themselves (the generic path, ``index=None``). Each network has its own rule, so every
coefficient is a per-entry column broadcast along the other axes.

* Linear rules (``ntkdyn.optim.rules``): the register machine
  ``z_k = A_k z_{k-1} - lr b_k g``, run as the update program of ``ntkdyn.optim.program``
  (register 0 receives an increment, the auxiliary registers start at 0). The batch is padded
  to the largest register count s; every network's coefficients for all steps are uploaded
  once as a ``(steps, columns, N)`` table and gathered per step on the device. Only the
  (r, c) entries that are non-zero somewhere in the batch cost an operation.
* Adam (``Family.ADAM``) mirrors ``torch.optim.Adam``'s default single-tensor step operation for
  operation: ``m <- lerp(m, g, 1 - beta1)``, ``v <- beta2 v + ((1 - beta2) g) g``,
  ``p <- p + (-lr / (1 - beta1^k)) m / (sqrt(v) / sqrt(1 - beta2^k) + eps)``; the bias
  corrections are computed in Python floats exactly as torch does.
* RMSprop (``Family.RMSPROP``) mirrors ``torch.optim.RMSprop``'s single-tensor step (not
  centered, no weight decay): ``v <- alpha v + (1 - alpha) g g``, ``avg = sqrt(v) + eps``,
  ``buf <- momentum buf + g / avg``, ``p <- p + (-lr) buf``. The momentum buffer is always
  kept: with ``momentum = 0`` it is ``g / avg`` exactly, and ``p + (-lr) (g / avg)`` is what
  torch computes without one, so networks with and without momentum share a batch.

A frozen (diverged) network's increments are masked to exactly 0 with ``masked_fill`` (never by
multiplying with 0, which would turn an inf into NaN), so its parameters stay those of the step
at which it was frozen and nothing of it reaches any other network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..optim import Adam, LinearRule, RMSprop, Rule, Term, update_program

__all__ = ["AdamUpdate", "LinearUpdate", "RMSpropUpdate", "Registers", "make_update"]


class Registers:
    """A parameter tensor (register 0), its auxiliary registers and scratch buffers."""

    def __init__(self, param: torch.Tensor, aux: int):
        self.param = param
        self.aux = [torch.zeros_like(param) for _ in range(aux)]
        self._scratch: list[torch.Tensor] | None = None

    @property
    def scratch(self) -> list[torch.Tensor]:
        """Work buffers, allocated once on first use: fresh multi-MB allocations every step
        cost more than the arithmetic on CPU (page faults)."""
        if self._scratch is None:
            self._scratch = [torch.empty_like(self.param) for _ in range(len(self.aux) + 1)]
        return self._scratch


def _columns(coefs: torch.Tensor, ndim: int) -> list[torch.Tensor]:
    """The rows of a ``(columns, L)`` coefficient block, shaped to broadcast over ``ndim`` axes."""
    shape = (-1,) + (1,) * (ndim - 1)
    return [row.view(shape) for row in coefs]


def _source(term: Term, g: torch.Tensor, reg: Registers) -> torch.Tensor:
    return g if term.is_gradient else reg.aux[term.source - 1]


class _BatchUpdate:
    """A batch's per-network rules as one update: a ``(columns, N)`` coefficient block per step
    and the increment of one parameter tensor from its columns (the subclasses)."""

    #: Registers per parameter, the parameter itself included.
    registers: int

    def registers_for(self, param: torch.Tensor) -> Registers:
        return Registers(param, self.registers - 1)

    def _step_coefficients(self, k: int) -> torch.Tensor:
        raise NotImplementedError

    def _increment(
        self, reg: Registers, g: torch.Tensor, col: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        """Step the auxiliary registers of ``reg``; return the increment of its parameter (a
        scratch buffer). ``col(i)`` is coefficient row i, broadcast along ``g``'s axes."""
        raise NotImplementedError

    def coefficients(
        self, k: int, index: torch.Tensor | None, frozen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``k``'s ``(columns, L)`` coefficients and ``(L,)`` frozen mask per leading entry."""
        coefs = self._step_coefficients(k)
        if index is not None:
            coefs = coefs.index_select(1, index)
            frozen = frozen.index_select(0, index)
        return coefs, frozen

    def apply(
        self,
        k: int,
        regs: Sequence[Registers],
        grads: Sequence[torch.Tensor],
        index: torch.Tensor | None,
        frozen: torch.Tensor,
    ) -> None:
        """Step ``k >= 1`` in place for every ``Registers`` in ``regs`` with gradients ``grads``.

        ``index`` maps the leading axis to networks (None: the leading axis is the network);
        ``frozen`` is an ``(N,)`` bool tensor of networks whose parameters must not move.
        """
        coefs, frozen = self.coefficients(k, index, frozen)
        for reg, g in zip(regs, grads, strict=True):
            nd = g.ndim
            inc = self._increment(reg, g, _columns(coefs, nd).__getitem__)
            inc.masked_fill_(frozen.view((-1,) + (1,) * (nd - 1)), 0.0)
            reg.param.add_(inc)


class LinearUpdate(_BatchUpdate):
    """The linear rules of a batch, one per network, as one padded register machine.

    ``program`` is the batch's :class:`~ntkdyn.optim.program.UpdateProgram` (its terms are the
    union over networks and steps); its coefficients live on the device as a
    ``(steps, columns, N)`` table.
    """

    def __init__(
        self, rules: Sequence[LinearRule], steps: int, dtype: torch.dtype, device: torch.device
    ):
        n_nets = len(rules)
        s = max(rule.registers for rule in rules)
        A = np.zeros((steps, n_nets, s, s))
        b = np.zeros((steps, n_nets, s))
        for j, rule in enumerate(rules):
            r = rule.registers
            A[:, j, :r, :r], b[:, j, :r] = rule.schedule(steps)
        lr = np.array([rule.lr for rule in rules])
        try:
            self.program = update_program(A, b, lr)
        except ValueError as exc:
            raise ValueError(f"`rules`: {exc}") from None
        self.registers = s
        table = np.moveaxis(self.program.coefficients, -1, 1)  # (steps, columns, N)
        self._table = torch.as_tensor(np.ascontiguousarray(table), dtype=dtype, device=device)

    def _step_coefficients(self, k: int) -> torch.Tensor:
        return self._table[k - 1]

    def _increment(
        self, reg: Registers, g: torch.Tensor, col: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        # each quantity is the left-to-right sum of its terms (optim.program)
        for update in (self.program.increment, *self.program.auxiliary):
            out = reg.scratch[update.target]
            if not update.terms:
                out.zero_()
                continue
            first, *rest = update.terms
            torch.mul(_source(first, g, reg), col(first.column), out=out)
            for term in rest:
                out.addcmul_(_source(term, g, reg), col(term.column))
        # The new auxiliary registers become current by swapping buffers (no copy).
        for r in range(1, self.registers):
            reg.aux[r - 1], reg.scratch[r] = reg.scratch[r], reg.aux[r - 1]
        return reg.scratch[0]


class AdamUpdate(_BatchUpdate):
    """Adam rules of a batch (per-network lr, betas, eps), elementwise like torch.optim.Adam."""

    def __init__(self, rules: Sequence[Adam], steps: int, dtype: torch.dtype, device: torch.device):
        const = np.array([[1.0 - r.beta1, r.beta2, 1.0 - r.beta2, r.eps] for r in rules]).T
        self._const = torch.as_tensor(const, dtype=dtype, device=device)
        per_step = np.empty((steps, 2, len(rules)))
        for j, rule in enumerate(rules):
            for k in range(1, steps + 1):
                step = float(k)  # torch keeps the step count as a float tensor
                bias_correction1 = 1 - rule.beta1**step
                bias_correction2 = 1 - rule.beta2**step
                per_step[k - 1, 0, j] = -(rule.lr / bias_correction1)
                per_step[k - 1, 1, j] = bias_correction2**0.5
        self._table = torch.as_tensor(per_step, dtype=dtype, device=device)
        self.registers = 3  # the parameter, exp_avg, exp_avg_sq

    def _step_coefficients(self, k: int) -> torch.Tensor:
        return torch.cat([self._const, self._table[k - 1]], dim=0)

    def _increment(
        self, reg: Registers, g: torch.Tensor, col: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        exp_avg, exp_avg_sq = reg.aux
        tmp, denom = reg.scratch[0], reg.scratch[1]
        exp_avg.lerp_(g, col(0))
        torch.mul(g, col(2), out=tmp)
        exp_avg_sq.mul_(col(1)).addcmul_(tmp, g)
        torch.sqrt(exp_avg_sq, out=denom)
        denom.div_(col(5)).add_(col(3))
        torch.mul(exp_avg, col(4), out=tmp)
        return tmp.div_(denom)


class RMSpropUpdate(_BatchUpdate):
    """RMSprop rules of a batch (per-network lr, alpha, eps, momentum), elementwise like
    torch.optim.RMSprop (module docstring); no per-step coefficients (no bias correction)."""

    def __init__(
        self, rules: Sequence[RMSprop], steps: int, dtype: torch.dtype, device: torch.device
    ):
        const = np.array([[r.alpha, 1.0 - r.alpha, r.eps, r.momentum, -r.lr] for r in rules]).T
        self._const = torch.as_tensor(const, dtype=dtype, device=device)
        self.registers = 3  # the parameter, square_avg, momentum_buffer

    def _step_coefficients(self, k: int) -> torch.Tensor:
        return self._const

    def _increment(
        self, reg: Registers, g: torch.Tensor, col: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        square_avg, buf = reg.aux
        tmp, avg = reg.scratch[0], reg.scratch[1]
        # torch: square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        torch.mul(g, col(1), out=tmp)
        square_avg.mul_(col(0)).addcmul_(tmp, g)
        torch.sqrt(square_avg, out=avg)
        avg.add_(col(2))
        buf.mul_(col(3)).addcdiv_(g, avg)
        return torch.mul(buf, col(4), out=tmp)


#: The batch update of each nonlinear rule class (the engine groups rules by class).
_NONLINEAR: dict[type[Rule], type[AdamUpdate] | type[RMSpropUpdate]] = {
    Adam: AdamUpdate,
    RMSprop: RMSpropUpdate,
}


def make_update(
    rules: Sequence[Rule], steps: int, dtype: torch.dtype, device: torch.device
) -> LinearUpdate | AdamUpdate | RMSpropUpdate:
    """The batch update for ``rules``: all linear, all Adam or all RMSprop (the engine groups
    them by rule class)."""
    linear = [r for r in rules if isinstance(r, LinearRule)]
    if len(linear) == len(rules):
        return LinearUpdate(linear, steps, dtype, device)
    kind = type(rules[0])
    if kind in _NONLINEAR and all(type(r) is kind for r in rules):
        return _NONLINEAR[kind](rules, steps, dtype, device)  # type: ignore[arg-type]
    raise ValueError(
        "a batch must hold only linear rules, only Adam rules or only RMSprop rules, got "
        + ", ".join(sorted({type(r).__name__ for r in rules}))
    )
