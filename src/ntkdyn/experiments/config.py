"""Typed, validated sweep configs (TOML) and their expansion into runs with stable ids.

A config (docs/design.md, "ntkdyn sweep CONFIG.toml")::

    name = "quick"                      # required
    description = "..."                 # optional
    [defaults]                          # optional: any experiment key except id/optimizers/grid
    dtype = "float64"
    [[experiment]]
    id = "T-GD"                         # unique, [A-Za-z0-9_-]+
    title = "..."                       # optional; kind: free tag for the report ("curves")
    mode = "theory"                     # theory | notebook (models.TwoLayerReLU)
    data = "gaussian:d=5"               # data.load_dataset spec; n, data_seed optional
    loss = "half-sum"                   # half-sum (c = 1) | mse (c = 2/n), docs/mathematics.md 0
    widths = [64, 128]                  # non-empty, ints > 0
    seeds = [0, 1]                      # non-empty, ints >= 0 (default [0])
    steps = 2000                        # int >= 1
    dtype = "float64"                   # float32 | float64; device: auto | cpu | cuda
    optimizers = ["gd:lr=0.1", "hb:lr=0.1,beta=critical"]
    predict = true                      # store kernel predictions (default: mode == theory)
    diagnostics_every = 100             # optional
    [[experiment.grid]]                 # optional, expanded as a product (lr first)
    optimizer = "hb"
    lr = [0.1, 0.01]
    beta = [0.0, 0.6, "critical"]       # predict / diagnostics_every may be overridden here

Grids over datasets, parameterisations, sizes, steps, loss, dtype and device: any of
``data, mode, n, data_seed, loss, steps, dtype, device`` may be a list; the experiment then
expands into one experiment per combination, ids ``ID-1, ID-2, ...`` (:func:`_expand_table`).

Data-driven parameter values (strings), resolved per experiment from ``K = c H^inf`` of its
data (docs/mathematics.md 0, 4, 6), and recorded as numbers (rounded to :data:`RESOLVED_DIGITS`
significant digits, so the run id does not hang on the last bit of an eigensolver):

* ``beta = "critical"`` (hb, nesterov-sc): ``beta = 1 - 2 sqrt(lambda_min(K) lr)``, critical
  damping of the slowest mode (gamma = 2 sqrt(lambda_min(K))).
* ``b1 = "critical"`` (hom, hom-notebook): ``b1 = 1 - 2 sqrt(lambda_min(K) lr) - b2`` (docs/mathematics.md 6).
* ``lr = "hmax=X"`` / ``lr = "h0=X"``: ``lr = X / lambda_max(K)`` / ``X / lambda_min(K)``.

Every problem raises ValueError whose message names the field path in backticks (for example
`` `experiment[2].widht` ``), shows the value and says what is allowed. Run ids are the first 16
hex digits of sha256 of the run config as canonical JSON (sorted keys), so they do not depend
on key order in the file and change with any value.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..conventions import DTYPES, LOSSES, MODES, loss_factor
from ..optim.rules import Rule
from . import _checks as check
from ._optimizers import RESOLVED_DIGITS, OptimizerChoice, optimizer_choices, resolve

if TYPE_CHECKING:
    from ..data import Dataset
    from ..kernels import Spectrum

__all__ = [
    "DEVICES",
    "RESOLVED_DIGITS",
    "Config",
    "DataCache",
    "DataSpec",
    "ExperimentConfig",
    "OptimizerChoice",
    "RunSpec",
    "config_dict",
    "data_key",
    "expand_runs",
    "load_config",
    "run_id",
]  # fmt: skip

DEVICES = ("auto", "cpu", "cuda")

_TOP_KEYS = ("name", "description", "defaults", "experiment")
_EXPERIMENT_KEYS = (
    "id", "title", "kind", "mode", "data", "n", "data_seed", "loss", "widths", "seeds", "steps",
    "dtype", "device", "optimizers", "grid", "predict", "diagnostics_every",
)  # fmt: skip
_DEFAULT_KEYS = tuple(k for k in _EXPERIMENT_KEYS if k not in ("id", "optimizers", "grid"))
_ID = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------------------------
# Records.


@dataclass(frozen=True)
class DataSpec:
    """The data a run trains on: spec, rows, seed and row normalisation (from the mode)."""

    data: str
    n: int | None
    data_seed: int
    mode: str

    @property
    def normalize(self) -> bool:
        return self.mode == "theory"  # theory: unit rows (docs/mathematics.md 0); notebook: raw pixels

    @property
    def key(self) -> str:
        rows = "unit" if self.normalize else "raw"
        n = "default" if self.n is None else self.n
        return f"{self.data};n={n};data_seed={self.data_seed};rows={rows}"


@dataclass(frozen=True)
class ExperimentConfig:
    """One validated ``[[experiment]]`` table (defaults merged, grids expanded)."""

    id: str
    data: str
    widths: tuple[int, ...]
    steps: int
    optimizers: tuple[OptimizerChoice, ...]
    title: str = ""
    kind: str = "curves"
    mode: str = "theory"
    n: int | None = None
    data_seed: int = 0
    loss: str = "half-sum"
    seeds: tuple[int, ...] = (0,)
    dtype: str = "float64"
    device: str = "auto"
    predict: bool = True
    diagnostics_every: int | None = None

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(self.data, self.n, self.data_seed, self.mode)


@dataclass(frozen=True)
class Config:
    """A validated sweep config."""

    name: str
    experiments: tuple[ExperimentConfig, ...]
    description: str = ""

    def experiment(self, experiment_id: str) -> ExperimentConfig:
        for exp in self.experiments:
            if exp.id == experiment_id:
                return exp
        raise KeyError(experiment_id)


@dataclass(frozen=True, eq=False)
class RunSpec:
    """One run of a sweep: its stable ``id`` and normalised ``config`` (do not mutate)."""

    id: str
    experiment: str
    config: dict
    rule: Rule

    @property
    def width(self) -> int:
        return self.config["width"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def data_spec(self) -> DataSpec:
        c = self.config
        return DataSpec(c["data"], c["n"], c["data_seed"], c["mode"])


def run_id(run_config: Mapping) -> str:
    """First 16 hex digits of sha256 of the canonical JSON of a run config."""
    text = json.dumps(dict(run_config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_key(run_config: Mapping) -> str:
    """Key of a run's data in the store's ``kernels`` table."""
    c = run_config
    return DataSpec(c["data"], c["n"], c["data_seed"], c["mode"]).key


def config_dict(config: Config) -> dict:
    """The normalised config as plain JSON-able data (stored in the store's meta)."""
    out = {"name": config.name, "description": config.description, "experiments": []}
    for exp in config.experiments:
        row = {f.name: getattr(exp, f.name) for f in fields(exp) if f.name != "optimizers"}
        row["widths"], row["seeds"] = list(exp.widths), list(exp.seeds)
        row["optimizers"] = [
            {"spec": o.spec, "predict": o.predict, "diagnostics_every": o.diagnostics_every}
            for o in exp.optimizers
        ]
        out["experiments"].append(row)
    return out


# --------------------------------------------------------------------------------------------
# Loading.

#: Experiment keys that may also be lists: the experiment expands into their product.
GRID_KEYS = ("data", "mode", "n", "data_seed", "loss", "steps", "dtype", "device")


def load_config(source: Config | Mapping | str | os.PathLike) -> Config:
    """Validate a config given as a ``Config``, a dict, a TOML file path or TOML text."""
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        raw = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        raw = _read_toml(source)
    else:
        raise ValueError(
            f"`config` must be a path, TOML text or a dict, got {type(source).__name__}"
        )
    return _config(raw)


def _read_toml(source) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError(
                "`config` TOML needs Python >= 3.11 (tomllib) or the tomli package"
            ) from None
    text = str(source)
    if isinstance(source, os.PathLike) or os.path.isfile(text) or not ("=" in text or "\n" in text):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(
                f"`config` file {str(source)!r} cannot be read: {exc.strerror}"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"`config` is not valid TOML: {exc}") from None


def _config(raw: Mapping) -> Config:
    check.unknown_keys("", raw, _TOP_KEYS)
    if "name" not in raw:
        raise ValueError("`name` is required: a string naming the config")
    name = check.string("name", raw["name"])
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"`description` must be a string, got {description!r}")
    defaults = check.table("defaults", raw.get("defaults", {}))
    check.unknown_keys("defaults", defaults, _DEFAULT_KEYS)
    tables = raw.get("experiment")
    if not isinstance(tables, (list, tuple)) or not tables:
        raise ValueError(
            f"`experiment` must hold at least one [[experiment]] table, got {tables!r}"
        )
    experiments, seen = [], {}
    for i, table in enumerate(tables):
        where = f"experiment[{i}]"
        for t in _expand_table(where, {**defaults, **check.table(where, table)}):
            exp = _experiment(where, t)
            if exp.id in seen:
                raise ValueError(f"`{where}.id` {exp.id!r} is already used by `{seen[exp.id]}`")
            seen[exp.id] = where
            experiments.append(exp)
    return Config(name=name, experiments=tuple(experiments), description=description)


def _expand_table(where: str, table: dict) -> list[dict]:
    """One experiment table per combination of the :data:`GRID_KEYS` given as lists.

    ``data = ["gaussian:d=5", "digits"]`` with ``mode = ["theory", "notebook"]`` gives four
    experiments ``ID-1 .. ID-4`` (product order, first key slowest), each titled with the
    values it fixes; a single combination keeps the id.
    """
    axes = [(key, table[key]) for key in GRID_KEYS if isinstance(table.get(key), list)]
    if not axes:
        return [table]
    if "id" not in table:
        raise ValueError(f"`{where}.id` is required")
    base_id = check.string(f"{where}.id", table["id"])
    for key, values in axes:
        if not values:
            raise ValueError(f"`{where}.{key}` is an empty list: give at least one value")
    combos = list(itertools.product(*(values for _, values in axes)))
    tables = []
    for j, combo in enumerate(combos, 1):
        t = {**table, **dict(zip((key for key, _ in axes), combo))}
        if len(combos) > 1:
            varied = ", ".join(f"{key}={value}" for (key, _), value in zip(axes, combo))
            t["id"] = f"{base_id}-{j}"
            t["title"] = f"{table.get('title', '')} ({varied})".strip()
        tables.append(t)
    return tables


def _experiment(where: str, t: Mapping) -> ExperimentConfig:
    check.unknown_keys(where, t, _EXPERIMENT_KEYS)
    for key in ("id", "data", "widths", "steps"):
        if key not in t:
            raise ValueError(f"`{where}.{key}` is required")
    exp_id = check.string(f"{where}.id", t["id"])
    if not _ID.match(exp_id):
        raise ValueError(f"`{where}.id` must match [A-Za-z0-9_-]+, got {exp_id!r}")
    mode = check.string(f"{where}.mode", t.get("mode", "theory"), allowed=MODES)
    n = t.get("n")
    n = None if n is None else check.integer(f"{where}.n", n, minimum=1)
    data_seed = check.integer(f"{where}.data_seed", t.get("data_seed", 0), minimum=0)
    data = check.data_spec(f"{where}.data", t["data"], n, data_seed, mode == "theory")
    every = t.get("diagnostics_every")
    every = None if every is None else check.integer(f"{where}.diagnostics_every", every, minimum=1)
    predict = check.boolean(f"{where}.predict", t.get("predict", mode == "theory"))
    title, kind = t.get("title", ""), t.get("kind", "curves")
    if not isinstance(title, str):
        raise ValueError(f"`{where}.title` must be a string, got {title!r}")
    optimizers = optimizer_choices(where, t, predict, every)
    return ExperimentConfig(
        id=exp_id, data=data, widths=check.int_list(f"{where}.widths", t["widths"], minimum=1),
        steps=check.integer(f"{where}.steps", t["steps"], minimum=1), optimizers=optimizers,
        title=title,
        kind=check.string(f"{where}.kind", kind), mode=mode, n=n, data_seed=data_seed,
        loss=check.string(f"{where}.loss", t.get("loss", "half-sum"), allowed=LOSSES),
        seeds=check.int_list(f"{where}.seeds", t.get("seeds", [0]), minimum=0),
        dtype=check.string(f"{where}.dtype", t.get("dtype", "float64"), allowed=DTYPES),
        device=check.string(f"{where}.device", t.get("device", "auto"), allowed=DEVICES),
        predict=predict, diagnostics_every=every,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Expansion into runs.


class DataCache:
    """Loaded datasets and ``H^inf`` spectra (with eigenvectors), one per data key."""

    def __init__(self) -> None:
        self._spectra: dict[str, object] = {}

    def dataset(self, spec: DataSpec) -> Dataset:
        return check.load_data(spec.data, spec.n, spec.data_seed, spec.normalize)

    def spectrum(self, spec: DataSpec) -> Spectrum:
        """Spectrum of ``H^inf`` (first layer, docs/mathematics.md §1.2) of the data; no loss factor."""
        if spec.key not in self._spectra:
            from ..kernels import spectrum, two_layer_gram

            self._spectra[spec.key] = spectrum(
                two_layer_gram(self.dataset(spec).X, layer="first"), vectors=True
            )
        return self._spectra[spec.key]

    def loss_factor(self, spec: DataSpec, loss: str) -> float:
        """``c`` of ``loss = c/2 sum e^2`` on the data (``ntkdyn.conventions.loss_factor``)."""
        return loss_factor(loss, self.dataset(spec).n)


def choice_rule(choice: OptimizerChoice, exp: ExperimentConfig, cache: DataCache) -> Rule:
    """The rule of an optimizer entry, data-driven values resolved on ``c H^inf`` of the
    experiment's data (``config`` module docstring)."""
    if not choice.data_driven:
        return resolve(choice, 0.0, 0.0)
    c = cache.loss_factor(exp.data_spec, exp.loss)
    K = cache.spectrum(exp.data_spec).scaled(c)
    return resolve(choice, K.lambda_min, K.lambda_max)


def expand_runs(
    config: Config | Mapping | str | os.PathLike, *, cache: DataCache | None = None
) -> list[RunSpec]:
    """All runs of a config, in order experiment > optimizer > width > seed.

    The run config holds ``experiment, mode, data, n, data_seed, loss, width, seed, optimizer``
    (the canonical ``rule.spec``, data-driven values resolved), ``steps, dtype, device`` (as
    requested: ``auto`` stays ``auto``, so ids agree across machines), ``predict`` and
    ``diagnostics_every``. Raises ValueError for a data-driven value out of range or a run
    listed twice.
    """
    config = load_config(config)
    cache = cache if cache is not None else DataCache()
    runs: list[RunSpec] = []
    seen: dict[str, str] = {}
    for exp in config.experiments:
        for choice in exp.optimizers:
            rule = choice_rule(choice, exp, cache)
            for width, seed in itertools.product(exp.widths, exp.seeds):
                cfg = {
                    "experiment": exp.id, "mode": exp.mode, "data": exp.data, "n": exp.n,
                    "data_seed": exp.data_seed, "loss": exp.loss, "width": width, "seed": seed,
                    "optimizer": rule.spec, "steps": exp.steps, "dtype": exp.dtype,
                    "device": exp.device, "predict": choice.predict,
                    "diagnostics_every": choice.diagnostics_every,
                }  # fmt: skip
                rid = run_id(cfg)
                if rid in seen:
                    raise ValueError(
                        f"`{choice.where}` repeats the run {rule.spec} (width {width}, seed "
                        f"{seed}) already given by `{seen[rid]}`"
                    )
                seen[rid] = choice.where
                runs.append(RunSpec(rid, exp.id, cfg, rule))
    return runs
