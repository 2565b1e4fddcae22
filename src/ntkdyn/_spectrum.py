"""The one kernel path: validation and eigendecomposition of a kernel (docs/mathematics.md §0).

Private; ``ntkdyn.kernels`` re-exports ``Spectrum``, ``spectrum`` and
``IllConditionedKernelWarning``. Torch-free, so the theory modules (``dynamics``, ``rates``)
can validate kernels without importing torch; a tensor is converted through its own
``detach().cpu().numpy()``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._validate import finite_number
from .conventions import EIG_FLOOR_RTOL, SYMMETRY_RTOL

__all__ = ["ILL_CONDITIONED_RTOL", "IllConditionedKernelWarning", "Spectrum", "spectrum"]

#: ``lambda_min <= ILL_CONDITIONED_RTOL * lambda_max`` triggers ``IllConditionedKernelWarning``.
ILL_CONDITIONED_RTOL = 1e-10


class IllConditionedKernelWarning(UserWarning):
    """The kernel is (numerically) singular: ``lambda_min <= 1e-10 lambda_max``.

    The linear-rate guarantees of docs/mathematics.md §3-4 need ``lambda_min(K) > 0``; duplicated or
    parallel inputs are the usual cause.
    """


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Eigendecomposition of a symmetric kernel ``K = Q diag(lambda) Q^T`` (docs/mathematics.md §0).

    Built by :func:`spectrum`, which validates ``K``; every theory function accepts it in place
    of ``K`` (build once, query many).

    Attributes:
        eigenvalues: ``(n,)`` float64, ascending, ``>= 0`` (rounding negatives clipped).
        eigenvectors: ``(n, n)`` with columns ``q_j`` matching ``eigenvalues``, or None.
        lambda_min, lambda_max: smallest and largest eigenvalue.
        condition: ``lambda_max / lambda_min`` (inf when ``lambda_min <= 0``).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    lambda_min: float
    lambda_max: float
    condition: float

    @property
    def n(self) -> int:
        """Kernel size."""
        return int(self.eigenvalues.shape[0])

    @classmethod
    def diagonal(cls, eigenvalues: np.ndarray) -> Spectrum:
        """The spectrum of ``diag(eigenvalues)`` (ascending, >= 0) with the identity as its
        eigenvectors: a kernel seen in its own eigenbasis."""
        lam = np.array(eigenvalues, dtype=np.float64)
        return _record(lam, np.eye(lam.size))

    def scaled(self, c: float) -> Spectrum:
        """The spectrum of ``c K`` for ``c > 0``: eigenvalues times ``c``, the same eigenvectors.

        Use it for the effective kernel ``K = c H`` (docs/mathematics.md §0) instead of
        decomposing ``c H`` again.
        """
        return _record(self.eigenvalues * finite_number("c", c), self.eigenvectors)


def spectrum(K: np.ndarray | Spectrum | object, *, vectors: bool = False) -> Spectrum:
    """Validate a kernel and eigendecompose it (``numpy.linalg.eigh``): the one kernel path.

    Policy (docs/mathematics.md §0, "Kernel validation"; constants in ``ntkdyn.conventions``):

    * ``K`` must be finite, square and symmetric to ``SYMMETRY_RTOL`` relative to ``max|K|``
      (it is then symmetrised), else ValueError naming ``K``.
    * Eigenvalues in ``[-EIG_FLOOR_RTOL * lambda_max, 0)`` are the rounding of a singular PSD
      kernel: they are clipped to 0, with one ``IllConditionedKernelWarning``. A more negative
      eigenvalue means ``K`` is not a kernel: ValueError naming ``K``.
    * Otherwise ``IllConditionedKernelWarning`` when ``lambda_min <= ILL_CONDITIONED_RTOL *
      lambda_max``: no linear convergence rate is guaranteed (docs/mathematics.md §3-4).

    Args:
        K: ``(n, n)`` array or tensor; a ``Spectrum`` (returned unchanged); or a 1-D array of
            eigenvalues, any order (the spectrum of ``diag(K)``, without eigenvectors).
        vectors: also return the eigenvectors.

    Examples:
        >>> import numpy as np
        >>> from ntkdyn import spectrum
        >>> s = spectrum(np.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> s.eigenvalues.round(12).tolist(), round(s.condition, 12)
        ([1.0, 3.0], 3.0)
        >>> round(s.scaled(0.5).lambda_max, 12)  # the spectrum of K / 2, without a second eigh
        1.5
    """
    if isinstance(K, Spectrum):
        if vectors and K.eigenvectors is None:
            raise ValueError("`K` is a Spectrum without eigenvectors, but `vectors=True`")
        return K
    kernel = _as_kernel_array(K)
    if kernel.ndim == 1:
        if vectors:
            raise ValueError(
                "`K` is a 1-D array of eigenvalues; eigenvectors need the (n, n) kernel"
            )
        eigenvalues, eigenvectors = np.sort(kernel), None
    else:
        scale = float(np.max(np.abs(kernel)))
        asymmetry = float(np.max(np.abs(kernel - kernel.T)))
        if asymmetry > SYMMETRY_RTOL * scale:
            raise ValueError(
                f"`K` must be symmetric: max|K - K^T| = {asymmetry:.3g} exceeds "
                f"{SYMMETRY_RTOL:g} * max|K| = {SYMMETRY_RTOL * scale:.3g}"
            )
        kernel = (kernel + kernel.T) / 2
        if vectors:
            eigenvalues, eigenvectors = np.linalg.eigh(kernel)
        else:
            eigenvalues, eigenvectors = np.linalg.eigvalsh(kernel), None
    lam_min, lam_max = float(eigenvalues[0]), float(eigenvalues[-1])
    floor = -EIG_FLOOR_RTOL * max(lam_max, 0.0)
    if lam_min < floor:
        raise ValueError(
            f"`K` must be positive semi-definite: eigenvalue {lam_min:.6g} is below "
            f"-{EIG_FLOOR_RTOL:g} * lambda_max = {floor:.3g}"
        )
    if lam_min < 0:
        clipped = int(np.count_nonzero(eigenvalues < 0))
        eigenvalues = np.maximum(eigenvalues, 0.0)
        message = (
            f"kernel is singular: lambda_min = {lam_min:.3g}; {clipped} eigenvalue(s) in "
            f"[-{EIG_FLOOR_RTOL:g} * lambda_max, 0) are rounding and were clipped to 0"
        )
    elif lam_min <= ILL_CONDITIONED_RTOL * lam_max:
        message = (
            f"kernel is ill-conditioned: lambda_min = {lam_min:.3g} <= "
            f"{ILL_CONDITIONED_RTOL:g} * lambda_max = {lam_max:.3g}"
        )
    else:
        message = None
    if message is not None:
        warnings.warn(
            f"{message}; no linear-rate guarantee (duplicated or parallel inputs?)",
            IllConditionedKernelWarning,
            stacklevel=2,
        )
    return _record(eigenvalues, eigenvectors)


def _record(eigenvalues: np.ndarray, eigenvectors: np.ndarray | None) -> Spectrum:
    """A read-only ``Spectrum`` of validated, ascending ``eigenvalues``."""
    eigenvalues.setflags(write=False)
    if eigenvectors is not None:
        eigenvectors.setflags(write=False)
    lam_min, lam_max = float(eigenvalues[0]), float(eigenvalues[-1])
    condition = lam_max / lam_min if lam_min > 0 else math.inf
    return Spectrum(eigenvalues, eigenvectors, lam_min, lam_max, condition)


def _as_kernel_array(K: object) -> np.ndarray:
    """``K`` as a finite, non-empty float64 ``(n, n)`` or ``(n,)`` array, else ValueError."""
    if hasattr(K, "detach"):  # a torch tensor, without importing torch here
        K = K.detach().cpu().numpy()
    try:
        array = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`K` must be a real (n, n) array, got {type(K).__name__}") from None
    if array.ndim not in (1, 2) or 0 in array.shape:
        raise ValueError(f"`K` must be a non-empty (n, n) array, got shape {array.shape}")
    if array.ndim == 2 and array.shape[0] != array.shape[1]:
        raise ValueError(f"`K` must be square, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("`K` contains NaN or inf values")
    return array
