"""Training engine: many networks at once, each with its own optimizer (docs/design.md Performance).

``train(models, X, y, rules, steps, ...) -> list[RunResult]``; see ``engine`` for the batching,
``ensemble`` for the two-layer fast path, ``generic`` for the torch.func path and ``result`` for
the records and the divergence convention.
"""

from .engine import train
from .result import DIVERGENCE_FACTOR, Diagnostics, RunResult

__all__ = ["DIVERGENCE_FACTOR", "Diagnostics", "RunResult", "train"]
