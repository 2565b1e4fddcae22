"""Shared by the training-engine tests: the data, the initial networks, the learning rates and the
plain loop (``nn.Module`` + autograd + ``rule.torch``, one network at a time) that is the
reference for every engine run.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ntkdyn.models import TwoLayerReLU
from ntkdyn.optim import Adam

from helpers import ALL_RULES

H_TARGET = 0.5  # lr = H_TARGET / lambda_max(K0): every registry rule is stable for h <= 1
ADAM_LR = 1e-3
WIDTHS = (32, 96)  # alternate along the batch: mixed widths in one batch
N_ROWS, DIM = 12, 30  # n < d, so the reparametrisation is meaningful
LOSS_OF = {"theory": "half-sum", "notebook": "mse"}

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, cuda])]


# --------------------------------------------------------------------------------------------
# Reference: the plain loop.


def _loss(u, y, loss):
    e = u - y
    return 0.5 * (e * e).sum() if loss == "half-sum" else torch.nn.functional.mse_loss(u, y)


def plain_loop(model, X, y, rule, steps, loss):
    """One network: nn.Module + autograd + rule.torch; losses before each step and at the end."""
    model = copy.deepcopy(model)
    opt = rule.torch([p for p in model.parameters() if p.requires_grad])
    out = []
    for k in range(steps + 1):
        value = _loss(model(X), y, loss)
        out.append(value.item())
        if k == steps:
            break
        opt.zero_grad()
        value.backward()
        opt.step()
    return np.array(out)


def _data(dtype=torch.float64, *, n=N_ROWS, d=DIM, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    y = torch.sign(torch.randn(n, generator=g, dtype=torch.float64))
    return X.to(dtype), y.to(dtype)


def _closed_form_gram(model, X) -> np.ndarray:
    """Empirical Gram of all trained parameters, docs/mathematics.md §1.1 / 1.4, in numpy float64."""
    X = X.double().numpy()
    W = model.W.detach().double().numpy()
    b = 0.0 if model.bias is None else model.bias.detach().double().numpy()
    a = model.a.detach().double().numpy()
    s = model.output_scale
    P = X @ W.T + b
    B = (P > 0) * a * s
    H = (X @ X.T) * (B @ B.T)
    if model.parameterization == "notebook":
        R = np.maximum(P, 0) * s
        H += B @ B.T + R @ R.T
    return H


def _rule_lr(rule, parameterization, dtype):
    if isinstance(rule, Adam):
        return rule.with_lr(ADAM_LR)
    X, _ = _data()
    model = _models(parameterization, torch.float64)[0]
    c = 1.0 if LOSS_OF[parameterization] == "half-sum" else 2.0 / N_ROWS
    lam_max = np.linalg.eigvalsh(c * _closed_form_gram(model, X))[-1]
    return rule.with_lr(H_TARGET / lam_max)


def _models(parameterization, dtype):
    rules = list(ALL_RULES)
    out = []
    for i, _ in enumerate(rules):
        g = torch.Generator().manual_seed(100 + i)
        out.append(
            TwoLayerReLU(
                DIM, WIDTHS[i % 2], parameterization=parameterization, generator=g, dtype=dtype
            )
        )
    return out
