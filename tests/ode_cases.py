"""The data kernel shared by the limiting-ODE tests: docs/mathematics.md §6's H^inf."""

from __future__ import annotations

import numpy as np

from ntkdyn.kernels import two_layer_gram


def _data_kernel():
    """docs/mathematics.md §6: n=20, d=5 normalised Gaussians (numpy default_rng(0)), y = sign(N(0,1))."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.sign(rng.standard_normal(20))
    return two_layer_gram(X), y
