"""The rate tests' problem and the independent references shared by several files.

The problem is docs/mathematics.md §6's: K = H^inf of n = 20 normalised Gaussian points in 5-D
(``default_rng(0)``; lambda_0 = 0.044733, lambda_max = 1.9555), e0 = -y. The discrete curves are
the per-mode recurrences of docs/mathematics.md §3 written out by hand, never ntkdyn.dynamics.
"""

from __future__ import annotations

import functools

import numpy as np

from ntkdyn.optim import GD, HeavyBall, HigherOrderMomentum, NesterovSC


@functools.cache
def _problem():
    """Spectrum and initial modes ``xi0 = Q^T e0`` of docs/mathematics.md §6's H^inf with e0 = -y."""
    g = np.random.default_rng(0)
    X = g.standard_normal((20, 5))
    y = np.sign(g.standard_normal(20))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    G = X @ X.T
    H = G * (np.pi - np.arccos(np.clip(G, -1.0, 1.0))) / (2.0 * np.pi)  # docs/mathematics.md §1.2
    lam, Q = np.linalg.eigh(H)
    return lam, Q.T @ (-y), H, -y


def _loss(xi: np.ndarray) -> np.ndarray:
    """``L = 1/2 sum_j xi_j^2`` over the mode axis (axis 0 for ODE curves, 1 for recurrences)."""
    return 0.5 * np.sum(xi * xi, axis=0)


def _two_term(p, q, x0, x1, steps):
    """``xi_{k+1} = p xi_k - q xi_{k-1}`` (HB, NAG-SC rows of docs/mathematics.md §3), shape (steps+1, n)."""
    xs = [x0, x1]
    for _ in range(steps - 1):
        xs.append(p * xs[-1] - q * xs[-2])
    return np.array(xs)


def _hom(h, b1, b2, x0, steps):
    """docs/mathematics.md §3 HOM: ``xi_{k+1} = (1+b1-h) xi_k + (b2-b1) xi_{k-1} - b2 xi_{k-2}``."""
    xs = [x0, (1 - h) * x0, (1 + b1 - h) * (1 - h) * x0 - b1 * x0]
    for _ in range(steps - 2):
        xs.append((1 + b1 - h) * xs[-1] + (b2 - b1) * xs[-2] - b2 * xs[-3])
    return np.array(xs)


def _ls_slope(x, y):
    return np.polyfit(x, y, 1)[0]


def _discrete_curve(name, steps=3000):
    lam, xi0, _, _ = _problem()
    lr = 0.5  # h_max = 0.978, h_0 = 0.0224
    h = lr * lam
    if name == "gd":
        return GD(lr), _loss((1 - h[:, None]) ** np.arange(steps + 1.0) * xi0[:, None])
    if name == "hb":
        b = 0.9
        xi = _two_term(1 + b - h, b, xi0, (1 - h) * xi0, steps)
        return HeavyBall(lr, beta=b), _loss(xi.T)
    if name == "nesterov-sc":
        b = 0.8
        xi = _two_term((1 + b) * (1 - h), b * (1 - h), xi0, (1 - (1 + b) * h) * xi0, steps)
        return NesterovSC(lr, beta=b), _loss(xi.T)
    return HigherOrderMomentum(lr, b1=0.6, b2=0.2), _loss(_hom(h, 0.6, 0.2, xi0, steps).T)
