"""Training precisions (``ntkdyn.conventions.DTYPES``) and the reduced-precision matrix products.

A precision names a storage dtype and what the large matrix products may do:

* ``"float64"``, ``"float32"``: everything in that dtype; float32 products are exact float32
  GEMMs (TF32 off).
* ``"tf32"``: float32 storage; on CUDA, float32 GEMMs and convolutions may use TF32 tensor
  cores (10-bit mantissa operands) for the duration of the ``train`` call, the global flags
  restored afterwards. TF32 exists on NVIDIA GPUs only: on any other device it is float32
  (one warning says so).
* ``"bfloat16"``: parameters, optimizer registers, residuals and losses stay float32 (an update
  ``lr * g`` below ``2^-9`` of a weight would be lost in bfloat16 storage, so training would
  stall); only the batch's large GEMMs take operands rounded to bfloat16 and accumulate in
  float32 (what bfloat16 tensor cores do). On CUDA they run as bfloat16 GEMMs; elsewhere the
  same rounding is emulated in float32 (the products of two bfloat16 numbers are exact in
  float32), at float32 speed: a CPU without bfloat16 units runs real bfloat16 GEMMs ~50x slower
  than float32 ones. Networks outside the two-layer fast path run under ``torch.autocast``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..conventions import DTYPES, storage_dtype

__all__ = ["BF16Matmul", "Precision", "matmul_precision", "resolve_precision"]

_TORCH_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16"}


@dataclass(frozen=True)
class Precision:
    """A resolved training precision (module doc)."""

    name: str  # one of DTYPES
    storage: torch.dtype  # parameters, registers, inputs, losses
    tf32: bool  # TF32 GEMMs allowed on CUDA
    bf16: bool  # GEMM operands rounded to bfloat16


def resolve_precision(
    dtype: object, models: Sequence[nn.Module], allow_tf32: bool = False
) -> Precision:
    """The precision of a ``train`` call: ``dtype`` (a name of ``DTYPES``, ``torch.float32``,
    ``torch.float64`` or ``torch.bfloat16``) if given, else the models' one floating dtype.

    ``allow_tf32=True`` turns float32 into ``"tf32"`` (float64 and bfloat16 have no TF32).
    """
    if dtype is None:
        found = {p.dtype for m in models for p in m.parameters() if p.is_floating_point()}
        if len(found) != 1 or next(iter(found)) not in (torch.float32, torch.float64):
            raise ValueError(
                "`dtype` must be given when the models' dtypes are not one of float32/float64 "
                f"(found {sorted(map(str, found))})"
            )
        name = _TORCH_NAMES[found.pop()]
    elif isinstance(dtype, torch.dtype) and dtype in _TORCH_NAMES:
        name = _TORCH_NAMES[dtype]
    elif isinstance(dtype, str) and dtype in DTYPES:
        name = dtype
    else:
        raise ValueError(
            f"`dtype` must be one of {', '.join(repr(d) for d in DTYPES)}, torch.float32, "
            f"torch.float64, torch.bfloat16 or None, got {dtype!r}"
        )
    if not isinstance(allow_tf32, bool):
        raise ValueError(f"`allow_tf32` must be True or False, got {allow_tf32!r}")
    if allow_tf32 and name == "float32":
        name = "tf32"
    storage = getattr(torch, storage_dtype(name))
    return Precision(name, storage, tf32=name == "tf32", bf16=name == "bfloat16")


_warned_tf32_off_cuda = False


def warn_tf32_off_cuda(device: torch.device) -> None:
    """One warning per process: TF32 asked for on a device without it (it trains float32)."""
    global _warned_tf32_off_cuda
    if device.type != "cuda" and not _warned_tf32_off_cuda:
        _warned_tf32_off_cuda = True
        warnings.warn(
            f"`dtype` 'tf32' trains in plain float32 on {device.type!r}: TF32 tensor cores "
            "exist on NVIDIA GPUs only",
            RuntimeWarning,
            stacklevel=3,
        )


@contextlib.contextmanager
def matmul_precision(allow_tf32: bool) -> Iterator[None]:
    """TF32 off (exact float32 GEMMs) unless asked; the global flags are restored afterwards."""
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = bool(allow_tf32)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous[0])
        torch.backends.cudnn.allow_tf32 = previous[1]


class BF16Matmul:
    """``A @ B`` with both operands rounded to bfloat16, accumulated and returned in float32.

    Constant right operands are prepared once (:meth:`operand`); the left one (the weights or
    the backpropagated error, which change every step) is rounded at each call.
    """

    def __init__(self, device: torch.device):
        self.native = device.type == "cuda"  # bfloat16 tensor cores; elsewhere: emulated
        self._out_dtype = True  # whether torch.mm takes out_dtype (tried on the first call)

    def operand(self, B: torch.Tensor) -> torch.Tensor:
        """``B`` rounded to bfloat16, in the dtype :meth:`mm` multiplies in."""
        B16 = B.to(torch.bfloat16)
        return B16.contiguous() if self.native else B16.to(B.dtype).contiguous()

    def mm(self, A: torch.Tensor, B: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = round16(A) @ B`` for ``B`` from :meth:`operand`; returns ``out``."""
        if not self.native:
            return torch.mm(A.to(torch.bfloat16).to(out.dtype), B, out=out)
        A16 = A.to(torch.bfloat16)
        if self._out_dtype:
            try:  # a float32 result straight from the bfloat16 GEMM (recent torch on CUDA)
                return out.copy_(torch.mm(A16, B, out_dtype=out.dtype))
            except (TypeError, RuntimeError):
                self._out_dtype = False
        return out.copy_(torch.mm(A16, B))  # older torch: the result is rounded to bfloat16
