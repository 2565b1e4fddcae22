"""Multi-output kernels as operators on outputs ``(n, C)`` (docs/mathematics.md §9).

Private; used by ``ntkdyn.function_space``. A kernel comes in one of three structures (the
ones ``ntkdyn.kernels.empirical_ntk`` returns):

* ``"full"``: ``(n C, n C)``, rows and columns in row-major order ``i C + c`` (the order of
  ``F.reshape(-1)``);
* ``"block-diagonal"``: ``(C, n, n)``, output ``c`` seen through its own kernel, no coupling;
* ``"trace"``: ``(n, n)``, the same kernel for every output (``H kron I_C``).

Each applies to coefficients ``(n, C)`` (:meth:`KernelOperator.apply`), gives its
eigendecomposition as a change of basis of outputs (:meth:`KernelOperator.eigenbasis`), and
pairs with a cross kernel of the same structure (test rows by training rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FACTORED_FROM",
    "STRUCTURES",
    "CentredKernel",
    "EigenBlock",
    "Eigenbasis",
    "KernelOperator",
    "zero_sum_basis",
]

#: Kernel structures of multi-output models (module docstring).
STRUCTURES = ("full", "block-diagonal", "trace")


#: Blocks of at least this many rows keep their eigenvectors factored (:class:`EigenBlock`):
#: LAPACK's ``syevd`` without its back-transformation, about 40% of ``eigh`` at m = 2000 (one
#: core), applied instead to the few vectors a prediction needs. Smaller blocks use ``eigh``.
FACTORED_FROM = 256


class EigenBlock:
    """The eigen-decomposition ``K = V diag(eigenvalues) V^T`` of one symmetric block.

    Large blocks keep ``V = Q Z`` factored: ``Q`` the Householder reflectors of the tridiagonal
    reduction ``K = Q T Q^T`` (LAPACK ``sytrd``), ``Z`` the eigenvectors of ``T`` (``stevd``,
    divide and conquer): the steps of ``syevd`` (numpy's ``eigh``), whose last, forming
    ``V = Q Z`` (``ormtr``, ``2 m^3`` flops), is replaced by applying ``Q`` to the vectors asked
    for (``ormqr``, ``2 m^2`` flops per vector). Eigenvalues are clipped by the one kernel
    policy (``ntkdyn.kernels.spectrum``); ``K`` must be finite and exactly symmetric.
    """

    def __init__(self, K: np.ndarray):
        from scipy.linalg import lapack

        from ._spectrum import spectrum

        m = K.shape[0]
        self.V: np.ndarray | None = None
        if m < FACTORED_FROM:
            eigenvalues, self.V = np.linalg.eigh(K)
        else:
            lwork = int(lapack.dsytrd_lwork(m, lower=1)[0])
            a, d, e, self.tau, info = lapack.dsytrd(np.array(K, order="F"), lower=1, lwork=lwork)
            if info == 0:
                eigenvalues, self.Z, info = lapack.dstevd(d, e, compute_v=1)
            if info != 0:
                raise RuntimeError(f"LAPACK failed to eigendecompose the kernel (info {info})")
            self.reflectors = np.asfortranarray(a[1:, :-1])  # below the subdiagonal
        # the policy on the eigenvalues alone: the matrix checks were made by KernelOperator
        self.eigenvalues = spectrum(eigenvalues).eigenvalues

    def apply(self, X: np.ndarray) -> np.ndarray:
        """``V X`` for ``X (m, r)``."""
        if self.V is not None:
            return self.V @ X
        return self._q(np.asfortranarray(self.Z @ X), "N")

    def apply_t(self, X: np.ndarray) -> np.ndarray:
        """``V^T X`` for ``X (m, r)``."""
        if self.V is not None:
            return self.V.T @ X
        return self.Z.T @ self._q(np.array(X, order="F", dtype=np.float64), "T")

    def _q(self, Y: np.ndarray, trans: str) -> np.ndarray:
        """``Q Y`` or ``Q^T Y`` in place: ``Q = diag(1, Q')`` with ``Q'`` the QR-style
        product of the reflectors stored below the subdiagonal."""
        from scipy.linalg import lapack

        if Y.shape[0] > 1 and Y.shape[1] > 0:
            rest = np.asfortranarray(Y[1:])
            args = (b"L", trans.encode(), self.reflectors, self.tau, rest)
            lwork = max(1, int(lapack.dormqr(*args, lwork=-1)[1][0]))
            out, _, info = lapack.dormqr(*args, lwork=lwork, overwrite_c=1)
            if info != 0:
                raise RuntimeError(f"LAPACK ormqr failed (info {info})")
            Y[1:] = out
        return Y


@dataclass(frozen=True, eq=False)
class Eigenbasis:
    """``K = V diag(lam) V^T`` as maps between outputs ``(n, C)`` and modes (a flat vector)."""

    eigenvalues: np.ndarray  # (M,) with M = n C
    blocks: tuple[EigenBlock, ...]  # full, trace: one; block-diagonal: one per output
    structure: str
    shape: tuple[int, int]  # (n, C)

    def to_modes(self, x: np.ndarray) -> np.ndarray:
        """``V^T x`` for outputs ``x (n, C)``, as a flat ``(M,)`` vector."""
        if self.structure == "full":
            return self.blocks[0].apply_t(x.reshape(-1, 1))[:, 0]
        if self.structure == "trace":
            return self.blocks[0].apply_t(x).reshape(-1)
        return np.concatenate([b.apply_t(x[:, c : c + 1])[:, 0] for c, b in enumerate(self.blocks)])

    def from_modes(self, xi: np.ndarray) -> np.ndarray:
        """``V xi`` as outputs ``(n, C)``."""
        return self.from_modes_many(xi[None])[0]

    def from_modes_many(self, xi: np.ndarray) -> np.ndarray:
        """:meth:`from_modes` of each row of ``xi (T, M)``: ``(T, n, C)``, as one matrix product
        per block (BLAS-3) instead of ``T`` matrix-vector products."""
        n, C = self.shape
        T = xi.shape[0]
        if self.structure == "full":
            return self.blocks[0].apply(xi.T).T.reshape(T, n, C)
        if self.structure == "trace":  # columns (t, c) side by side: V @ (n, T C)
            side = xi.reshape(T, n, C).transpose(1, 0, 2).reshape(n, T * C)
            return self.blocks[0].apply(side).reshape(n, T, C).transpose(1, 0, 2)
        parts = xi.reshape(T, C, n)
        out = np.empty((T, n, C))
        for c, block in enumerate(self.blocks):
            out[:, :, c] = block.apply(parts[:, c, :].T).T
        return out


class KernelOperator:
    """A kernel of one of :data:`STRUCTURES` acting on outputs ``(n, C)``.

    Args:
        K: the kernel array (module docstring for the shapes).
        outputs: C, the number of outputs per row.
        structure: one of :data:`STRUCTURES`.
    Raises ValueError naming ``kernel`` when the shape does not fit the structure.
    """

    def __init__(self, K: np.ndarray, outputs: int, structure: str):
        if structure not in STRUCTURES:
            raise ValueError(
                f"`structure` must be one of {', '.join(STRUCTURES)}, got {structure!r}"
            )
        K = np.asarray(K, dtype=np.float64)
        C = outputs
        if structure == "full":
            ok = K.ndim == 2 and K.shape[0] == K.shape[1] and K.shape[0] % C == 0
            n = K.shape[0] // C if ok else 0
        elif structure == "trace":
            ok, n = K.ndim == 2 and K.shape[0] == K.shape[1], K.shape[0]
        else:
            ok = K.ndim == 3 and K.shape[0] == C and K.shape[1] == K.shape[2]
            n = K.shape[1] if ok else 0
        if not ok or n == 0:
            raise ValueError(
                f"`kernel` of structure {structure!r} for {C} output(s) has the wrong shape "
                f"{K.shape} (full: (nC, nC); trace: (n, n); block-diagonal: (C, n, n))"
            )
        if not np.all(np.isfinite(K)):
            raise ValueError("`kernel` contains NaN or inf values")
        # the library promises an exactly symmetric kernel; enforce it here (rounding of J J^T)
        self.K = (K + np.swapaxes(K, -1, -2)) / 2.0
        self.structure = structure
        self.shape = (n, C)

    def apply(self, alpha: np.ndarray) -> np.ndarray:
        """``K alpha`` for coefficients ``(n, C)``."""
        n, C = self.shape
        if self.structure == "full":
            return _symmetric_matvec(self.K, alpha.reshape(-1)).reshape(n, C)
        if self.structure == "trace":
            return self.K @ alpha
        return np.einsum("cij,jc->ic", self.K, alpha)

    def apply_cross(self, K_cross: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``K(X_test, X) alpha`` for a cross kernel of the same structure: ``(n_test, C)``."""
        C = self.shape[1]
        if self.structure == "full":
            return (K_cross @ alpha.reshape(-1)).reshape(-1, C)
        if self.structure == "trace":
            return K_cross @ alpha
        return np.einsum("cij,jc->ic", K_cross, alpha)

    def apply_cross_many(self, K_cross: np.ndarray, alphas: np.ndarray) -> np.ndarray:
        """:meth:`apply_cross` of each ``alphas[t] (n, C)``: ``(T, n_test, C)``, as one matrix
        product per block."""
        n, C = self.shape
        T = alphas.shape[0]
        if self.structure == "full":
            return (alphas.reshape(T, n * C) @ K_cross.T).reshape(T, -1, C)
        if self.structure == "trace":
            side = alphas.transpose(1, 0, 2).reshape(n, T * C)
            return (K_cross @ side).reshape(-1, T, C).transpose(1, 0, 2)
        out = np.empty((T, K_cross.shape[1], C))
        for c in range(C):
            out[:, :, c] = alphas[:, :, c] @ K_cross[c].T
        return out

    def check_cross(self, K_cross: object, n_test: int) -> np.ndarray:
        """``K_cross`` as float64, checked against this kernel's structure for ``n_test`` rows."""
        K_cross = np.asarray(K_cross, dtype=np.float64)
        n, C = self.shape
        expected = {
            "full": (n_test * C, n * C),
            "trace": (n_test, n),
            "block-diagonal": (C, n_test, n),
        }[self.structure]
        if K_cross.shape != expected:
            raise ValueError(
                f"`kernel_test` must have shape {expected} for a {self.structure!r} kernel of "
                f"{n} training and {n_test} test rows, got {K_cross.shape}"
            )
        if not np.all(np.isfinite(K_cross)):
            raise ValueError("`kernel_test` contains NaN or inf values")
        return K_cross

    def eigenbasis(self) -> Eigenbasis:
        """Eigen-decomposition (:class:`EigenBlock` per block); eigenvalues clipped at 0 by the
        one kernel policy."""
        C = self.shape[1]
        if self.structure == "block-diagonal":
            blocks = tuple(EigenBlock(K_c) for K_c in self.K)
            lam = np.concatenate([b.eigenvalues for b in blocks])
            return Eigenbasis(lam, blocks, self.structure, self.shape)
        block = EigenBlock(self.K)
        lam = np.repeat(block.eigenvalues, C) if self.structure == "trace" else block.eigenvalues
        return Eigenbasis(lam, (block,), self.structure, self.shape)

    def norm_bound(self) -> float:
        """An upper bound on ``lambda_max`` (the largest absolute row sum)."""
        rows = np.abs(self.K).sum(axis=-1)
        return float(rows.max())


def _symmetric_matvec(K: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``K x`` for a symmetric ``K``; BLAS ``dsymv`` reads one triangle, half the memory
    traffic of a general product (this product dominates each function-space step)."""
    from scipy.linalg.blas import dsymv

    if K.flags.c_contiguous:
        K = K.T  # the same matrix (symmetric), now Fortran-ordered: no copy inside BLAS
    return dsymv(1.0, K, x)


def zero_sum_basis(C: int) -> np.ndarray:
    """``U (C, C - 1)``: the Helmert basis, orthonormal columns spanning the vectors whose
    entries sum to 0 (column ``k``: ``k`` ones, then ``-k``, scaled by ``1/sqrt(k (k + 1))``)."""
    U = np.zeros((C, C - 1))
    for k in range(1, C):
        U[:k, k - 1] = 1.0
        U[k, k - 1] = -float(k)
        U[:, k - 1] /= np.sqrt(k * (k + 1.0))
    return U


#: Bytes of the work block of :class:`CentredKernel`'s construction.
_CENTRED_BLOCK_BYTES = 64 * 2**20


class CentredKernel:
    """A ``"full"`` kernel seen between zero-sum coefficients, up to a constant per row.

    For a loss that cannot tell ``F`` from ``F + c 1^T`` (cross-entropy: ``softmax`` is
    shift-invariant and each gradient row sums to 0), every coefficient register stays in
    ``alpha = (I_n kron U) gamma`` (:func:`zero_sum_basis`) and the loss only needs the
    outputs modulo row constants, ``(I kron U) K_U gamma`` with
    ``K_U = (I kron U)^T K (I kron U)``, ``n (C - 1)`` square: a step reads ``((C - 1)/C)^2``
    of the kernel's bytes (81% for ``C = 10``, 25% for ``C = 2``). The same iterates as on
    ``K``, up to rounding.
    """

    def __init__(self, kernel: KernelOperator):
        if kernel.structure != "full" or kernel.shape[1] < 2:
            raise ValueError("`kernel` must be a 'full' kernel of >= 2 outputs to be centred")
        n, C = kernel.shape
        self.U = zero_sum_basis(C)
        m = n * (C - 1)
        self.K = np.empty((m, m))
        K4 = kernel.K.reshape(n, C, n * C)
        rows = max(1, _CENTRED_BLOCK_BYTES // (8 * C * m))
        for start in range(0, n, rows):
            block = K4[start : start + rows]  # (b, C, n C): training rows i of K
            right = (block.reshape(-1, C) @ self.U).reshape(block.shape[0], C, m)
            self.K[start * (C - 1) : (start + rows) * (C - 1)] = (self.U.T @ right).reshape(-1, m)
        self.shape = (n, C)

    @staticmethod
    def worth(kernel: KernelOperator, steps: int) -> bool:
        """Whether the steps saved pay for building ``K_U`` (``4 (C - 1)`` kernel-sized
        passes of flops, counted as that many products) and it fits in memory."""
        from ._budget import MEMORY_SHARE, array_bytes, available_bytes

        n, C = kernel.shape
        if kernel.structure != "full" or C < 2:
            return False
        saved = steps * (1.0 - ((C - 1) / C) ** 2)
        free = available_bytes()
        fits = free is None or array_bytes(n * (C - 1), n * (C - 1)) <= MEMORY_SHARE * free
        return saved >= 4 * (C - 1) and fits

    def apply(self, gamma: np.ndarray) -> np.ndarray:
        """``(I kron U) K_U gamma`` as outputs ``(n, C)``: ``K alpha`` less its row means."""
        n, C = self.shape
        return _symmetric_matvec(self.K, gamma).reshape(n, C - 1) @ self.U.T

    def lift(self, gamma: np.ndarray) -> np.ndarray:
        """The coefficients ``alpha = (I kron U) gamma`` as ``(n, C)``."""
        n, C = self.shape
        return gamma.reshape(n, C - 1) @ self.U.T

    def reduce(self, g: np.ndarray) -> np.ndarray:
        """``(I kron U)^T g`` of a gradient ``(n, C)``, flat ``(n (C - 1),)``."""
        return (g @ self.U).reshape(-1)
