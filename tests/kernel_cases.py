"""Tolerances and helpers shared by the ntkdyn.kernels tests (the ``test_set`` fixture,
docs/mathematics.md §6's data, is in conftest.py)."""

from __future__ import annotations

import numpy as np

#: Two float64 computations of one quantity by the same formula whose reductions may run in
#: another order (another BLAS, thread count, tile or block split): a few ulps per sum, so they
#: are compared to this relative accuracy (of the largest entry), not bit for bit.
REORDERED_RTOL = 1e-14
#: The same for a float32 computation (eps 6e-8, sums over a few hundred terms).
REORDERED_RTOL_FLOAT32 = 1e-5


def assert_reordered_close(actual, expected, rtol=None):
    """``actual == expected`` up to the rounding of sums taken in another order
    (``REORDERED_RTOL`` unless ``rtol`` is given)."""
    rtol = REORDERED_RTOL if rtol is None else rtol
    expected = np.asarray(expected)
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)
