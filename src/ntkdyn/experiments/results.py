"""Stored results as data: ``open_results(DIR)`` gives the runs of a results store as one
row per run, one column per hyperparameter, and the curves in long form.

Nothing has to be parsed: the optimizer spec is split into its family and parameters (through
``ntkdyn.optim.parse``), the config into its fields, and the outcome into numbers.
``ntkdyn export DIR`` writes the same tables (``runs.csv``, ``curves.csv``) from the same rows,
without pandas; :func:`read_results_csv` reads them back with the same dtypes.

Columns of :attr:`Results.runs` (and of ``runs.csv``), in order:

* ``run_id``, ``experiment``: the stable run id and the id of its ``[[experiment]]``.
* ``optimizer``: the rule's name as written in a spec (``gd``, ``hb``, ``nesterov``,
  ``nesterov-torch``, ``nesterov-sc``, ``hom``, ``hom-notebook``, ``adam``); ``family``: its
  :class:`ntkdyn.optim.Family` value (``heavy-ball``, ``nesterov-scheduled``, ...).
* ``lr``, ``beta``, ``r``, ``b1``, ``b2``, ``beta1``, ``beta2``, ``eps``: the rule's
  hyperparameters as run (data-driven values such as ``beta = "critical"`` resolved); NaN
  where the rule has no such parameter. One column per parameter of every registered rule.
* ``width``, ``seed``, ``mode``, ``data``, ``n``, ``data_seed``, ``loss``, ``dtype``,
  ``device``, ``steps``, ``predict``, ``diagnostics_every``: the run config (``n`` missing
  where the config took every row of the data).
* ``status`` (``ok`` / ``diverged``), ``diverged_at`` (the step, or missing).
* ``initial_loss`` (``L_0``) and ``final_loss`` (``L_steps``; NaN for a diverged run), in the
  units of the loss minimised.
* ``rate_kind``: the classifier :func:`ntkdyn.rates.fit_rate` on the measured curve per step
  (``t_k = k``) with the rounding floor of the run's dtype, as in the report's ``fit``:
  ``linear``, ``sublinear`` or ``undetermined``, and ``diverged`` for a diverged run (not
  fitted). ``rate_factor``: for ``linear``, the fitted per-step factor ``q`` in
  ``L_k ~ q^k``; ``rate_exponent``: for ``sublinear``, ``p`` in ``L_k ~ k^-p``; NaN otherwise.
  (Two columns rather than one, so that a column never mixes a factor with an exponent.)
* ``steps_to_1e3_drop``, ``steps_to_1e6_drop``: the first step ``k`` with
  ``L_k <= L_0 / 1e3`` (resp. ``L_0 / 1e6``), missing if the curve never gets there (the
  steps a diverged run made before diverging count).
* ``lambda_min_k``, ``lambda_max_k``: extreme eigenvalues of ``K = c H(0)`` of the run's own
  initial network; ``h0 = lr lambda_min_k`` as stored, ``h_max = lr lambda_max_k``: NaN for
  a nonlinear rule (Adam) or where the store holds no ``H(0)`` extremes. They are taken on
  ``H(0)``, not on the ``H^inf`` a config's ``lr = "hmax=X"`` refers to, so ``h_max`` differs
  from such an ``X`` by the kernel's fluctuation at initialisation.
* ``elapsed`` (seconds, the run's share of its batch), ``finished`` (UTC ISO time).
* ``spec``: the canonical optimizer spec, for provenance only (everything in it has a column).

Dtypes (:data:`RUN_DTYPES`): integers and flags are pandas' nullable ``Int64`` and
``boolean`` (``<NA>`` where missing), reals ``float64`` (NaN where missing), text
``string``. :attr:`Results.curves` has ``step, run_id, loss, pred_discrete,
pred_discrete_inf, pred_ode`` (:data:`CURVE_DTYPES`; a prediction not stored is NaN).

Reading is read-only: the store is opened as ``ntkdyn report`` and ``ntkdyn export`` open it
(a read-only file or directory is read as such; SQLite's ``quick_check`` first), the sweep
lock is never taken, and nothing in the store is changed. Damage policy: a store whose rows
fail their checksum is refused as a whole, never silently thinned: ``StoreDamaged`` (a
ValueError, ``ntkdyn.experiments.store``) names the damaged runs, and ``ntkdyn doctor DIR``
salvages the intact ones into ``DIR/salvaged``, which opens normally.

pandas is optional (``pip install 'ntkdyn[results]'``): :func:`open_results`,
:attr:`Results.rows` and :meth:`Results.to_csv` work without it; :attr:`Results.runs`,
:attr:`Results.curves` and :func:`read_results_csv` raise an ImportError saying what to
install.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._export import export_runs
from ._table import CURVES_TABLE, PANDAS_DTYPES, RUNS_TABLE, curve_arrays, run_rows
from .store import STORE_NAME, Store, StoreError

if TYPE_CHECKING:
    import pandas as pd

    from .records import RunRecord

__all__ = ["CURVE_DTYPES", "RUN_DTYPES", "Results", "open_results", "read_results_csv"]

#: Column -> pandas dtype of :attr:`Results.runs` (module docstring).
RUN_DTYPES: dict[str, str] = {c: PANDAS_DTYPES[kind] for c, kind in RUNS_TABLE.items()}
#: Column -> pandas dtype of :attr:`Results.curves`.
CURVE_DTYPES: dict[str, str] = {c: PANDAS_DTYPES[kind] for c, kind in CURVES_TABLE.items()}

#: What to install for the DataFrame views.
INSTALL_HINT = "pip install 'ntkdyn[results]'"


def _pandas(what: str) -> Any:
    """The pandas module, or an ImportError saying what needs it and what to install."""
    try:
        import pandas
    except ImportError:
        raise ImportError(f"{what} needs pandas, which is not installed: {INSTALL_HINT}") from None
    return pandas


def _frame(pandas: Any, columns: Mapping[str, str], data: Mapping[str, Any]) -> pd.DataFrame:
    """A DataFrame with ``columns`` in order, each with its declared dtype."""
    return pandas.DataFrame(
        {c: pandas.Series(data[c], dtype=PANDAS_DTYPES[kind]) for c, kind in columns.items()}
    )


def _filled(values: np.ndarray | None, size: int) -> np.ndarray:
    """``values``, or NaN for a prediction the store does not hold."""
    return np.full(size, np.nan) if values is None else values


class Results:
    """The runs of one results store, read once (module docstring).

    Attributes:
        path: the store file (``DIR/results.sqlite``).
        records: the stored runs (``RunRecord``), ordered by experiment, then run id.
        meta: the store's meta entries as strings (``config`` and ``environment`` hold JSON).
    """

    def __init__(self, path: Path, records: Sequence[RunRecord], meta: Mapping[str, str]) -> None:
        self.path = path
        self.records = tuple(records)
        self.meta = dict(meta)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r}, {len(self)} runs)"

    @property
    def config(self) -> dict[str, Any]:
        """The normalised config of the sweep that wrote the store ({} if none is stored)."""
        return json.loads(self.meta["config"]) if "config" in self.meta else {}

    @cached_property
    def rows(self) -> list[dict[str, object]]:
        """The runs table as plain rows (dicts keyed by :data:`RUN_DTYPES`' columns, None
        where missing); no pandas needed. Computed once: do not mutate."""
        return run_rows(self.records)

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run, one column per hyperparameter (module docstring)."""
        pandas = _pandas("`Results.runs`")
        return _frame(pandas, RUNS_TABLE, {c: [row[c] for row in self.rows] for c in RUNS_TABLE})

    @cached_property
    def curves(self) -> pd.DataFrame:
        """Long form: one row per run and step, with the measured loss and the predictions."""
        pandas = _pandas("`Results.curves`")
        parts = [curve_arrays(r) for r in self.records]
        sizes = [r.losses.size for r in self.records]
        ids = np.array([r.id for r in self.records], dtype=object)
        data: dict[str, Any] = {"run_id": np.repeat(ids, sizes)}
        for name in CURVES_TABLE:
            if name != "run_id":
                pieces = [_filled(p[name], size) for p, size in zip(parts, sizes, strict=True)]
                data[name] = np.concatenate(pieces) if pieces else np.array([], np.float64)
        return _frame(pandas, CURVES_TABLE, data)

    def to_csv(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``runs.csv`` and ``curves.csv`` into ``directory`` (what ``ntkdyn export``
        writes: the columns of :attr:`runs` and :attr:`curves`); returns the paths."""
        return export_runs(self.records, Path(directory), "csv", rows=self.rows)


def open_results(path: str | os.PathLike[str]) -> Results:
    """Read a results store (a directory holding ``results.sqlite``, or the file itself).

    Args:
        path: what ``ntkdyn sweep CONFIG --out DIR`` or ``ntkdyn reproduce --out DIR`` wrote.

    Returns:
        The :class:`Results`: ``.runs`` and ``.curves`` as pandas DataFrames, ``.records``.

    Raises:
        ValueError: naming ``path`` when it does not exist or is not a readable results
            store; ``StoreDamaged`` (a ValueError) naming the runs whose rows fail their
            checksum (the store is refused as a whole; ``ntkdyn doctor`` salvages the rest).

    Examples:
        >>> from ntkdyn import open_results  # doctest: +SKIP
        >>> res = open_results("ntkdyn-out")  # doctest: +SKIP
        >>> res.runs.groupby(["optimizer", "width"]).rate_factor.median()  # doctest: +SKIP
    """
    given = Path(path)
    if not given.exists():
        raise ValueError(f"`path` {str(given)!r} does not exist")
    file = given / STORE_NAME if given.is_dir() else given
    if not file.is_file():
        raise ValueError(
            f"`path` {str(given)!r} holds no {STORE_NAME}: not a results directory "
            "(`ntkdyn sweep CONFIG --out DIR` writes one)"
        )
    try:
        store = Store(file, readonly=True, check=True)
    except StoreError as exc:
        raise StoreError(f"`path` {str(given)!r} is not a readable results store: {exc}") from None
    with store:
        # damage raises StoreDamaged here, after every row was read: nothing is dropped
        records = store.load_runs()
        meta = store.meta()
    return Results(file, records, meta)


def read_results_csv(directory: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs, curves)`` read back from ``runs.csv`` and ``curves.csv`` in ``directory``
    (an export), with the dtypes of :attr:`Results.runs` and :attr:`Results.curves`; floats
    round-trip exactly. ValueError naming ``directory`` if a file is missing or has other
    columns."""
    pandas = _pandas("`read_results_csv`")
    # pandas 3 parses floats exactly by default (and deprecates the option); before, ask for it
    exact = {} if int(pandas.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    frames = []
    for name, dtypes in (("runs.csv", RUN_DTYPES), ("curves.csv", CURVE_DTYPES)):
        file = Path(directory) / name
        if not file.is_file():
            raise ValueError(f"`directory` {str(directory)!r} holds no {name}")
        frame = pandas.read_csv(
            file,
            dtype=dtypes,
            # only an empty cell is missing (a data spec "NA" stays text), and a float's "nan"
            keep_default_na=False,
            na_values={c: ["", "nan"] if d == "float64" else [""] for c, d in dtypes.items()},
            **exact,
        )
        if list(frame.columns) != list(dtypes):
            raise ValueError(
                f"`directory` {str(directory)!r}: {name} has columns {list(frame.columns)}, "
                f"not those of an ntkdyn export ({list(dtypes)})"
            )
        frames.append(frame)
    return frames[0], frames[1]
