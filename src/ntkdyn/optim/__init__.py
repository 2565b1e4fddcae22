"""Optimizers as data: every rule declared once (rules.py, conventions in base.py), the one
interpreter of the register machine (program.py) and the torch.optim adapter (torch.py)."""

from .base import Family
from .program import GRADIENT, RegisterUpdate, Term, UpdateProgram, update_program
from .rules import (
    GD,
    NO_KERNEL_PREDICTION,
    RULES,
    SPEC_EXAMPLE,
    Adam,
    HeavyBall,
    HigherOrderMomentum,
    HigherOrderMomentumNotebook,
    LinearRule,
    Nesterov,
    NesterovSC,
    NesterovTorch,
    ODESpec,
    RMSprop,
    Rule,
    parse,
    rules_of,
)

__all__ = [
    "GD",
    "GRADIENT",
    "NO_KERNEL_PREDICTION",
    "RULES",
    "SPEC_EXAMPLE",
    "Adam",
    "Family",
    "HeavyBall",
    "HigherOrderMomentum",
    "HigherOrderMomentumNotebook",
    "LinearRule",
    "Nesterov",
    "NesterovSC",
    "NesterovTorch",
    "ODESpec",
    "RMSprop",
    "RegisterUpdate",
    "Rule",
    "Term",
    "UpdateProgram",
    "parse",
    "rules_of",
    "update_program",
]
