"""The step loop shared by both batch kinds: losses on the device, divergence masks, checkpoints.

A batch object provides ``N``, ``dtype``, ``device``, ``forward(need_grad) -> (N,) losses``,
``step(k, frozen)``, ``diagnostics() -> dict``, ``outputs(X) -> (N, n, C)`` and
``final_params(models)``. The loop never synchronises with the host inside a step: losses go
into a ``(steps + 1, N)`` device buffer, divergence is detected with device-side masks, and the
host only reads at checkpoints and at the steps whose outputs are recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .result import DIVERGENCE_FACTOR, Diagnostics

__all__ = ["Batch", "BatchRun", "run_batch"]


class Batch(Protocol):
    """What :func:`run_batch` needs of a batch of N networks (module docstring)."""

    N: int
    dtype: torch.dtype
    device: torch.device

    def forward(self, need_grad: bool = True) -> torch.Tensor: ...

    def step(self, k: int, frozen: torch.Tensor) -> None: ...

    def diagnostics(self) -> dict: ...

    def outputs(self, X: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class BatchRun:
    """Raw output of :func:`run_batch` for N networks (turned into RunResults by the engine)."""

    losses: np.ndarray  # (steps + 1, N) float64
    diverged_at: list[int | None]  # per network: step or None
    diagnostics: list[Diagnostics | None]  # None when no checkpoints were asked for
    outputs: list[np.ndarray]  # per input set: (k, N, n, C) float64 at the recorded steps


def _spectra(diag: dict) -> dict[str, np.ndarray | None]:
    """Eigen-summaries of the per-network Grams ``(N, n, n)``; NaN where a Gram is not finite."""
    H, H0 = diag["gram"], diag["gram0"]
    ok = torch.isfinite(H).flatten(1).all(1)

    def clean(A: torch.Tensor) -> torch.Tensor:
        return torch.where(ok[:, None, None], A, torch.zeros_like(A))

    lam = torch.linalg.eigvalsh(clean(H))
    if H is H0:  # the first checkpoint: H(0) - H(0) = 0, no eigendecomposition needed
        change = torch.zeros_like(lam[:, 0])
    else:
        change = torch.linalg.eigvalsh(clean(H - H0)).abs().amax(-1)
    nan = torch.full_like(change, float("nan"))
    out = {
        "lambda_min": torch.where(ok, lam[:, 0], nan),
        "lambda_max": torch.where(ok, lam[:, -1], nan),
        "kernel_change": torch.where(ok, change, nan),
        "weight_change": diag["weight_change"],
        "pattern_change": diag["pattern_change"],
    }
    return {k: None if v is None else v.detach().cpu().double().numpy() for k, v in out.items()}


def run_batch(
    batch: Batch,
    steps: int,
    checkpoints: set[int],
    progress: Callable[[int, int], None] | None = None,
    offset: int = 0,
    total: int | None = None,
    *,
    record: Sequence[int] = (),
    inputs: Sequence[torch.Tensor] = (),
) -> BatchRun:
    """Train ``batch`` for ``steps`` steps; returns a :class:`BatchRun`.

    Divergence (result.py): at step t a live network with a non-finite loss or a loss above
    ``DIVERGENCE_FACTOR * max(L_0, tiny)`` is recorded with that loss, frozen (its increments
    are masked to 0 from step t + 1 on) and its later losses, diagnostics and outputs are NaN.
    The outputs on every tensor of ``inputs`` are recorded after each step of ``record``.
    """
    N, dtype, device = batch.N, batch.dtype, batch.device
    losses = torch.empty(steps + 1, N, dtype=dtype, device=device)
    alive = torch.ones(N, dtype=torch.bool, device=device)
    diverged_at = torch.full((N,), -1, dtype=torch.long, device=device)
    nan = torch.tensor(float("nan"), dtype=dtype, device=device)
    tiny = torch.finfo(dtype).tiny
    every = max(1, steps // 100)
    records = []
    wanted = set(record)
    outs: list[list[torch.Tensor]] = [[] for _ in inputs]
    for t in range(steps + 1):
        L = batch.forward(need_grad=t < steps)
        if t == 0:
            threshold = L.clamp_min(tiny) * DIVERGENCE_FACTOR
        losses[t] = torch.where(alive, L, nan)
        newly = alive & ~(torch.isfinite(L) & (L <= threshold))
        diverged_at = torch.where(newly, t, diverged_at)
        alive = alive & ~newly
        if t in checkpoints:
            records.append((t, _spectra(batch.diagnostics())))
        if t in wanted:  # to the host at once: k (N, n, C) arrays could fill the device
            for kept, X in zip(outs, inputs, strict=True):
                kept.append(batch.outputs(X).detach().to("cpu", torch.float64))
        if t < steps:
            batch.step(t + 1, ~alive)
        if progress is not None and (t % every == 0 or t == steps):
            progress(offset + t, total if total is not None else steps)

    div = [None if k < 0 else int(k) for k in diverged_at.cpu().tolist()]
    curves = losses.cpu().double().numpy()
    outputs = _frozen_to_nan(outs, sorted(wanted), div)
    if not records:
        return BatchRun(curves, div, [None] * N, outputs)
    steps_arr = np.array([t for t, _ in records])
    diagnostics: list[Diagnostics | None] = []
    names = ["lambda_min", "lambda_max", "kernel_change", "weight_change", "pattern_change"]
    if records[0][1]["pattern_change"] is None:
        names.remove("pattern_change")
    table = {name: np.array([r[name] for _, r in records]) for name in names}  # (c, N)
    for j in range(N):
        # Diagnostics after the divergence step describe frozen parameters: report NaN.
        dead = np.zeros(len(records), bool) if div[j] is None else steps_arr > div[j]
        values = {name: np.where(dead, np.nan, table[name][:, j]) for name in names}
        diagnostics.append(
            Diagnostics(
                steps=steps_arr.copy(),
                lambda_min=values["lambda_min"],
                lambda_max=values["lambda_max"],
                kernel_change=values["kernel_change"],
                weight_change=values["weight_change"],
                pattern_change=values.get("pattern_change"),
            )
        )
    return BatchRun(curves, div, diagnostics, outputs)


def _frozen_to_nan(
    outs: list[list[torch.Tensor]], steps: list[int], div: list[int | None]
) -> list[np.ndarray]:
    """Stack the recorded outputs ``(k, N, n, C)``; NaN after a network's divergence step."""
    late = np.array([[k > d if d is not None else False for d in div] for k in steps], bool)
    stacked = []
    for kept in outs:
        if not kept:  # nothing recorded: the engine builds the (0, n, C) arrays itself
            stacked.append(np.empty((0, len(div), 0, 0)))
            continue
        F = torch.stack(kept).numpy()
        F[late] = np.nan
        stacked.append(F)
    return stacked
