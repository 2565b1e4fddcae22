"""How an empirical NTK of a multi-output model is laid out and assembled from blocks.

Private helper of ``_empirical_ntk`` (docs/mathematics.md §1.6). Both kernel paths (the
layer-wise closed form, ``_ntk_layers``, and tiled autodiff, ``_ntk_autodiff``) produce
*feature blocks*: tensors ``(rows, C, g)`` whose row ``i``, output ``c`` is a vector of ``g``
features (Jacobian entries, or a layer's output gradients) such that the kernel entry of
``(i, c)`` and ``(j, c')`` is their dot product (times a per-row-pair factor). A
:class:`Layout` knows, for one ``structure``, the shape of the work array, how to contract two
feature blocks into a block of it, where that block goes, and how to turn the work array into
the returned float64 array.

Work arrays (rows ``i2`` of ``X2``, or of ``X`` for a square kernel, against rows ``i`` of ``X``):

* ``"full"``: ``(n2, C, n, C)``, returned as ``(n2 C, n C)``: row ``i2 C + c``, column
  ``i C + c'``, the order of ``outputs.reshape(-1)``;
* ``"block-diagonal"``: ``(C, n2, n)``, block ``c`` is ``J_c(X2) J_c(X)^T``;
* ``"trace"``: ``(n2, n)``, ``sum_c J_c(X2) J_c(X)^T`` while accumulating, divided by ``C``
  at the end (the mean over outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["STRUCTURES", "Layout"]

# Every product is torch's, also ``A A^T``: NumPy's ``a @ a.T`` would call BLAS ``syrk`` (half
# the flops), but a second BLAS thread pool next to torch's ran 8x slower on 2 busy cores.
# Square kernels halve the flops instead: their blocks are computed on and above the block
# diagonal only, and ``Layout.finish`` mirrors them.

#: ``structure`` choices of ``empirical_ntk``.
STRUCTURES = ("full", "block-diagonal", "trace")
#: Rows per band when a square result is mirrored in place (bounds the temporary).
_MIRROR_ROWS = 512


@dataclass(frozen=True)
class Layout:
    """The kernel of ``n2`` rows against ``n`` rows with ``outputs`` outputs per row.

    Attributes:
        structure: one of :data:`STRUCTURES`.
        n2: rows of the result (``X2``'s, or ``X``'s for a square kernel).
        n: columns of the result (``X``'s rows).
        outputs: ``C``, outputs per row.
        symmetric: a square kernel (no ``X2``): only blocks on or above the block diagonal
            are computed; :meth:`finish` mirrors them.
    """

    structure: str
    n2: int
    n: int
    outputs: int
    symmetric: bool

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the returned array."""
        C = self.outputs
        if self.structure == "full":
            return (self.n2 * C, self.n * C)
        if self.structure == "block-diagonal":
            return (C, self.n2, self.n)
        return (self.n2, self.n)

    @property
    def work_shape(self) -> tuple[int, ...]:
        """Shape of the work array the blocks are added into."""
        if self.structure == "full":
            return (self.n2, self.outputs, self.n, self.outputs)
        return self.shape

    def block_elements(self, rows2: int, rows: int) -> int:
        """Elements of one block of ``rows2`` by ``rows`` rows."""
        per_pair = {"full": self.outputs**2, "block-diagonal": self.outputs, "trace": 1}
        return rows2 * rows * per_pair[self.structure]

    def describe(self) -> str:
        """``"6000 x 6000"`` (the returned shape, for messages)."""
        return " x ".join(str(s) for s in self.shape)

    def allocate(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A zero work array."""
        return torch.zeros(self.work_shape, dtype=dtype, device=device)

    def contract(self, A: torch.Tensor, B: torch.Tensor | None) -> torch.Tensor:
        """The block ``A B^T`` of two feature blocks ``A (ra, C, g)`` and ``B (rb, C, g)``
        (``B`` None: ``A`` against itself), in work layout, as a new tensor."""
        B = A if B is None else B
        ra, C, g = A.shape
        rb = B.shape[0]
        if self.structure == "full":
            return (A.reshape(ra * C, g) @ B.reshape(rb * C, g).T).reshape(ra, C, rb, C)
        if self.structure == "trace":
            return A.reshape(ra, C * g) @ B.reshape(rb, C * g).T
        return A.transpose(0, 1) @ B.permute(1, 2, 0)  # (C, ra, rb): one product per output

    def scale(self, block: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """``block`` times a per-row-pair factor ``(ra, rb)``, in place."""
        if self.structure == "full":
            return block.mul_(factor[:, None, :, None])
        if self.structure == "block-diagonal":
            return block.mul_(factor[None])
        return block.mul_(factor)

    def add(self, work: torch.Tensor, rows2: slice, rows: slice, block: torch.Tensor) -> None:
        """Add ``block`` at rows ``rows2`` x ``rows`` (a square kernel: on or above the block
        diagonal only, see :meth:`finish`)."""
        self._target(work, rows2, rows).add_(block)

    def accumulate(
        self,
        work: torch.Tensor,
        rows2: slice,
        rows: slice,
        A: torch.Tensor,
        B: torch.Tensor | None,
    ) -> None:
        """``work[rows2 x rows] += A B^T`` for feature blocks ``A (ra, C, g)``, ``B (rb, C, g)``
        (``B`` None: ``A A^T``, a diagonal block), straight into the work array: no
        block-sized temporary."""
        B = A if B is None else B
        ra, C, g = A.shape
        rb = B.shape[0]
        if self.structure == "full":
            # rows of (i, c) and columns of (j, c') form a plain strided submatrix
            target = work[rows2, :, rows, :].view(ra * C, rb * C)
            target.addmm_(A.reshape(ra * C, g), B.reshape(rb * C, g).T)
        elif self.structure == "trace":
            work[rows2, rows].addmm_(A.reshape(ra, C * g), B.reshape(rb, C * g).T)
        else:
            for c in range(C):
                work[c, rows2, rows].addmm_(A[:, c], B[:, c].T)

    def _target(self, work: torch.Tensor, rows2: slice, rows: slice) -> torch.Tensor:
        if self.structure == "full":
            return work[rows2, :, rows, :]
        if self.structure == "block-diagonal":
            return work[:, rows2, rows]
        return work[rows2, rows]

    def finish(self, work: torch.Tensor, *, complete: bool = False) -> np.ndarray:
        """The returned float64 array: reshaped, averaged over outputs for ``"trace"``, and
        for a square kernel made exactly symmetric.

        A square kernel's blocks are computed on and above the block diagonal only (about
        half the products); every entry of the flattened array below its diagonal (row ``i``
        and column ``j < i``, or the same row with ``c > c'``) is then copied from its mirror
        image, whatever the blocks were. A ``complete`` work array (every entry computed, as
        by the closed forms of ``_ntk_models``) is averaged with its transpose instead, as
        before the blocked paths existed.
        """
        result = work.detach().cpu().numpy().astype(np.float64, copy=False)
        result = result.reshape(self.shape)
        if self.structure == "trace" and self.outputs > 1:
            result /= self.outputs
        if self.symmetric:
            for square in result if result.ndim == 3 else (result,):
                (_average_transpose if complete else _mirror_upper)(square)
        return result


def _mirror_upper(K: np.ndarray) -> None:
    """``K[i, j] <- K[j, i]`` for ``i > j``, in place, a band of rows at a time (no second
    n x n array)."""
    n = K.shape[0]
    for start in range(0, n, _MIRROR_ROWS):
        stop = min(start + _MIRROR_ROWS, n)
        square = K[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        square[lower] = square.T[lower]
        K[stop:, start:stop] = K[start:stop, stop:].T


def _average_transpose(K: np.ndarray) -> None:
    """``K <- (K + K^T) / 2`` in place, a band of rows at a time."""
    n = K.shape[0]
    for start in range(0, n, _MIRROR_ROWS):
        rows = slice(start, min(start + _MIRROR_ROWS, n))
        mean = (K[rows, start:] + K[start:, rows].T) / 2
        K[rows, start:] = mean
        K[start:, rows] = mean.T
