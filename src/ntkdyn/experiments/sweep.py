"""Run a sweep: expand a config, train its runs in engine batches, store each finished batch.

Order of work (docs/design.md, "Data flow of the main job"; "Reliability rules"):

1. validate everything first (config, its size: ``runs.check_size``, data specs, data-driven
   parameters, devices, the out dir and, when it already holds a store, its schema, config
   and, on resume, the content hashes of the data: ``runs.check_data_hashes``); a bad input
   raises ValueError naming the field and nothing is created;
2. create ``DIR/results.sqlite``, write meta (config, environment, ``data_hashes``: data key
   -> content hash, JSON) and the ``H^inf`` spectra;
3. group the runs into engine batches (``runs.plan_batches``): runs sharing ``(mode, data,
   n, data_seed, loss, steps, dtype, device, diagnostics_every)`` train together in one
   ``ntkdyn.training.train`` call, split so that total width x max(n, d) stays below
   :data:`MAX_BATCH_ELEMENTS`. Batches are planned from *all* runs, then finished ones are
   dropped, so a resumed sweep recomputes exactly the batches it lost (same composition,
   hence bit-identical curves);
4. per batch: build each model from ``torch.Generator().manual_seed(seed)``, compute its
   kernel predictions from the *initial* weights (theory mode: ``K = c H(0)`` and
   ``K_inf = c H^inf`` with ``e0 = u(W0) - y``, docs/mathematics.md §3, 6; the limiting ODE on ``K_inf`` at
   times ``rule.ode().times(lr, k)``, docs/mathematics.md §4), train, and commit the batch in one
   transaction. A diverged network is stored with status "diverged"; the others are not
   affected.

Predictions are in the units of the loss minimised: ``predict_discrete`` gives ``1/2 ||e||^2``
and is multiplied by ``c`` (1 for half-sum, 2/n for mse; docs/mathematics.md §0).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ._lock import out_dir_lock
from ._setup import check_out_dir, environment, now, resolve_device
from .config import Config, config_dict, load_config
from .progress import Progress
from .records import KernelRecord, RunRecord
from .runs import (
    CUDA_BATCH_ELEMENTS,
    MAX_BATCH_ELEMENTS,
    DataCache,
    RunSpec,
    check_data_hashes,
    check_networks_fit,
    check_size,
    data_hashes,
    expand_runs,
    plan_batches,
)
from .store import STORE_NAME, Store

__all__ = [
    "CUDA_BATCH_ELEMENTS",
    "MAX_BATCH_ELEMENTS",
    "SweepResult",
    "plan_batches",
    "run_sweep",
]

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
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        out_dir: the results directory; ``store``: its SQLite file.
        total: runs in the config; ``skipped``: already finished (``resume``);
        trained: runs trained now, of which ``diverged`` diverged; ``batches``: engine batches
        run now; ``elapsed``: wall time in seconds; ``deleted``: finished runs deleted by
        ``fresh``.
    """

    out_dir: Path
    store: Path
    total: int
    skipped: int
    trained: int
    diverged: int
    batches: int
    elapsed: float
    deleted: int = 0


# --------------------------------------------------------------------------------------------
# One batch.


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


def _predict(run: RunSpec, model, cache: DataCache, loss: str) -> _Prediction:
    """The run's kernel model at initialisation (``K = c H(0)`` and ``e_0`` in its eigenbasis,
    always) and, when the config asks for them, its predictions (module docstring, step 4)."""
    from ..prediction import KernelModel, kernel_at_init, predict_curves

    ds = cache.dataset(run.data_spec)
    with warnings.catch_warnings():  # an ill-conditioned kernel is reported by the verdicts
        warnings.simplefilter("ignore")
        k0 = kernel_at_init(model, ds, loss)
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
        k_inf = KernelModel.from_spectrum(cache.spectrum(run.data_spec).scaled(c), k0.e0, c)
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


def _train_batch(batch: list[RunSpec], cache: DataCache, devices: dict[str, str]):
    """Train one batch; returns (records without timing, diverged count)."""
    import torch

    from ..models import TwoLayerReLU
    from ..training import train

    first = batch[0].config
    spec = batch[0].data_spec
    ds = cache.dataset(spec)
    dtype = torch.float32 if first["dtype"] == "float32" else torch.float64
    models = [
        TwoLayerReLU(
            ds.d,
            run.width,
            parameterization=first["mode"],
            dtype=dtype,
            generator=torch.Generator().manual_seed(run.seed),
        )
        for run in batch
    ]
    preds = [_predict(run, m, cache, first["loss"]) for run, m in zip(batch, models, strict=True)]
    results = train(
        # writable copies of the (read-only) data: torch warns on read-only arrays
        models,
        np.array(ds.X),
        np.array(ds.y),
        [run.rule for run in batch],
        first["steps"],
        loss=first["loss"],
        dtype=dtype,
        device=devices[first["device"]],
        diagnostics_every=first["diagnostics_every"],
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


# --------------------------------------------------------------------------------------------
# Entry point.


def _reporter(
    progress: bool | Callable[[int, int], None] | None, total: int, work: float
) -> Progress | Callable[[int, int], None] | None:
    if progress is False:
        return None
    if progress is None or progress is True:
        return Progress(total, work=work)
    if callable(progress):
        return progress
    raise ValueError(f"`progress` must be None, a bool or a callable, got {progress!r}")


def run_sweep(
    config: Config | dict | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    fresh: bool = False,
    progress: bool | Callable[[int, int], None] | None = None,
    max_batch_elements: int | None = None,
    confirm_large: bool = False,
) -> SweepResult:
    """Train every run of ``config`` and store it in ``out_dir/results.sqlite``.

    Args:
        config: a :class:`Config`, a dict, a TOML path or TOML text (``load_config``).
        out_dir: the results directory (created if needed).
        resume: keep the finished runs of an existing store of the *same* config and train
            only the others; refused when the data of a data key changed since (the
            ``data_hashes`` meta; an older store without it is accepted).
        fresh: delete the finished runs of an existing store of the same config and train
            everything again. Without ``resume`` or ``fresh`` a store holding finished runs is
            refused (nothing is ever deleted silently); a store of a different config is
            refused always. The directory is locked for the whole sweep: a second sweep into
            it is refused with the holder's pid.
        progress: None or True: a progress bar / periodic lines on stderr; False: silent; a
            callable ``f(done_runs, total_runs)`` is called after each committed batch.
        max_batch_elements: batch size bound; None picks it per device (:func:`plan_batches`).
        confirm_large: run a config past ``runs.MAX_RUNS`` runs or ``runs.MAX_WORK`` work
            (``--yes``); otherwise it is refused before the runs are expanded or anything
            is written.

    Returns:
        a :class:`SweepResult`.
    """
    start = time.perf_counter()
    if resume and fresh:
        raise ValueError(
            "`--resume` and `--fresh` exclude each other: keep the runs or delete them"
        )
    loaded = load_config(config)
    check_size(loaded, confirm_large=confirm_large)
    out = check_out_dir(out_dir)
    cache = DataCache()
    runs = expand_runs(loaded, cache=cache)
    devices = {d: resolve_device(d) for d in sorted({r.config["device"] for r in runs})}
    config_json = json.dumps(config_dict(loaded), sort_keys=True)
    check_networks_fit(runs, cache)
    specs = {r.data_spec.key: r.data_spec for r in runs}
    data = (specs, data_hashes(specs.values(), cache))
    store_path = out / STORE_NAME
    if store_path.exists():  # under the lock: never read a store another sweep is writing
        with out_dir_lock(out), Store(store_path) as existing:
            _check_existing(existing, out, config_json, data, resume=resume, fresh=fresh)
    batches = plan_batches(runs, cache, max_elements=max_batch_elements, devices=devices)
    kernels = [_kernel_record(spec, cache) for spec in specs.values()]
    provenance = environment(devices)

    # Validation is over: from here on files are written, by this process alone.
    out.mkdir(parents=True, exist_ok=True)
    with out_dir_lock(out), Store(store_path) as store:
        # again under the lock: another sweep may have written since the check above
        done = _check_existing(store, out, config_json, data, resume=resume, fresh=fresh)
        deleted = len(done) if fresh else 0
        if fresh:
            store.delete_runs()
            done = set()
        meta = store.meta()
        store.set_meta(
            {
                "config": config_json,
                "environment": json.dumps(provenance, sort_keys=True),
                "data_hashes": json.dumps(data[1], sort_keys=True),
                "created": meta.get("created", now()),
                "updated": now(),
            }
        )
        store.write_kernels(kernels)
        pending = [[r for r in b if r.id not in done] for b in batches]
        pending = [b for b in pending if b]
        skipped = sum(r.id in done for r in runs)
        total_work = float(sum(r.width * r.config["steps"] for r in runs))
        done_work = float(sum(r.width * r.config["steps"] for r in runs if r.id in done))
        # The bar's ETA extrapolates the work of this session only.
        report = _reporter(progress, len(runs), total_work - done_work)
        if isinstance(report, Progress):
            report.update(skipped, 0.0, force=True)  # the starting point (skipped on resume)
        trained = diverged = 0
        work = 0.0
        try:
            for batch in pending:
                t0 = time.perf_counter()
                rows = _train_batch(batch, cache, devices)
                share, stamp = (time.perf_counter() - t0) / len(batch), now()
                store.write_batch([RunRecord(**row, elapsed=share, finished=stamp) for row in rows])
                trained += len(batch)
                diverged += sum(row["status"] != "ok" for row in rows)
                work += sum(r.width * r.config["steps"] for r in batch)
                if isinstance(report, Progress):
                    report.update(skipped + trained, work)
                elif report is not None:
                    report(skipped + trained, len(runs))
        finally:
            if isinstance(report, Progress):
                report.close()
    return SweepResult(
        out,
        store_path,
        len(runs),
        skipped,
        trained,
        diverged,
        len(pending),
        time.perf_counter() - start,
        deleted,
    )


def _check_existing(
    existing: Store, out: Path, config_json: str, data, *, resume: bool, fresh: bool
) -> set[str]:
    """The ids of the finished runs of ``existing`` (read and verified once). Refuses a store
    of another config, one with finished runs unless told what to do, and a resume on changed
    data (``data``: specs and content hashes by data key)."""
    meta = existing.meta()
    stored = meta.get("config")
    if stored is not None and stored != config_json:
        name = json.loads(stored).get("name", "?")
        raise ValueError(
            f"`--out` {str(out)!r} holds results of a different config ({name!r}); "
            "use another --out directory or delete its results.sqlite"
        )
    done = existing.finished_ids()
    finished = len(done)
    if finished and resume:
        check_data_hashes(meta.get("data_hashes"), data[1], data[0], str(out))
    if finished and not (resume or fresh):
        raise ValueError(
            f"`--out` {str(out)!r} holds {finished} finished runs of this config: add --resume "
            "to keep them and train the rest, or --fresh to delete them and start over"
        )
    return done


def _kernel_record(spec, cache: DataCache) -> KernelRecord:
    s = cache.spectrum(spec)
    return KernelRecord(
        key=spec.key,
        data=spec.data,
        n=cache.dataset(spec).n,
        data_seed=spec.data_seed,
        mode=spec.mode,
        lambda_min=s.lambda_min,
        lambda_max=s.lambda_max,
        eigenvalues=np.asarray(s.eigenvalues),
    )
