"""Synthetic stored runs shared by the report tests.

Synthetic "measured" curves are exact kernel-model curves (docs/mathematics.md §3) on the H^inf
spectrum of docs/mathematics.md §6's data (the ``kernel`` fixture in conftest.py), or curves
built to refute a claim.
"""

from __future__ import annotations

import numpy as np

from ntkdyn.dynamics.discrete import predict_discrete
from ntkdyn.dynamics.ode import predict_ode
from ntkdyn.experiments.store import RunRecord
from ntkdyn.optim import parse

LR = 0.1
DATA = {"mode": "theory", "data": "gaussian:d=5", "n": 20, "data_seed": 0, "loss": "half-sum"}


def _record(
    experiment,
    spec,
    losses,
    *,
    width=4096,
    seed=0,
    pred=None,
    ode=None,
    h0=None,
    lam=None,
    base=DATA,
    status="ok",
    diagnostics=None,
    dtype="float64",
    model=None,
):
    losses = np.asarray(losses, dtype=float)
    cfg = {
        **base,
        "experiment": experiment,
        "width": width,
        "seed": seed,
        "optimizer": parse(spec).spec,
        "steps": losses.size - 1,
        "dtype": dtype,
        "device": "cpu",
        "predict": pred is not None,
        "diagnostics_every": None,
    }
    rid = f"{experiment}-{abs(hash((spec, width, seed))) % 10**12:012d}"
    ok = status == "ok"
    return RunRecord(
        id=rid,
        experiment=experiment,
        config=cfg,
        status=status,
        diverged_at=None if ok else int(np.argmax(~np.isfinite(losses))),
        steps=losses.size - 1,
        final_loss=float(losses[-1]) if ok else None,
        losses=losses,
        diagnostics=diagnostics,
        pred_discrete=pred,
        pred_discrete_inf=pred,
        pred_ode=ode,
        lambda_min_k=None if lam is None else lam[0],
        lambda_max_k=None if lam is None else lam[1],
        h0=h0,
        elapsed=0.1,
        finished="2026-01-01T00:00:00Z",
        kernel_eigenvalues=None if model is None else model[0],
        kernel_modes=None if model is None else model[1],
    )


def _kernel_curve(kernel, spec, steps, *, ode=False):
    K, e0 = kernel
    rule = parse(spec)
    L = predict_discrete(K, e0, rule, steps)
    out = {
        "pred": L,
        "h0": rule.lr * K.lambda_min,
        "lam": (K.lambda_min, K.lambda_max),
        "model": (np.asarray(K.eigenvalues), K.eigenvectors.T @ e0),
    }
    if ode:
        out["ode"] = predict_ode(K, e0, rule, rule.ode().times(rule.lr, np.arange(steps + 1)))
    return L, out


def _width_records(kernel, exponent):
    """GD runs whose measured curve deviates from the prediction by ~ m^exponent."""
    L, kw = _kernel_curve(kernel, f"gd:lr={LR}", 500)
    k = np.arange(L.size)
    bump = np.sin(np.pi * np.minimum(k / 200.0, 1.0))  # zero at k = 0
    records = []
    for m in (256, 1024, 4096, 16384):
        for seed in (0, 1, 2):
            scale = 0.3 * m**exponent * (1.0 + 0.1 * seed)
            records.append(
                _record("W", f"gd:lr={LR}", L * (1 + scale * bump), width=m, seed=seed, **kw)
            )
    return records


EVIL = '<script>alert("x")</script> & $\\notacommand$ "quoted"'
