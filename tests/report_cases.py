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


# --------------------------------------------------------------------------------------------
# A user's own grid (kind "curves"): the generic report.

#: lr values whose text order (0.5, 10, 2) differs from their numeric order (0.5, 2, 10).
GRID_LRS = (10.0, 0.5, 2.0)
GRID_BETAS = (0.9, 0.5)
#: Widths whose text order (1024, 256, 64) differs from their numeric order.
GRID_WIDTHS = (1024, 64, 256)


def _grid_final(lr, beta, width, seed):
    """A final loss that depends on every axis (so medians and cells can be told apart)."""
    return 1e-3 / lr * (1.0 - beta + 0.05) * (64.0 / width) * (1.0 + 0.2 * seed)


def grid_records(
    *,
    widths=GRID_WIDTHS,
    lrs=GRID_LRS,
    betas=GRID_BETAS,
    seeds=(1, 0),
    steps=40,
    experiment="G",
    extra=None,
    diverge=(),
):
    """HB runs over ``lrs x betas x widths x seeds`` plus one GD run per width and seed, with
    exact geometric curves and a kernel prediction that misses by ~ m^-1/2. Ids run against
    the value order (the first setting gets the largest id), so any figure ordered by id or
    by store order comes out reversed. ``diverge``: (lr, beta) settings whose runs diverge."""
    base = {**DATA, "mode": "theory", **(extra or {})}
    settings = [(f"gd:lr={lrs[0]}", lrs[0], 0.0)] + [
        (f"hb:lr={lr},beta={b}", lr, b) for lr in lrs for b in betas
    ]
    records, key = [], []
    for spec, lr, b in settings:
        for m in widths:
            for s in seeds:
                key.append((spec.split(":")[0], lr, b, m, s))
                final = _grid_final(lr, b, m, s)
                L = np.geomspace(1.0, final, steps + 1)
                bump = 1.0 + 0.5 * m**-0.5 * np.sin(np.linspace(0.0, np.pi, steps + 1))
                status = "ok"
                if (lr, b) in diverge:
                    L[steps // 2 :], status = np.nan, "diverged"
                rec = _record(
                    experiment, spec, L, width=m, seed=s, pred=L * bump, base=base, status=status
                )
                records.append(rec)
    order = sorted(range(len(records)), key=lambda i: key[i])
    for rank, i in enumerate(order):
        r = records[i]
        records[i] = RunRecord(**{**r.__dict__, "id": f"{experiment}-{999 - rank:03d}"})
    return records


def write_store(path, records, experiments, *, name="custom grid"):
    """A results store at ``path`` holding ``records``; ``experiments``: id -> (kind, mode)."""
    import json

    from ntkdyn.experiments.store import Store

    with Store(path / "results.sqlite") as store:
        store.set_meta(
            {
                "config": json.dumps(
                    {
                        "name": name,
                        "experiments": [
                            {"id": eid, "kind": kind, "title": "", "mode": mode}
                            for eid, (kind, mode) in experiments.items()
                        ],
                    },
                    sort_keys=True,
                ),
                "environment": json.dumps({"python": "3.x"}, sort_keys=True),
            }
        )
        store.write_batch(records)
    return path
