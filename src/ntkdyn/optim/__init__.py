"""Optimizers as data: every rule declared once (rules.py, conventions in base.py), the one
interpreter of the register machine (program.py) and the torch.optim adapter (torch.py)."""

from .base import Family
from .program import GRADIENT, RegisterUpdate, Term, UpdateProgram, update_program
from .rules import (
    GD,
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
    Rule,
    parse,
    rules_of,
)

__all__ = [
    "GD",
    "GRADIENT",
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
    "RegisterUpdate",
    "Rule",
    "Term",
    "UpdateProgram",
    "parse",
    "rules_of",
    "update_program",
]
