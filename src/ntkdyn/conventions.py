"""The conventions of ntkdyn, each defined once (docs/mathematics.md §0).

Import-light on purpose (no torch, no numpy): the CLI, the config parser and the theory
modules all read their names, loss factors and numerical policies from here.

* Loss: ``loss = c/2 sum_i e_i^2`` with ``e = u - y``. ``"half-sum"`` is ``1/2 sum e_i^2``
  (``c = 1``); ``"mse"`` is torch's ``MSELoss(reduction="mean")``, ``1/n sum e_i^2``
  (``c = 2/n``). The dynamics run on the effective kernel ``K = c H``.
* Kernel validation (one policy, applied by ``ntkdyn.kernels.spectrum``): ``K`` must be
  symmetric to ``SYMMETRY_RTOL``; eigenvalues in ``[-EIG_FLOOR_RTOL * lambda_max, 0)`` are
  rounding and clipped to 0 with one warning; more negative ones are rejected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._validate import choice

if TYPE_CHECKING:
    import torch

__all__ = [
    "DTYPES",
    "EIG_FLOOR_RTOL",
    "LATE_STEP",
    "LOSSES",
    "MODES",
    "SQUARED_LOSSES",
    "SYMMETRY_RTOL",
    "itemsize",
    "loss_factor",
    "storage_dtype",
    "torch_dtype",
]

#: Squared losses ``c/2 sum e_i^2``: ``"half-sum"`` (c = 1) and ``"mse"`` (``MSELoss(mean)``,
#: c = 2/n over n outputs); their dynamics have closed per-mode forms.
SQUARED_LOSSES = ("half-sum", "mse")
#: Every loss name (``ntkdyn.losses``): the squared ones, ``"logistic"`` (labels +-1, mean of
#: ``log(1 + exp(-y f))``) and ``"cross-entropy"`` (softmax, mean over rows).
LOSSES = (*SQUARED_LOSSES, "logistic", "cross-entropy")
#: Floating-point precisions a run may use: torch / NumPy dtype names, and two opt-in reduced
#: ones that store float32 (``ntkdyn.training._precision``): ``"tf32"`` (TF32 GEMMs on CUDA)
#: and ``"bfloat16"`` (GEMM operands rounded to bfloat16, float32 accumulation).
DTYPES = ("float32", "float64", "tf32", "bfloat16")
#: The dtype a run of each precision stores its weights, registers and losses in.
_STORAGE = {"float32": "float32", "float64": "float64", "tf32": "float32", "bfloat16": "float32"}
#: Parameterisations of the two-layer net (docs/mathematics.md §0): ``"theory"`` (``1/sqrt(m)``,
#: output layer fixed) and ``"notebook"`` (the authors' model: bias, both layers trained).
MODES = ("theory", "notebook")

#: ``K`` counts as symmetric when ``max|K - K^T| <= SYMMETRY_RTOL * max|K|``; float64 Grams
#: built by sums in different orders differ by ~1e-15 relative, far below this.
SYMMETRY_RTOL = 1e-10
#: Eigenvalues in ``[-EIG_FLOOR_RTOL * lambda_max, 0)`` are rounding of a singular PSD kernel
#: (eigh's error is ~n eps lambda_max) and are clipped to 0; below that ``K`` is not a kernel.
EIG_FLOOR_RTOL = 1e-10

#: The step that stands in for ``k -> infinity`` for schedules whose step matrices depend on k
#: (vanishing-damping Nesterov, ``beta_k = 1 - r/(k + r - 1)``). At 10**12 ``beta_k`` equals its
#: limit 1 to ~r 1e-12, far below every tolerance of the theory (>= 1e-8), while ``1 - beta_k``
#: is still resolved in float64 (eps ~ 2e-16), so the matrices stay those of a real step.
LATE_STEP = 10**12


def loss_factor(loss: str, n: int) -> float:
    """``c`` of ``loss = c/2 sum e_i^2`` on ``n`` outputs: 1 for half-sum, ``2/n`` for mse.

    Raises ValueError naming ``loss`` if it is not one of ``SQUARED_LOSSES``.
    """
    return 1.0 if choice("loss", loss, SQUARED_LOSSES) == "half-sum" else 2.0 / n


def storage_dtype(name: str) -> str:
    """The storage dtype name (``"float32"`` or ``"float64"``) of a precision of ``DTYPES``.

    Raises ValueError naming ``dtype`` if ``name`` is not one of ``DTYPES``.
    """
    return _STORAGE[choice("dtype", name, DTYPES)]


def itemsize(name: str) -> int:
    """Bytes per stored number of a precision of ``DTYPES`` (4 or 8)."""
    return 4 if storage_dtype(name) == "float32" else 8


def torch_dtype(name: str) -> torch.dtype:  # torch is imported only when called
    """The torch storage dtype of a precision of ``DTYPES`` (``torch.float32`` or ``float64``)."""
    import torch

    return getattr(torch, storage_dtype(name))
