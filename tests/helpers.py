"""The registry of optimizer rules under test.

Adding a rule here enrols it in every contract test (torch adapter, discrete predictor,
stability, engine) through pytest parametrisation. Hyperparameters are chosen stable for
h_max <= 1 so the same cases serve the predictor and training tests.
"""

from __future__ import annotations

import pytest

from ntkdyn.optim import (
    GD,
    Adam,
    HeavyBall,
    HigherOrderMomentum,
    HigherOrderMomentumNotebook,
    Nesterov,
    NesterovSC,
    NesterovTorch,
)

#: Linear rules with a per-mode recurrence, keyed by a readable id. lr is a placeholder:
#: tests call ``rule.with_lr(...)``.
LINEAR_RULES = {
    "gd": GD(0.1),
    "hb-0.9": HeavyBall(0.1, beta=0.9),
    "hb-0.5": HeavyBall(0.1, beta=0.5),
    "nesterov-sc-0.8": NesterovSC(0.1, beta=0.8),
    "nesterov-r3": Nesterov(0.1, r=3.0),
    "nesterov-r8": Nesterov(0.1, r=8.0),
    "nesterov-torch-r3": NesterovTorch(0.1, r=3.0),
    "nesterov-torch-r2": NesterovTorch(0.1, r=2.0),
    "hom-0.6-0.2": HigherOrderMomentum(0.1, b1=0.6, b2=0.2),
    "hom-0.5--0.2": HigherOrderMomentum(0.1, b1=0.5, b2=-0.2),
    "hom-notebook-0.2-0.5": HigherOrderMomentumNotebook(0.1, b1=0.2, b2=0.5),
}

ALL_RULES = dict(LINEAR_RULES, adam=Adam(0.01))


def rule_params(rules: dict) -> list:
    """``pytest.param`` list for ``@pytest.mark.parametrize("rule", ...)``."""
    return [pytest.param(rule, id=key) for key, rule in rules.items()]
