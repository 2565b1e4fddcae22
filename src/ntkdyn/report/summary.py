"""Per-run analysis of a results store and the machine-readable ``summary.json`` (docs/design.md).

Every stored run (``experiments.store.RunRecord``) is analysed once into a :class:`RunAnalysis`:

* ``fit``: the linear-vs-sublinear classifier of docs/mathematics.md §5 (:func:`ntkdyn.rates.fit_rate`) on the
  measured curve, per optimizer *step* (``t_k = k``), with the rounding floor of the run's dtype
  (:data:`FLOOR_REL`); ``fit_kernel`` the same on the exact kernel prediction with ``H(0)``.
* ``predicted``: :func:`ntkdyn.rates.predicted_rate` of the rule on ``K = c H(0)`` (its stored
  extreme eigenvalues; the per-step factor of GD, HB, NAG-SC and HOM is attained at an extreme
  eigenvalue, docs/mathematics.md §3), or on ``c H^inf`` when the run has no ``H(0)`` record.
* ``prediction_error``: docs/mathematics.md §6's metrics against the ``H(0)`` prediction:
  ``abs = max_k |L_net - L_pred| / L_0`` up to the step where the prediction falls to
  ``1e-4 L_0``; ``rel = max_k |L_net - L_pred| / E_pred,k`` (``E`` = the prediction's suffix
  maximum, its envelope) up to ``1e-2 L_0``. ``*_inf`` use the ``H^inf`` prediction.
* An adaptive rule (Adam, RMSprop) has its measured curve and fitted rate only; its
  summary.json ``predicted`` entry is ``{"kind": "none", "note": NO_KERNEL_PREDICTION}`` and its
  errors are null (docs/adaptive.md).

``summary.json`` is a pure function of the store: keys sorted, floats rounded to
:data:`FLOAT_DIGITS` significant digits (written with ``repr``), non-finite values as null, no
timestamps except inside ``environment`` (taken from the store's meta, never from the running
process), so ``ntkdyn report DIR`` rebuilds it byte for byte.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .._curves import envelope
from .._io import atomic_write_text
from ..conventions import loss_factor
from ..optim.rules import NO_KERNEL_PREDICTION, Rule, parse
from ..rates import PredictedRate, RateFit, fit_rate, predicted_rate
from ..verdicts.tolerances import FLOOR_REL

if TYPE_CHECKING:
    from ..experiments.records import RunRecord

__all__ = [
    "ABS_HORIZON",
    "FLOAT_DIGITS",
    "FLOOR_REL",
    "REL_HORIZON",
    "RunAnalysis",
    "analyze_run",
    "build_summary",
    "experiment_info",
    "prediction_error",
    "run_loss_factor",
    "summary_json",
    "write_summary",
]

#: Significant digits kept for every float in summary.json.
FLOAT_DIGITS = 10
#: docs/mathematics.md §6: ``abs`` runs until the prediction reaches 1e-4 L_0, ``rel`` until 1e-2 L_0.
ABS_HORIZON = 1e-4
REL_HORIZON = 1e-2


def run_loss_factor(config: dict, kernels: dict | None = None) -> float:
    """``c`` of ``loss = c/2 sum e_i^2`` for a run config (``ntkdyn.conventions.loss_factor``).

    ``n`` (read for the mse loss only) is the config's, or, when it is None (all rows of the
    data), the size of the run's stored ``H^inf`` in ``kernels``.
    """
    loss = config.get("loss", "half-sum")
    n = config.get("n")
    if loss == "mse" and not n and kernels:
        from ..experiments.runs import data_key

        k = kernels.get(data_key(config))
        n = None if k is None else k.n
    if loss == "mse" and not n:
        raise ValueError(f"`n` of the run config is needed for the mse loss factor, got {n!r}")
    return loss_factor(loss, n or 0)  # half-sum does not read n


@dataclass(frozen=True, eq=False)
class RunAnalysis:
    """One stored run with its rule, fits, prediction and errors (module docstring)."""

    record: RunRecord
    rule: Rule
    kind: str
    c: float
    floor_rel: float
    fit: RateFit | None
    fit_kernel: RateFit | None
    predicted: PredictedRate | None
    abs_err: float | None
    rel_err: float | None
    abs_err_inf: float | None
    rel_err_inf: float | None

    @property
    def config(self) -> dict:
        return self.record.config

    @property
    def width(self) -> int:
        return int(self.record.config["width"])

    @property
    def seed(self) -> int:
        return int(self.record.config["seed"])

    @property
    def ok(self) -> bool:
        return self.record.status == "ok"

    @property
    def label(self) -> str:
        """Short readable name, e.g. ``hb beta=0.8662`` (lr omitted)."""
        params = " ".join(f"{k}={_short(v)}" for k, v in self.rule.params.items())
        return f"{self.rule.name} {params}".strip()


def _short(value: float) -> str:
    return f"{value:.4g}"


def prediction_error(
    losses: np.ndarray, pred: np.ndarray, *, horizon: float, relative: bool
) -> float | None:
    """docs/mathematics.md §6 error of a measured curve against a prediction (module docstring).

    ``abs``: ``max |L - P| / L_0``; ``rel``: ``max |L - P| / E_P`` with ``E_P`` the suffix maximum
    of the prediction; both over ``k <= k*``, the first step with ``P_k <= horizon * P_0``.
    Returns None when either curve is missing or not finite on that range.
    """
    if pred is None:
        return None
    L, P = np.asarray(losses, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if L.shape != P.shape or L.size == 0 or not P[0] > 0:
        return None
    below = np.flatnonzero(P <= horizon * P[0])
    stop = int(below[0]) + 1 if below.size else P.size
    L, P = L[:stop], P[:stop]
    if not (np.isfinite(L).all() and np.isfinite(P).all()):
        return None
    diff = np.abs(L - P)
    if relative:
        env = envelope(P)
        return float(np.max(diff / env))
    return float(np.max(diff) / P[0])


def analyze_run(
    record: RunRecord, kind: str = "curves", kernels: dict | None = None
) -> RunAnalysis:
    """Fit, predict and compare one stored run (module docstring)."""
    cfg = record.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. HOM's b1 + b2 >= 1 note, given when it was run
        rule = parse(cfg["optimizer"])
    floor = FLOOR_REL.get(cfg.get("dtype", "float64"), FLOOR_REL["float64"])
    ok = record.status == "ok"
    fit = fit_rate(record.losses, floor_rel=floor) if ok else None
    fit_k = None
    if record.pred_discrete is not None and np.isfinite(record.pred_discrete).all():
        fit_k = fit_rate(record.pred_discrete, floor_rel=floor)
    predicted = None
    if rule.is_linear:
        eig = _eigenvalues(record, kernels)
        if eig is not None:
            with np.errstate(divide="ignore", invalid="ignore"):  # gamma = 0 branch unused
                predicted = predicted_rate(eig, rule)
    errors: dict[str, float | None] = {}
    for name, pred in (("", record.pred_discrete), ("_inf", record.pred_discrete_inf)):
        usable = pred if ok else None
        errors[f"abs_err{name}"] = (
            prediction_error(record.losses, usable, horizon=ABS_HORIZON, relative=False)
            if usable is not None
            else None
        )
        errors[f"rel_err{name}"] = (
            prediction_error(record.losses, usable, horizon=REL_HORIZON, relative=True)
            if usable is not None
            else None
        )
    c = run_loss_factor(cfg, kernels)
    return RunAnalysis(record, rule, kind, c, floor, fit, fit_k, predicted, **errors)


def _eigenvalues(record, kernels):
    """Eigenvalues of the run's effective kernel: ``c H(0)`` extremes, else ``c H^inf``."""
    lo, hi = record.lambda_min_k, record.lambda_max_k
    if lo is not None and hi is not None and lo > 0 and math.isfinite(hi):
        return np.array([lo, hi])
    if kernels:
        from ..experiments.runs import data_key

        k = kernels.get(data_key(record.config))
        if k is not None and np.all(k.eigenvalues > 0):
            return run_loss_factor(record.config, kernels) * np.asarray(k.eigenvalues)
    return None


def experiment_info(meta: dict) -> dict[str, dict]:
    """Experiment id -> its normalised config table (``kind``, ``title``, ...) from the meta."""
    try:
        config = json.loads(meta.get("config", "{}"))
    except json.JSONDecodeError:
        return {}
    return {e["id"]: e for e in config.get("experiments", []) if "id" in e}


# --------------------------------------------------------------------------------------------
# summary.json


def _num(value):
    """A float rounded to FLOAT_DIGITS significant digits, None if missing or not finite."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{FLOAT_DIGITS}g}")


def _clean(obj):
    """Recursively round floats and turn tuples/arrays into lists (for a stable dump)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, int, np.floating, np.integer, bool, np.bool_)) or obj is None:
        return _num(obj)
    return str(obj)


def _run_entry(a: RunAnalysis) -> dict:
    r = a.record
    fit = {
        "kind": "diverged" if not a.ok or a.fit is None else a.fit.kind,  # None iff not ok
        "rate": a.fit.rate if a.fit else None,
        "exponent": a.fit.exponent if a.fit else None,
    }
    fk = a.fit_kernel
    fit_kernel = {"kind": fk.kind, "rate": fk.rate, "exponent": fk.exponent} if fk else None
    pred: dict[str, str | float | None] = {"kind": None, "rate": None, "exponent": None}
    if not a.rule.is_linear:  # measured curve and fitted rate only, said so plainly
        pred = {"kind": "none", "rate": None, "exponent": None, "note": NO_KERNEL_PREDICTION}
    elif a.predicted is not None:
        p = a.predicted
        pred = {"kind": p.kind, "rate": p.rate_per_step, "exponent": p.exponent}
    return {
        "id": r.id,
        "experiment": r.experiment,
        "optimizer": a.rule.name,
        "spec": a.rule.spec,
        "params": {"lr": a.rule.lr, **a.rule.params},
        "width": a.width,
        "seed": a.seed,
        "status": r.status,
        "diverged_at": r.diverged_at,
        "steps": r.steps,
        "final_loss": r.final_loss,
        "fit": fit,
        "fit_kernel": fit_kernel,
        "predicted": pred,
        "kind": a.kind,
        "prediction_error": {
            "abs": a.abs_err,
            "rel": a.rel_err,
            "abs_inf": a.abs_err_inf,
            "rel_inf": a.rel_err_inf,
        },
        "h0": r.h0,
        "lambda_min_k": r.lambda_min_k,
        "lambda_max_k": r.lambda_max_k,
    }


class _Reported(Protocol):
    """A claim or finding: what summary.json stores of it."""

    def as_dict(self) -> dict: ...


def build_summary(
    analyses: Sequence[RunAnalysis],
    claims: Iterable[_Reported],
    findings: Iterable[_Reported],
    kernels: dict,
    meta: dict,
    *,
    omitted: Sequence[dict] = (),
    note: str = "",
) -> dict:
    """The summary.json payload (docs/design.md "Out dir"): runs, claims, findings, kernel(s),
    environment (from the store's meta), config name; ``claims_omitted`` (the claims left out
    for lack of their runs, ``{"id", "needs"}`` each) and ``claims_note``, the sentence that
    says so (``claims.omitted_sentence``; "" when every claim applies)."""
    try:
        environment = json.loads(meta.get("environment", "{}"))
    except json.JSONDecodeError:
        environment = {"raw": meta.get("environment")}
    try:
        config_name = json.loads(meta.get("config", "{}")).get("name")
    except json.JSONDecodeError:
        config_name = None
    kernel_rows = {
        key: {
            "data": k.data,
            "n": k.n,
            "data_seed": k.data_seed,
            "mode": k.mode,
            "lambda_min": k.lambda_min,
            "lambda_max": k.lambda_max,
        }
        for key, k in sorted(kernels.items())
    }
    primary = _primary_kernel(kernels)
    return _clean(
        {
            "config": config_name,
            "schema_version": meta.get("schema_version"),
            "runs": [
                _run_entry(a)
                for a in sorted(analyses, key=lambda a: (a.record.experiment, a.record.id))
            ],
            "claims": [c.as_dict() for c in claims],
            "claims_omitted": [dict(o) for o in omitted],
            "claims_note": note,
            "findings": [f.as_dict() for f in findings],
            "kernel": primary,
            "kernels": kernel_rows,
            "environment": environment,
        }
    )


def _primary_kernel(kernels: dict) -> dict | None:
    """The first theory-mode kernel (H^inf of unit rows), else the first one."""
    if not kernels:
        return None
    rows = sorted(kernels.values(), key=lambda k: (k.mode != "theory", k.key))
    k = rows[0]
    return {"key": k.key, "n": k.n, "lambda_min": k.lambda_min, "lambda_max": k.lambda_max}


def summary_json(summary: dict) -> str:
    """Canonical text: sorted keys, 1-space indent, no NaN, trailing newline."""
    return json.dumps(summary, sort_keys=True, indent=1, allow_nan=False) + "\n"


def write_summary(path: str | Path, summary: dict) -> Path:
    """Write summary.json atomically (temporary file in the same folder, then rename)."""
    return atomic_write_text(path, summary_json(summary))
