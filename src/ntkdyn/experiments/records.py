"""The records a sweep stores, and their encoding as rows of the store (``store``).

A run's curves are float64 little-endian BLOBs of ``steps + 1`` values in the units of the
loss actually minimised; its kernel model at initialisation (the eigenvalues of ``K = c H(0)``
and ``xi_0 = Q^T e_0``) is stored with it, so that the exact kernel prediction of any rule
can be recomputed (``ntkdyn.verdicts``).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .runs import RunConfigView

__all__ = ["KernelRecord", "RunRecord", "decode_curve", "encode_curve", "run_from_row"]

#: The columns of the ``runs`` table, in order (the schema is in ``store``).
RUN_COLUMNS = (
    "id",
    "experiment",
    "config",
    "status",
    "diverged_at",
    "steps",
    "final_loss",
    "losses",
    "diagnostics",
    "pred_discrete",
    "pred_discrete_inf",
    "pred_ode",
    "lambda_min_k",
    "lambda_max_k",
    "h0",
    "kernel_eigenvalues",
    "kernel_modes",
    "elapsed",
    "finished",
)
_CURVES = ("losses", "pred_discrete", "pred_discrete_inf", "pred_ode")
#: Every float64 array column: the curves and the kernel model at initialisation.
_ARRAYS = _CURVES + ("kernel_eigenvalues", "kernel_modes")


def encode_curve(values: ArrayLike | None) -> bytes | None:
    """float64 little-endian bytes of a 1-D curve (None stays None, i.e. SQL NULL)."""
    if values is None:
        return None
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64).ravel(), dtype="<f8").tobytes()


def decode_curve(blob: bytes | None) -> np.ndarray | None:
    """Inverse of :func:`encode_curve`; the array is read-only."""
    if blob is None:
        return None
    arr = np.frombuffer(blob, dtype="<f8").astype(np.float64)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class RunRecord(RunConfigView):
    """One finished run as stored (curves in the units of the loss actually minimised).

    Attributes:
        id: stable run id (``runs.run_id``).
        experiment: id of the experiment the run belongs to.
        config: the normalised run config (``RunSpec.config``).
        status: ``"ok"`` or ``"diverged"``.
        diverged_at: first step with a non-finite or exploding loss, or None.
        steps: optimizer steps; ``losses`` has ``steps + 1`` entries.
        final_loss: ``losses[-1]`` for an ``ok`` run, None for a diverged one.
        losses: measured training loss per step.
        diagnostics: dict of equal-length arrays (``step``, ``lambda_min``, ``lambda_max``,
            ``h_drift``, ``w_drift``, ``flipped``) or None.
        pred_discrete: exact kernel prediction with ``K = c H(0)`` of the run's own init.
        pred_discrete_inf: the same with ``K = c H^inf``.
        pred_ode: the limiting ODE with ``c H^inf`` at the run's step times, or None.
        lambda_min_k, lambda_max_k: extreme eigenvalues of ``K = c H(0)``.
        h0: ``lr * lambda_min_k`` (linear rules only).
        kernel_eigenvalues: ascending eigenvalues of ``K = c H(0)`` (``(n,)``), or None.
        kernel_modes: ``xi_0 = Q^T e_0``, the initial residual in that eigenbasis, or None.
        elapsed: this run's share of its batch's wall time, seconds.
        finished: UTC ISO time at which its batch was committed.
    """

    id: str
    experiment: str
    config: dict
    status: str
    diverged_at: int | None
    steps: int
    final_loss: float | None
    losses: np.ndarray
    diagnostics: dict | None = None
    pred_discrete: np.ndarray | None = None
    pred_discrete_inf: np.ndarray | None = None
    pred_ode: np.ndarray | None = None
    lambda_min_k: float | None = None
    lambda_max_k: float | None = None
    h0: float | None = None
    kernel_eigenvalues: np.ndarray | None = None
    kernel_modes: np.ndarray | None = None
    elapsed: float | None = None
    finished: str = ""

    @property
    def optimizer(self) -> str:
        """Canonical spec of the run's rule (``optim.parse`` rebuilds it)."""
        return self.config["optimizer"]

    def _row(self) -> tuple:
        diagnostics = None
        if self.diagnostics is not None:
            diagnostics = json.dumps(
                {k: np.asarray(v).tolist() for k, v in self.diagnostics.items()}, sort_keys=True
            )
        values = {
            "config": json.dumps(self.config, sort_keys=True, separators=(",", ":")),
            "diagnostics": diagnostics,
            "final_loss": _real(self.final_loss),
            **{name: encode_curve(getattr(self, name)) for name in _ARRAYS},
        }
        return tuple(values[c] if c in values else getattr(self, c) for c in RUN_COLUMNS)


@dataclass(frozen=True, eq=False)
class KernelRecord:
    """Spectrum of ``H^inf`` (loss factor not included) of one data key."""

    key: str
    data: str
    n: int
    data_seed: int
    mode: str
    lambda_min: float
    lambda_max: float
    eigenvalues: np.ndarray = field(repr=False)


def _real(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run_from_row(row: sqlite3.Row) -> RunRecord:
    values = {c: row[c] for c in RUN_COLUMNS}
    values["config"] = json.loads(values["config"])
    if values["diagnostics"] is not None:
        values["diagnostics"] = {
            k: np.asarray(v) for k, v in json.loads(values["diagnostics"]).items()
        }
    for name in _ARRAYS:
        values[name] = decode_curve(values[name])
    return RunRecord(**values)
