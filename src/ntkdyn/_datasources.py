"""The generated and bundled dataset sources of ``ntkdyn.data``: ``synthetic``, ``gaussian``
and scikit-learn's ``digits`` (the file sources, MNIST and CSV, are read by ``_datafiles``).
Each returns raw ``(X, y)`` arrays; ``data.load_dataset`` validates and normalises them."""

from __future__ import annotations

import numpy as np

from ._datafiles import too_many_rows

__all__ = ["digits", "gaussian", "synthetic"]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's toy: x1 then x2 drawn from default_rng(seed), x3 = linspace(-4, 4, n)."""
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal(n)
    x2 = rng.standard_normal(n)
    x3 = np.linspace(-4.0, 4.0, n)
    return np.column_stack([x1, x2, x3]), -0.5 * x1 + 1.2 * x2 + 10.0 * np.sin(x3)


def gaussian(n: int, seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """docs/mathematics.md §6: X (n, d) ~ N(0, I) first, then y = sign(N(0, 1)) from the same generator."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.where(rng.standard_normal(n) >= 0, 1.0, -1.0)  # sign, with the null event sent to +1
    return X, y


def digits(n: int | None, seed: int, classes: str | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    # pixels 0..16 scaled to [0, 1] like MNIST's /255, so notebook mode (normalize=False)
    # sees the same input scale as the authors' data
    X, target = bunch.data.astype(np.float64) / 16.0, bunch.target.astype(np.int64)
    y = target.astype(np.float64)
    if classes is not None:
        wanted = _parse_classes(classes)
        keep = np.isin(target, wanted)
        X, target = X[keep], target[keep]
        y = np.where(target == wanted[0], -1.0, 1.0) if len(wanted) == 2 else target.astype(float)
    if n is not None and n != X.shape[0]:
        if n > X.shape[0]:
            raise too_many_rows("digits", n, X.shape[0])
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=n, replace=False))
        X, y = X[idx], y[idx]
    return X, y


def _parse_classes(text: str) -> list[int]:
    try:
        wanted = [int(c) for c in text.split("/")]
    except ValueError:
        wanted = []
    if len(wanted) < 2 or len(set(wanted)) != len(wanted) or not all(0 <= c <= 9 for c in wanted):
        raise ValueError(
            f"`classes` must list two or more distinct digits 0-9 separated by '/', "
            f"e.g. '3/8', got {text!r}"
        )
    return wanted
