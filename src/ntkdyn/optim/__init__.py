"""Optimizers as data (rules.py) and their torch.optim adapter (torch.py)."""

from .rules import (
    GD,
    RULES,
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
)

__all__ = [
    "GD",
    "RULES",
    "Adam",
    "HeavyBall",
    "HigherOrderMomentum",
    "HigherOrderMomentumNotebook",
    "LinearRule",
    "Nesterov",
    "NesterovSC",
    "NesterovTorch",
    "ODESpec",
    "Rule",
    "parse",
]
