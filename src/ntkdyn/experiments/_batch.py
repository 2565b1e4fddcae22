"""One engine batch of a sweep, as a pure function of its runs and their data: build each
network from its seed, compute its kernel model at initialisation (and its predictions when the
config asks for them), train the batch in one ``ntkdyn.training.train`` call and return one
record per run. It writes nothing, so any process can run it: the sweep's own (local backend)
or a Dask worker (``experiments._dask``); only the driver writes the store.

A run with a ``depth`` trains ``models.DeepReLU`` (all layers, NTK parameterisation); its
infinite-width prediction uses the analytic deep NTK ``kernels.deep_relu_ntk`` of that depth
in place of the two-layer ``H^inf`` (``runs.DataCache.limit_spectrum``); it has checkpoint
diagnostics only when its config sets ``diagnostics_every``.

Predictions are in the units of the loss minimised: ``predict_discrete`` gives ``1/2 ||e||^2``
and is multiplied by ``c`` (1 for half-sum, 2/n for mse; docs/mathematics.md §0).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..conventions import torch_dtype
from .runs import DataCache, RunSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["build_network", "train_batch"]

#: RunResult.diagnostics field -> stored key (store.RunRecord.diagnostics).
_DIAGNOSTIC_NAMES = {
    "steps": "step",
    "lambda_min": "lambda_min",
    "lambda_max": "lambda_max",
    "kernel_change": "h_drift",
    "weight_change": "w_drift",
    "pattern_change": "flipped",
}


@dataclass(frozen=True)
class _Prediction:
    discrete: np.ndarray | None = None
    discrete_inf: np.ndarray | None = None
    ode: np.ndarray | None = None
    lambda_min_k: float | None = None
    lambda_max_k: float | None = None
    h0: float | None = None
    kernel_eigenvalues: np.ndarray | None = None
    kernel_modes: np.ndarray | None = None


def _predict(run: RunSpec, model, cache: DataCache, loss: str, device: str) -> _Prediction:
    """The run's kernel model at initialisation (``K = c H(0)`` and ``e_0`` in its eigenbasis,
    always; its Gram on the training ``device``, in float64) and, when the config asks for
    them, its predictions (module docstring, step 4)."""
    from ..prediction import KernelModel, kernel_at_init, predict_curves

    ds = cache.dataset(run.data_spec)
    with warnings.catch_warnings():  # an ill-conditioned kernel is reported by the verdicts
        warnings.simplefilter("ignore")
        k0 = kernel_at_init(model, ds, loss, device=device)
    rule, steps = run.rule, run.config["steps"]
    model_at_init = _Prediction(
        lambda_min_k=k0.lambda_min,
        lambda_max_k=k0.lambda_max,
        h0=rule.lr * k0.lambda_min if rule.is_linear else None,
        kernel_eigenvalues=np.array(k0.eigenvalues),
        kernel_modes=k0.modes,
    )
    if not (rule.is_linear and run.config["predict"]):
        return model_at_init
    discrete = predict_curves(k0, rule, steps).loss
    discrete_inf = ode = None
    if run.config["mode"] == "theory":  # H^inf is the limit of the theory parameterisation only
        c = k0.loss_factor
        assert k0.e0 is not None  # kernel_at_init builds it from the residual
        infinite = cache.limit_spectrum(run.data_spec, run.depth)
        k_inf = KernelModel.from_spectrum(infinite.scaled(c), k0.e0, c)
        limit = predict_curves(k_inf, rule, steps, ode=True)
        discrete_inf, ode = limit.loss, limit.ode_loss
    return replace(model_at_init, discrete=discrete, discrete_inf=discrete_inf, ode=ode)


def _diagnostics(diag) -> dict | None:
    if diag is None:
        return None
    out = {}
    for name, key in _DIAGNOSTIC_NAMES.items():
        value = getattr(diag, name, None)
        if value is not None:
            out[key] = np.asarray(value)
    return out


def build_network(run: RunSpec, d: int) -> nn.Module:
    """The run's network drawn from ``torch.Generator().manual_seed(seed)``: a
    ``TwoLayerReLU`` of the run's mode, or a ``DeepReLU`` when the run has a depth."""
    import torch

    from ..models import DeepReLU, TwoLayerReLU

    cfg = run.config
    dtype = torch_dtype(cfg["dtype"])  # storage; tf32/bfloat16 go to train by name
    generator = torch.Generator().manual_seed(run.seed)
    if run.depth is not None:
        return DeepReLU(d, run.width, run.depth, generator=generator, dtype=dtype)
    return TwoLayerReLU(
        d, run.width, parameterization=cfg["mode"], dtype=dtype, generator=generator
    )


def diagnosed(batch: list[RunSpec]) -> bool:
    """Whether the engine takes diagnostics for ``batch``: a deep network's checkpoint Gram
    forms its whole Jacobian (n x all weights: GBs at m = 4096), so only where the config asks
    for checkpoints; a two-layer batch always (its first and last step at least)."""
    return batch[0].depth is None or batch[0].config["diagnostics_every"] is not None


def train_batch(
    batch: list[RunSpec],
    cache: DataCache,
    devices: dict[str, str],
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Train one batch; returns one record per run (``store.RunRecord`` fields without
    ``elapsed`` and ``finished``). ``devices`` maps requested to resolved devices;
    ``progress(step, steps)`` is passed to the engine."""
    from ..training import train

    first = batch[0].config
    spec = batch[0].data_spec
    ds = cache.dataset(spec)
    models = [build_network(run, ds.d) for run in batch]
    preds = [
        _predict(run, m, cache, first["loss"], devices[first["device"]])
        for run, m in zip(batch, models, strict=True)
    ]
    results = train(
        # writable copies of the (read-only) data: torch warns on read-only arrays
        models,
        np.array(ds.X),
        np.array(ds.y),
        [run.rule for run in batch],
        first["steps"],
        loss=first["loss"],
        dtype=first["dtype"],
        device=devices[first["device"]],
        diagnostics_every=first["diagnostics_every"],
        diagnostics=diagnosed(batch),
        progress=progress,
    )
    records = []
    for run, res, pred in zip(batch, results, preds, strict=True):
        ok = res.status == "ok"
        records.append(
            {
                "id": run.id,
                "experiment": run.experiment,
                "config": run.config,
                "status": res.status,
                "diverged_at": res.diverged_at,
                "steps": run.config["steps"],
                "final_loss": float(res.losses[-1]) if ok else None,
                "losses": np.asarray(res.losses, dtype=np.float64),
                "diagnostics": _diagnostics(getattr(res, "diagnostics", None)),
                "pred_discrete": pred.discrete,
                "pred_discrete_inf": pred.discrete_inf,
                "pred_ode": pred.ode,
                "lambda_min_k": pred.lambda_min_k,
                "lambda_max_k": pred.lambda_max_k,
                "h0": pred.h0,
                "kernel_eigenvalues": pred.kernel_eigenvalues,
                "kernel_modes": pred.kernel_modes,
            }
        )
    return records
