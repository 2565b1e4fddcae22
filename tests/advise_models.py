"""User models for ``ntkdyn advise --model tests/advise_models.py:FACTORY`` in the tests.

Plain torch, as a user would write them: no ntkdyn import.
"""

from __future__ import annotations

from torch import nn

#: The hidden width and the depth (number of ``nn.Linear`` layers) of the issue's user model.
WIDTH = 4096
DEPTH = 3


class _MLP(nn.Module):
    """ReLU layers with biases, 1/sqrt(fan-in) weights (NTK-like scale at any width), float64."""

    def __init__(self, input_dim: int, outputs: int, width: int, depth: int):
        super().__init__()
        sizes = [input_dim] + [width] * (depth - 1) + [outputs]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=layer.in_features**-0.5)
            nn.init.normal_(layer.bias, std=0.1)
        self.double()

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = layer(x).relu()
        out = self.layers[-1](x)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def mlp(input_dim: int, outputs: int) -> nn.Module:
    """The issue's user model: depth 3 (two hidden layers of width 4096), with biases."""
    return _MLP(input_dim, outputs, WIDTH, DEPTH)


def small_mlp(input_dim: int, outputs: int) -> nn.Module:
    """The same architecture at width 64 (fast tests)."""
    return _MLP(input_dim, outputs, 64, DEPTH)
