"""The one table of stored runs: the rows that ``ntkdyn export`` writes and that
``open_results(DIR).runs`` holds as a DataFrame (docs of the columns: ``results``).

Plain Python only (no pandas): a row is a dict of str, int, float, bool or None (missing);
the CSV writer and the DataFrame are both built from these rows, so they cannot disagree.
The curves table is built per run as column arrays (:func:`curve_arrays`), for speed.
Each column is declared once with its kind, from which the pandas dtype follows.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING

import numpy as np

from ..optim import RULES, parse
from ..rates import fit_rate
from ..verdicts.tolerances import FLOOR_REL

if TYPE_CHECKING:
    from .records import RunRecord

__all__ = [
    "CURVES_TABLE",
    "DROPS",
    "HYPERPARAMETERS",
    "PANDAS_DTYPES",
    "RUNS_TABLE",
    "curve_arrays",
    "first_step_below",
    "run_row",
    "run_rows",
]

#: Pandas dtype of each kind of column: nullable integers and flags (``<NA>`` where missing),
#: float64 (NaN where missing), nullable strings; the same on pandas 1.5 to 3.
PANDAS_DTYPES = {"int": "Int64", "float": "float64", "str": "string", "bool": "boolean"}


def _hyperparameters() -> tuple[str, ...]:
    """``lr``, then every other parameter of the registered rules, in registry order (a rule
    added to ``optim.RULES`` brings its columns; none is recognised by name)."""
    names = ["lr"]
    for cls in RULES.values():
        names += [f.name for f in fields(cls) if f.name not in names]
    return tuple(names)


#: One column per optimizer hyperparameter: ``lr, beta, r, b1, b2, beta1, beta2, eps, alpha,
#: momentum``.
HYPERPARAMETERS = _hyperparameters()
#: The relative drops ``L_k <= L_0 / drop`` whose first step is a column:
#: ``steps_to_1e3_drop`` and ``steps_to_1e6_drop``.
DROPS = {"steps_to_1e3_drop": 1e3, "steps_to_1e6_drop": 1e6}

_IDENTITY = (("run_id", "str"), ("experiment", "str"), ("optimizer", "str"), ("family", "str"))
_CONFIG = (
    ("width", "int"),
    ("seed", "int"),
    ("mode", "str"),
    ("depth", "int"),  # hidden layers of a deep run; empty for the two-layer network
    ("data", "str"),
    ("n", "int"),
    ("data_seed", "int"),
    ("loss", "str"),
    ("dtype", "str"),
    ("device", "str"),
    ("steps", "int"),
    ("predict", "bool"),
    ("diagnostics_every", "int"),
)
_OUTCOME = (
    ("status", "str"),
    ("diverged_at", "int"),
    ("initial_loss", "float"),
    ("final_loss", "float"),
    ("rate_kind", "str"),
    ("rate_factor", "float"),
    ("rate_exponent", "float"),
    *((name, "int") for name in DROPS),
    ("lambda_min_k", "float"),
    ("lambda_max_k", "float"),
    ("h0", "float"),
    ("h_max", "float"),
    ("elapsed", "float"),
    ("finished", "str"),
    ("spec", "str"),
)
#: Every column of the runs table, in order, with its kind (a key of PANDAS_DTYPES).
RUNS_TABLE: dict[str, str] = dict(
    (*_IDENTITY, *((p, "float") for p in HYPERPARAMETERS), *_CONFIG, *_OUTCOME)
)
assert len(RUNS_TABLE) == len(_IDENTITY) + len(HYPERPARAMETERS) + len(_CONFIG) + len(_OUTCOME), (
    "a rule parameter has the name of another column"
)
#: The curves table (long form, one row per run and step), in order, with its kinds.
CURVES_TABLE: dict[str, str] = {
    "step": "int",
    "run_id": "str",
    "loss": "float",
    "pred_discrete": "float",
    "pred_discrete_inf": "float",
    "pred_ode": "float",
}
_PREDICTIONS = ("pred_discrete", "pred_discrete_inf", "pred_ode")


def first_step_below(losses: np.ndarray, drop: float) -> int | None:
    """The first step ``k`` with ``losses[k] <= losses[0] / drop``; None if there is none or
    ``losses[0]`` is not a finite positive number (non-finite losses never count)."""
    L = np.asarray(losses, dtype=np.float64)
    if L.size == 0 or not (np.isfinite(L[0]) and L[0] > 0.0):
        return None
    hits = np.flatnonzero(L <= L[0] / drop)  # NaN compares False
    return int(hits[0]) if hits.size else None


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def run_row(record: RunRecord) -> dict[str, object]:
    """The runs-table row of one stored run (``results`` module docstring)."""
    cfg: Mapping[str, object] = record.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. HOM's b1 + b2 >= 1 note, given when it was run
        rule = parse(str(cfg["optimizer"]))
    params = {"lr": rule.lr, **rule.params}
    losses = np.asarray(record.losses, dtype=np.float64)
    initial = float(losses[0]) if losses.size else None
    kind, factor, exponent = "diverged", None, None
    if record.status == "ok":
        # the report's fit (summary.json `fit`): per step, the rounding floor of the dtype
        floor = FLOOR_REL.get(str(cfg.get("dtype", "float64")), FLOOR_REL["float64"])
        fit = fit_rate(losses, floor_rel=floor)
        kind, factor, exponent = fit.kind, _number(fit.factor), _number(fit.exponent)
    lam_max = record.lambda_max_k
    h_max = rule.lr * lam_max if rule.is_linear and lam_max is not None else None
    row: dict[str, object] = {
        "run_id": record.id,
        "experiment": record.experiment,
        "optimizer": rule.name,
        "family": rule.family.value,
        **{p: _number(params.get(p)) for p in HYPERPARAMETERS},
        **{name: cfg.get(name) for name, _ in _CONFIG},
        "status": record.status,
        "diverged_at": record.diverged_at,
        "initial_loss": initial,
        "final_loss": record.final_loss,
        "rate_kind": kind,
        "rate_factor": factor,
        "rate_exponent": exponent,
        **{name: first_step_below(losses, drop) for name, drop in DROPS.items()},
        "lambda_min_k": record.lambda_min_k,
        "lambda_max_k": lam_max,
        "h0": record.h0,
        "h_max": h_max,
        "elapsed": record.elapsed,
        "finished": record.finished,
        "spec": rule.spec,
    }
    return row


def run_rows(records: Sequence[RunRecord]) -> list[dict[str, object]]:
    """The runs table: one row per run, in the order given."""
    return [run_row(r) for r in records]


def curve_arrays(record: RunRecord) -> dict[str, np.ndarray | None]:
    """One run's part of the curves table, column by column (``run_id`` excepted; a
    prediction not stored is None): the CSV, Parquet and DataFrame views all start here."""
    out: dict[str, np.ndarray | None] = {
        "step": np.arange(record.losses.size, dtype=np.int64),
        "loss": np.asarray(record.losses, dtype=np.float64),
    }
    for name in _PREDICTIONS:
        pred = getattr(record, name)
        out[name] = None if pred is None else np.asarray(pred, dtype=np.float64)
    return out
