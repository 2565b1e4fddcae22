"""Real initial networks on the quick width ladder and their kernel models (no training),
shared by the falsification suite and the claim tests (fixtures in conftest.py)."""

from __future__ import annotations

import math

import numpy as np
import torch

import ntkdyn
from ntkdyn.kernels import empirical_ntk
from ntkdyn.prediction import KernelModel

LADDER = (512, 2048, 8192, 32768)
SEEDS = (0, 1, 2)


def theory_net(width: int, seed: int) -> ntkdyn.TwoLayerReLU:
    gen = torch.Generator().manual_seed(seed)
    return ntkdyn.TwoLayerReLU(5, width, generator=gen, dtype=torch.float64)


def kernel_model_of(net, data) -> KernelModel:
    """The network's kernel model at initialisation (half-sum loss, c = 1)."""
    with torch.no_grad():
        e0 = net(torch.tensor(data.X)).numpy() - data.y
    lam, Q = np.linalg.eigh(empirical_ntk(net, data.X))
    return KernelModel(lam, Q.T @ e0)


def drifted(model: KernelModel, width: int, seed: int) -> KernelModel:
    """A synthetic finite network: lambda_min(K) lowered by ``(1 + seed/10) / sqrt(m)``, the
    first-order kernel drift of docs/verdicts.md §3."""
    lam = np.array(model.eigenvalues)
    lam[0] *= 1 - (1 + seed / 10) / math.sqrt(width)
    return KernelModel(lam, model.modes)
