"""torch.optim adapter: an Optimizer that runs a rule's register machine on real parameters.

Each parameter ``p`` (register 0) gets ``s - 1`` auxiliary registers in ``state[p]``; step k
applies ``z <- A_k z - lr b_k g`` elementwise (ntkdyn.optim.rules). Plain ``step()`` calls give
exactly the rule's iterates, schedules included (the step counter lives in the optimizer).
"""

from __future__ import annotations

import torch

from .rules import Adam, LinearRule, Rule

__all__ = ["RuleOptimizer", "make_optimizer"]


class RuleOptimizer(torch.optim.Optimizer):
    """Runs a :class:`~ntkdyn.optim.rules.LinearRule` (no closure, no weight decay)."""

    def __init__(self, params, rule: LinearRule):
        if not isinstance(rule, LinearRule):
            raise TypeError(f"`rule` must be a LinearRule, got {type(rule).__name__}")
        self.rule = rule
        self.k = 0
        super().__init__(params, {"lr": rule.lr})

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("`closure` is not supported: call backward() before step()")
        self.k += 1
        A, b = self.rule.step_matrices(self.k)
        s = A.shape[0]
        for group in self.param_groups:
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "registers" not in state:
                    state["registers"] = [torch.zeros_like(p) for _ in range(s - 1)]
                _apply(A, b, lr, p, state["registers"], p.grad)


def _apply(A, b, lr, p, regs, g) -> None:
    """In place: ``regs' = A[1:] z - lr b[1:] g`` then ``p' = p + A[0,1:] regs - lr b0 g``."""
    s = A.shape[0]
    new = []
    for r in range(1, s):
        acc = None
        for c in range(1, s):
            if A[r, c] != 0.0:
                term = regs[c - 1] * float(A[r, c])
                acc = term if acc is None else acc.add_(term)
        if b[r] != 0.0:
            term = g * (-lr * float(b[r]))
            acc = term if acc is None else acc.add_(term)
        new.append(acc if acc is not None else torch.zeros_like(p))
    inc = g * (-lr * float(b[0]))
    for c in range(1, s):
        if A[0, c] != 0.0:
            inc.add_(regs[c - 1], alpha=float(A[0, c]))
    p.add_(inc)
    for reg, value in zip(regs, new):
        reg.copy_(value)


def make_optimizer(rule: Rule, params, **kwargs) -> torch.optim.Optimizer:
    """The torch optimizer of ``rule`` (``Rule.torch`` calls this)."""
    if isinstance(rule, Adam):
        return torch.optim.Adam(
            params, lr=rule.lr, betas=(rule.beta1, rule.beta2), eps=rule.eps, **kwargs
        )
    if kwargs:
        raise ValueError(f"unexpected options for {rule.name}: {sorted(kwargs)}")
    return RuleOptimizer(params, rule)
