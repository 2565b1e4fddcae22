"""ntkdyn: predict, simulate and verify how optimizers train wide neural networks."""

from .optim import (
    GD,
    Adam,
    HeavyBall,
    HigherOrderMomentum,
    HigherOrderMomentumNotebook,
    Nesterov,
    NesterovSC,
    NesterovTorch,
    Rule,
    parse,
)

__version__ = "0.1.0"
