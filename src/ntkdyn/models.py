"""The networks whose training ntkdyn predicts (docs/mathematics.md sections 0, 1.5; docs/paper.md).

Two-layer ReLU network, two parameterisations:

* ``"theory"`` (Du et al., the paper's analysis; docs/mathematics.md §0):
  ``f(x) = m^{-1/2} sum_r a_r relu(w_r . x)``, ``w_r ~ N(0, I_d)``, ``a_r ~ Unif{+-1}``
  fixed (a buffer, never trained), no bias; only ``W`` is a trainable parameter.
* ``"notebook"`` (the authors' Colab model, docs/paper.md): ``Linear(d, m)`` with bias, ReLU,
  ``Linear(m, 1, bias=False)``; first-layer weight ``N(0, std = 1/m)``, bias at
  ``nn.Linear``'s default ``U(-1/sqrt(d), 1/sqrt(d))``, second layer ``U(-1, 1)``; ``W``,
  ``bias`` and ``a`` all trained; no ``1/sqrt(m)`` output scale. The random draws happen in the
  authors' order, so a generator seeded with ``s`` reproduces ``torch.manual_seed(s)`` followed
  by their construction *in the same dtype* (their notebook ran float32: build with
  ``dtype=torch.float32`` for their exact weights).

Both expose one interface that the training engine and ``kernels.empirical_ntk`` rely on:
``W`` (m, d), ``a`` (m,), ``bias`` (m,) or None, ``output_scale`` (float), ``parameterization``,
``width``, ``d``; ``forward(X)`` returns shape ``(n,)``, never ``(n, 1)`` (docs/mathematics.md §0 pitfall:
an ``(n, 1)`` output against an ``(n,)`` target makes MSELoss broadcast to ``(n, n)``).

``DeepReLU`` is the NTK-parameterised deep ReLU network of docs/mathematics.md §1.5.

Randomness is explicit: every draw uses the keyword-only ``generator`` (a ``torch.Generator``);
``generator=None`` uses torch's global RNG. Library code never seeds anything.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import choice, integer
from .conventions import MODES

__all__ = ["DeepReLU", "TwoLayerReLU", "seeded_network"]


# --------------------------------------------------------------------------------------------
# Boundary validation.


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise ValueError(
            f"`dtype` must be a real floating torch dtype (e.g. torch.float64), got {dtype!r}"
        )
    return dtype


def _check_generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"`generator` must be a torch.Generator or None, got {generator!r}")
    return generator


def _check_network(
    d: object, width: object, dtype: object, generator: object
) -> tuple[int, int, torch.dtype, torch.Generator | None]:
    """The arguments every network shares: input dimension, width, dtype and generator."""
    return (
        integer("d", d, minimum=1),
        integer("width", width, minimum=1),
        _check_dtype(dtype),
        _check_generator(generator),
    )


# --------------------------------------------------------------------------------------------
# Two-layer network.


class TwoLayerReLU(nn.Module):
    """Two-layer ReLU network ``f(x) = s * sum_r a_r relu(w_r . x + b_r)`` (docs/mathematics.md §0, docs/paper.md).

    ``s = output_scale`` is ``m^{-1/2}`` ("theory") or 1 ("notebook"); ``b = 0`` in "theory".

    Args:
        d: input dimension.
        width: number of hidden units ``m``.
        parameterization: ``"theory"`` or ``"notebook"`` (see the module docstring).
        generator: ``torch.Generator`` for every random draw; None uses the global RNG.
        dtype: floating dtype of all weights (float64 on the theory side).

    Attributes:
        W: first-layer weights, ``(m, d)`` parameter.
        a: output weights, ``(m,)``: a buffer of +-1 ("theory") or a parameter ("notebook").
        bias: first-layer bias ``(m,)`` parameter ("notebook") or None.
        output_scale: the float ``s``.
    """

    def __init__(
        self,
        d: int,
        width: int,
        *,
        parameterization: str = "theory",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.d, self.width, dtype, generator = _check_network(d, width, dtype, generator)
        # the parameterisation names: ntkdyn.conventions.MODES
        self.parameterization = choice("parameterization", parameterization, MODES)
        if self.parameterization == "theory":
            self._init_theory(generator, dtype)
        else:
            self._init_notebook(generator, dtype)

    def _init_theory(self, generator: torch.Generator | None, dtype: torch.dtype) -> None:
        m, d = self.width, self.d
        self.output_scale = 1.0 / math.sqrt(m)
        self.W = nn.Parameter(torch.randn(m, d, generator=generator, dtype=dtype))
        signs = torch.randint(0, 2, (m,), generator=generator).to(dtype) * 2 - 1
        self.register_buffer("a", signs)
        self.register_parameter("bias", None)

    def _init_notebook(self, generator: torch.Generator | None, dtype: torch.dtype) -> None:
        # Mirrors, draw for draw: l1 = nn.Linear(d, m); l2 = nn.Linear(m, 1, bias=False);
        # l1.weight.normal_(0, 1/m); l2.weight.uniform_(-1, 1). The default inits are drawn
        # (and then overwritten for the weights) only to keep the RNG stream in step.
        m, d = self.width, self.d
        self.output_scale = 1.0
        weight = torch.empty(m, d, dtype=dtype)
        bias = torch.empty(m, dtype=dtype)
        second = torch.empty(1, m, dtype=dtype)  # nn.Linear(m, 1) weight layout: fan_in = m
        with torch.no_grad():
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(d)  # nn.Linear.reset_parameters' bias bound
            nn.init.uniform_(bias, -bound, bound, generator=generator)
            nn.init.kaiming_uniform_(second, a=math.sqrt(5), generator=generator)
            weight.normal_(0.0, 1.0 / m, generator=generator)
            second.uniform_(-1.0, 1.0, generator=generator)
        self.W = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.a = nn.Parameter(second.reshape(m))

    def preactivation(self, X: torch.Tensor) -> torch.Tensor:
        """Hidden pre-activations ``z = X W^T + b``, shape ``(n, m)``."""
        return F.linear(X, self.W, self.bias)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Network outputs ``u_i = f(x_i)`` for the rows of ``X`` ``(n, d)``; shape ``(n,)``."""
        hidden = torch.relu(self.preactivation(X))
        # F.linear with a (1, m) weight is exactly what the authors' second nn.Linear computes.
        out = F.linear(hidden, self.a.unsqueeze(0)).squeeze(-1)
        if self.output_scale != 1.0:
            out = out * self.output_scale
        return out

    def extra_repr(self) -> str:
        return f"d={self.d}, width={self.width}, parameterization={self.parameterization!r}"


# --------------------------------------------------------------------------------------------
# Deep network.


class DeepReLU(nn.Module):
    """Deep ReLU network in the NTK parameterisation (docs/mathematics.md §1.5).

    ``g^0 = x``, ``f^h = W^h g^{h-1}``, ``g^h = sqrt(2/m) relu(f^h)`` for ``h = 1..L``, output
    ``f = W^{L+1} g^L``; every weight ``N(0, 1)``, no biases. Its NTK converges to
    ``kernels.deep_relu_ntk(X, L)`` as ``m -> infinity``.

    Args:
        d: input dimension.
        width: hidden width ``m`` (all hidden layers).
        depth: number of hidden layers ``L``.
        generator: ``torch.Generator`` for the draws (layer 1 first); None uses the global RNG.
        dtype: floating dtype of the weights.

    Attributes:
        weights: ``nn.ParameterList`` ``[W^1 (m, d), W^2..W^L (m, m), W^{L+1} (1, m)]``.
    """

    def __init__(
        self,
        d: int,
        width: int,
        depth: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.d, self.width, dtype, generator = _check_network(d, width, dtype, generator)
        self.depth = integer("depth", depth, minimum=1)
        shapes = [(width, d)] + [(width, width)] * (depth - 1) + [(1, width)]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(*shape, generator=generator, dtype=dtype)) for shape in shapes
        )
        self.hidden_scale = math.sqrt(2.0 / width)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Network outputs for the rows of ``X`` ``(n, d)``; shape ``(n,)``."""
        # Index, never slice: a sliced ParameterList is a new container that torch.func's
        # functional_call would not see through (its gradients came out as zero).
        g = X
        for h in range(self.depth):
            g = self.hidden_scale * torch.relu(F.linear(g, self.weights[h]))
        return F.linear(g, self.weights[self.depth]).squeeze(-1)

    def extra_repr(self) -> str:
        return f"d={self.d}, width={self.width}, depth={self.depth}"


def seeded_network(d: int, width: int, *, depth: int | None = None, seed: int = 0) -> nn.Module:
    """A float64 network drawn from ``torch.Generator().manual_seed(seed)``.

    ``depth`` None: the theory-parameterised :class:`TwoLayerReLU`; else the :class:`DeepReLU`
    with ``depth`` hidden layers (the networks behind ``ntkdyn kernel`` and ``ntkdyn predict``).
    """
    generator = torch.Generator().manual_seed(seed)
    if depth is None:
        return TwoLayerReLU(d, width, parameterization="theory", generator=generator)
    return DeepReLU(d, width, depth, generator=generator)
