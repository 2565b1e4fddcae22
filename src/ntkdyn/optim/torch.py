"""torch.optim adapter: an Optimizer that runs a rule's register machine on real parameters.

Each parameter ``p`` (register 0) gets ``s - 1`` auxiliary registers in ``state[p]``; step k
runs the update program of ``(A_k, b_k)`` (``optim.program``) elementwise. Plain ``step()``
calls give exactly the rule's iterates, schedules included (the step counter lives in the
optimizer). ``LinearRule.torch(params)`` builds it; this module does not import the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NoReturn, overload

import torch

from .program import RegisterMachine, RegisterUpdate, Term, UpdateProgram, update_program

__all__ = ["RuleOptimizer"]

#: Key of the step counter in ``RuleOptimizer.state_dict()``.
_STEP_KEY = "ntkdyn_step"


class RuleOptimizer(torch.optim.Optimizer):
    """Runs a linear rule (``ntkdyn.optim.base.LinearRule``; no closure, no weight decay)."""

    def __init__(self, params: Iterable[Any], rule: RegisterMachine):
        if not getattr(rule, "is_linear", False):
            raise TypeError(f"`rule` must be a LinearRule, got {type(rule).__name__}")
        self.rule = rule
        self.k = 0
        super().__init__(params, {"lr": rule.lr})

    def state_dict(self) -> dict[str, Any]:
        """torch's state (the auxiliary registers per parameter) plus the step counter ``k``,
        which scheduled rules need to take the same step after a resume."""
        state = super().state_dict()
        state[_STEP_KEY] = self.k
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        if _STEP_KEY not in state:
            raise ValueError(
                f"`state_dict` has no {_STEP_KEY!r}: it was not saved by a RuleOptimizer "
                "(a scheduled rule cannot resume without its step counter)"
            )
        k = state.pop(_STEP_KEY)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"`state_dict[{_STEP_KEY!r}]` must be an integer >= 0, got {k!r}")
        super().load_state_dict(state)
        self.k = k

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> NoReturn: ...  # closures are refused

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:
        if closure is not None:
            raise ValueError("`closure` is not supported: call backward() before step()")
        self.k += 1
        A, b = self.rule.step_matrices(self.k)
        for group in self.param_groups:
            program = update_program(A, b, group["lr"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "registers" not in state:
                    state["registers"] = [torch.zeros_like(p) for _ in range(A.shape[0] - 1)]
                _apply(program, p, state["registers"], p.grad)


def _apply(
    program: UpdateProgram, p: torch.Tensor, regs: list[torch.Tensor], g: torch.Tensor
) -> None:
    """In place: the new auxiliary registers, then ``p += increment``."""
    coef = [float(c) for c in program.coefficients]

    def source(term: Term) -> torch.Tensor:
        return g if term.is_gradient else regs[term.source - 1]

    def value(update: RegisterUpdate) -> torch.Tensor:
        acc = None
        for term in update.terms:
            product = source(term) * coef[term.column]
            acc = product if acc is None else acc.add_(product)
        return acc if acc is not None else torch.zeros_like(p)

    new = [value(update) for update in program.auxiliary]
    first, *rest = program.increment.terms  # the gradient term comes first
    inc = source(first) * coef[first.column]
    for term in rest:
        inc.add_(source(term), alpha=coef[term.column])
    p.add_(inc)
    for reg, v in zip(regs, new, strict=True):
        reg.copy_(v)
