"""Neural tangent kernels: analytic limits, empirical Grams and their spectra (docs/mathematics.md §1).

Theory side: NumPy float64 in and out; ``X`` may be a NumPy array or a torch tensor ``(n, d)``.

* ``two_layer_gram``: the infinite-width Grams of the two-layer ReLU net, first layer
  (``H^inf``, docs/mathematics.md §1.2), output layer (``H^{a,inf}``, 1.4) or their sum.
* ``deep_relu_ntk``: the deep ReLU NTK recursion (docs/mathematics.md §1.5).
* ``ntk_gram``: the analytic entry point (two-layer or deep).
* ``empirical_ntk``: ``J(X2) J(X)^T`` of any ``nn.Module`` with any number of outputs per row
  (``structure`` "full", "block-diagonal" or "trace", ``NTK_STRUCTURES``), at its current
  weights, within a memory budget (``budget_bytes``, default ``JACOBIAN_BUDGET_BYTES`` for the
  tiles): closed forms for ``TwoLayerReLU``/``DeepReLU`` (docs/mathematics.md §1.1, 1.4, 1.5)
  and for ``nn.Linear`` layers (§1.6), ``torch.func`` per-row Jacobians otherwise.
  Implemented in the private ``_empirical_ntk`` and re-exported here.
* ``spectrum``: the one place that validates and eigendecomposes a kernel (every theory
  function goes through it), returned as a ``Spectrum`` record, with an
  ``IllConditionedKernelWarning`` when ``lambda_min ~ 0`` (no linear-rate guarantee).
  Implemented in the torch-free private ``_spectrum`` and re-exported here.

The Gram ``H = J J^T`` is loss-free; the dynamics use ``K = c H`` (docs/mathematics.md §0).
"""

from __future__ import annotations

import math

import numpy as np

from ._budget import check_fits, kernel_bytes
from ._empirical_ntk import (
    JACOBIAN_BUDGET_BYTES,
    NTK_METHODS,
    NTK_STRUCTURES,
    _as_matrix,
    empirical_ntk,
)
from ._spectrum import IllConditionedKernelWarning, Spectrum, spectrum
from ._validate import choice, integer

__all__ = [
    "JACOBIAN_BUDGET_BYTES",
    "LAYERS",
    "NTK_METHODS",
    "NTK_STRUCTURES",
    "IllConditionedKernelWarning",
    "Spectrum",
    "deep_relu_ntk",
    "empirical_ntk",
    "ntk_gram",
    "spectrum",
    "two_layer_gram",
]

#: ``layer`` choices of ``two_layer_gram``: first layer, output layer, both trained.
LAYERS = ("first", "second", "both")

#: Pairs with ``1 - |cos theta| < _DIRECT_ANGLE_TOL`` get their angle from the split rows
#: (``_near_gaps``), not from the Gram's cosine.
_DIRECT_ANGLE_TOL = 1e-2
#: Bits of the high part of split unit rows (``_near_gaps``): products of two high parts and
#: their partial sums are multiples of ``2^-50`` below 8, so exact in float64.
_SPLIT_BITS = 25
#: Squared gaps ``|u -+ v|^2`` below this are recomputed from the rows (near-duplicates).
_DIRECT_GAP_SQ = 1e-10
#: Elements of the row-difference blocks formed at once for those.
_ANGLE_CHUNK_ELEMENTS = 2**22


# --------------------------------------------------------------------------------------------
# Analytic kernels.


def _half_angles(
    X: np.ndarray, S: np.ndarray, root: np.ndarray, norm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(sin(theta_ij / 2), cos(theta_ij / 2))`` for every pair of rows of ``X`` (docs/mathematics.md §1.2).

    For unit rows ``u, v``: ``sin(theta/2) = |u - v| / 2``, ``cos(theta/2) = |u + v| / 2``, and
    ``theta = 2 atan2(sin(theta/2), cos(theta/2))`` is accurate on all of [0, pi], where
    ``arccos(cos)`` loses half the digits at 0 and pi (``arccos(1 - eps) = 2e-8``). From the
    Gram, ``|u -+ v|^2 = 2 -+ 2 cos`` cancels only when ``|cos| ~ 1``: for the pairs with
    ``1 - |cos| < _DIRECT_ANGLE_TOL`` the small one of ``|u -+ v|`` comes from ``_near_gaps``
    and the other from ``sin^2 + cos^2 = 1``. Elsewhere a Gram error ``delta`` (~eps) moves
    ``theta`` by at most ``delta / sqrt(2 _DIRECT_ANGLE_TOL)``.

    Diagonal: exactly ``(0, 1)``. Zero rows: ``cos = 0``; every kernel multiplies those entries
    by a zero norm. ``S = X X^T``, ``root = sqrt(diag S)`` and ``norm = root root^T`` are
    passed in, already computed.
    """
    n = S.shape[0]
    cos = np.divide(S, norm, out=np.zeros_like(S), where=norm > 0)
    np.clip(cos, -1.0, 1.0, out=cos)
    half_sin = np.sqrt((1.0 - cos) / 2)
    half_cos = np.sqrt((1.0 + cos) / 2)
    unit = np.divide(X, root[:, None], out=np.zeros_like(X), where=root[:, None] > 0)
    for sign, small, other in ((1.0, half_sin, half_cos), (-1.0, half_cos, half_sin)):
        near = cos > 1.0 - _DIRECT_ANGLE_TOL if sign > 0 else cos < _DIRECT_ANGLE_TOL - 1.0
        np.fill_diagonal(near, False)
        rows = np.flatnonzero(near.any(axis=1))
        if rows.size == 0:
            continue
        # Only the rows with a near pair take part: all of them for clustered data (then
        # slices avoid copying the blocks), a few otherwise.
        block = (slice(None), slice(None)) if rows.size == n else np.ix_(rows, rows)
        near = near[block]
        value = np.sqrt(_near_gaps(unit[rows], near, sign)) / 2
        for target, update in ((small, value), (other, np.sqrt((1.0 - value) * (1.0 + value)))):
            part = target[block]  # a view when all rows take part, else a copy
            np.copyto(part, update, where=near)
            if rows.size < n:
                target[block] = part
    np.fill_diagonal(half_sin, 0.0)
    np.fill_diagonal(half_cos, 1.0)
    return half_sin, half_cos


def _near_gaps(unit: np.ndarray, near: np.ndarray, sign: float) -> np.ndarray:
    """``|u_i - sign u_j|^2`` for all pairs of unit rows, without cancellation where ``near``.

    Each row is split as ``u = h + l``, ``h`` on the grid ``2^-_SPLIT_BITS``: ``h_i.h_j`` and
    its partial sums are multiples of ``2^(-2 _SPLIT_BITS)`` below 8, hence exact in any BLAS
    order, and with ``T = h l^T + l u^T`` (so ``T + T^T = 2 (u u^T - h h^T)``, entries
    ``O(|l|) = O(2^-26 sqrt(d))``, relative error eps)

        |u_i -+ u_j|^2 = [|h_i|^2 + |h_j|^2 -+ 2 h_i.h_j] + [T_ii + T_jj -+ (T_ij + T_ji)],

    the first bracket exact: two BLAS products, so many near pairs (clustered data) stay cheap.
    ``near`` pairs with a gap below ``_DIRECT_GAP_SQ`` (near-duplicates, where even that
    error matters) take ``u_i -+ u_j`` from the rows. Symmetric by construction.
    """
    high = np.ldexp(np.round(np.ldexp(unit, _SPLIT_BITS)), -_SPLIT_BITS)
    low = unit - high  # exact
    gap = high @ high.T  # exact, hence exactly symmetric
    rest = np.hstack([high, low]) @ np.hstack([low, unit]).T
    rest += rest.T
    # d_i + d_j added as one outer sum, so both orders round alike.
    diag_high, diag_rest = np.diag(gap).copy(), np.diag(rest) / 2
    gap *= -2 * sign
    gap += np.add.outer(diag_high, diag_high)
    rest *= -sign
    rest += np.add.outer(diag_rest, diag_rest)
    gap += rest
    close = gap < _DIRECT_GAP_SQ
    close &= near
    rows, cols = np.nonzero(close)
    rows, cols = rows[rows < cols], cols[rows < cols]
    chunk = max(1, _ANGLE_CHUNK_ELEMENTS // unit.shape[1])
    for start in range(0, rows.size, chunk):
        i, j = rows[start : start + chunk], cols[start : start + chunk]
        diff = unit[i]
        diff -= sign * unit[j]
        gap[i, j] = gap[j, i] = np.einsum("ij,ij->i", diff, diff)
    return np.clip(gap, 0.0, 4.0, out=gap)


def _pair_geometry(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(S = X X^T, |x_i||x_j|, sin(theta_ij / 2), cos(theta_ij / 2))`` of ``X``."""
    S = X @ X.T
    root = np.sqrt(np.clip(np.diag(S), 0.0, None))
    norm = np.outer(root, root)
    return S, norm, *_half_angles(X, S, root, norm)


def two_layer_gram(X: object, *, layer: str = "first") -> np.ndarray:
    """Infinite-width Gram of the two-layer ReLU net (docs/mathematics.md §1.2, 1.4), any row norms.

    With ``theta_ij = arccos(x_i.x_j / (|x_i||x_j|))``:

    * ``"first"``:  ``H^inf_ij = x_i.x_j (pi - theta_ij) / (2 pi)``  (first layer trained);
    * ``"second"``: ``H^{a,inf}_ij = |x_i||x_j| (sin theta_ij + (pi - theta_ij) cos theta_ij)
      / (2 pi)``  (output layer trained);
    * ``"both"``:   their sum.

    Both have diagonal ``|x_i|^2 / 2``. These are the limits of ``empirical_ntk`` of a
    ``TwoLayerReLU("theory")`` with ``W`` (resp. ``a``, both) trained. The angle is taken as
    ``theta = 2 atan2(|u - v|, |u + v|)`` of the unit rows (``_half_angles``), accurate to
    ~eps at 0 and pi too: ``x`` and ``-x`` give exactly 0, parallel rows exactly singular kernels.

    Args:
        X: inputs ``(n, d)``.
        layer: ``"first"``, ``"second"`` or ``"both"``.

    Returns:
        ``(n, n)`` float64 array.
    """
    layer = choice("layer", layer, LAYERS)
    X = _as_matrix("X", X)
    check_fits(
        "X",
        f"with {X.shape[0]} rows",
        "its n x n kernel",
        kernel_bytes(X.shape[0]),
        "use fewer rows",
    )
    S, norm, half_sin, half_cos = _pair_geometry(X)
    # pi - theta straight from the half-angles: exactly 0 for antipodal rows.
    supplement = 2 * np.arctan2(half_cos, half_sin)
    gram = np.zeros_like(S)
    if layer in ("first", "both"):
        gram += S * supplement / (2 * math.pi)
    if layer in ("second", "both"):
        # |x_i||x_j| cos theta = x_i.x_j, and sin theta = 2 sin(theta/2) cos(theta/2).
        gram += (norm * (2 * half_sin * half_cos) + supplement * S) / (2 * math.pi)
    return gram


def deep_relu_ntk(X: object, depth: int) -> np.ndarray:
    """Infinite-width NTK of ``models.DeepReLU`` with ``depth`` hidden layers (docs/mathematics.md §1.5).

    For every pair, vectorised over the ``(n, n)`` matrix: ``Sigma^0 = x.x'``,
    ``theta_h = arccos(Sigma^{h-1}(x,x') / sqrt(Sigma^{h-1}(x,x) Sigma^{h-1}(x',x')))``
    (carried from layer to layer as ``sin, cos`` of ``theta_h / 2``, accurate near 0 and pi),

        Sigma^h     = sqrt(Sigma^{h-1}(x,x) Sigma^{h-1}(x',x')) (sin theta_h
                      + (pi - theta_h) cos theta_h) / pi,
        dSigma^h    = (pi - theta_h) / pi,
        Theta^1 = Sigma^0,  Theta^{h+1} = Theta^h dSigma^h + Sigma^h  (h = 1..L),

    and the NTK is ``Theta^{L+1}``. For ``L = 1`` it equals ``2 * two_layer_gram(X, "both")``
    (the factor 2 is the ``sqrt(2/m)`` hidden scale); for unit rows ``Theta_ii = L + 1``.

    Args:
        X: inputs ``(n, d)``.
        depth: number of hidden layers ``L >= 1``.

    Returns:
        ``(n, n)`` float64 array.
    """
    depth = integer("depth", depth, minimum=1)
    X = _as_matrix("X", X)
    check_fits(
        "X",
        f"with {X.shape[0]} rows",
        "its n x n kernel",
        kernel_bytes(X.shape[0]),
        "use fewer rows",
    )
    S, norm, half_sin, half_cos = _pair_geometry(X)
    sigma, theta_ntk = S, S.copy()
    for h in range(depth):
        supplement = 2 * np.arctan2(half_cos, half_sin)  # pi - theta_h
        sin = 2 * half_sin * half_cos
        # Sigma^{h-1}(x,x) = |x|^2 for every h, so norm cos theta_h = Sigma^{h-1}(x,x').
        sigma = (norm * sin + supplement * sigma) / math.pi
        theta_ntk = theta_ntk * (supplement / math.pi) + sigma
        if h + 1 < depth:
            # Half-angles of theta_{h+1} = arccos(rho), without forming 1 - rho by cancellation:
            # pi (1 - rho) = 2 pi sin^2(theta/2) - (sin theta - theta cos theta), both terms
            # >= 0, the second O(theta^3). rho >= 0 here, so 1 + rho = 2 - (1 - rho) is safe.
            angle = 2 * np.arctan2(half_sin, half_cos)
            cos = (half_cos - half_sin) * (half_cos + half_sin)
            one_minus = (2 * math.pi * half_sin**2 - (sin - angle * cos)) / math.pi
            np.clip(one_minus, 0.0, 1.0, out=one_minus)
            half_sin = np.sqrt(one_minus / 2)
            half_cos = np.sqrt(1.0 - one_minus / 2)
    return theta_ntk


def ntk_gram(X: object, *, depth: int | None = None, layer: str = "first") -> np.ndarray:
    """Analytic NTK Gram: ``two_layer_gram(X, layer=layer)`` if ``depth`` is None, else
    ``deep_relu_ntk(X, depth)`` (all layers of the deep net trained; ``layer`` must then stay
    ``"first"``). docs/mathematics.md §1.2, 1.4, 1.5.

    Examples:
        Two unit rows at angle ``theta = arccos(0.6)``:
        ``H^inf_12 = 0.6 (pi - theta) / (2 pi)``.

        >>> import numpy as np
        >>> from ntkdyn import ntk_gram
        >>> ntk_gram(np.array([[1.0, 0.0], [0.6, 0.8]])).round(4).tolist()
        [[0.5, 0.2114], [0.2114, 0.5]]
    """
    if depth is None:
        return two_layer_gram(X, layer=layer)
    if layer != "first":
        raise ValueError(
            f"`layer` applies only to the two-layer kernel (depth=None); with depth={depth!r} "
            f"every layer is trained, got layer={layer!r}"
        )
    return deep_relu_ntk(X, depth)
