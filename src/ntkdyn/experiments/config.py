"""Typed, validated sweep configs (TOML); their expansion into runs is ``runs.py``.

The schema, the grids (any of ``data, mode, n, data_seed, loss, steps, dtype, device`` may
be a list: one experiment per combination, ids ``ID-1, ID-2, ...``) and the data-driven values
(``beta = "critical"``, ``lr = "hmax=X"``, resolved from ``K = c H^inf`` and rounded to
``_optimizers.RESOLVED_DIGITS`` significant digits so that run ids do not hang on an eigensolver's last
bit) are documented in docs/guide.md, "Config files for sweeps". ``depth`` (an int >= 1 or a
list, like ``widths``; theory mode only) trains ``models.DeepReLU`` with that many hidden
layers, data-driven values then resolved on its analytic NTK ``kernels.deep_relu_ntk``.

Every problem raises ValueError whose message names the field path in backticks (for example
`` `experiment[2].widht` ``), shows the value and says what is allowed.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from .._validate import integer
from ..conventions import DTYPES, MODES, SQUARED_LOSSES
from . import _checks as check
from ._optimizers import RESOLVED_DIGITS, OptimizerChoice, optimizer_choices

__all__ = [
    "DEVICES",
    "RESOLVED_DIGITS",
    "Config",
    "RunData",
    "ExperimentConfig",
    "OptimizerChoice",
    "config_dict",
    "load_config",
]

DEVICES = ("auto", "cpu", "cuda")

_TOP_KEYS = ("name", "description", "defaults", "experiment")
_EXPERIMENT_KEYS = (
    "id",
    "title",
    "kind",
    "mode",
    "data",
    "n",
    "data_seed",
    "loss",
    "widths",
    "depth",
    "seeds",
    "steps",
    "dtype",
    "device",
    "optimizers",
    "grid",
    "predict",
    "diagnostics_every",
)
_DEFAULT_KEYS = tuple(k for k in _EXPERIMENT_KEYS if k not in ("id", "optimizers", "grid"))
_ID = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------------------------
# Records.


@dataclass(frozen=True)
class RunData:
    """The data a run trains on: spec, rows, seed and row normalisation (from the mode)."""

    data: str
    n: int | None
    data_seed: int
    mode: str

    @classmethod
    def of_run(cls, run_config: Mapping) -> RunData:
        """The data of a normalised run config (``runs.RunSpec.config``)."""
        c = run_config
        return cls(c["data"], c["n"], c["data_seed"], c["mode"])

    @property
    def normalize(self) -> bool:
        return (
            self.mode == "theory"
        )  # theory: unit rows (docs/mathematics.md §0); notebook: raw pixels

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
    #: Hidden layers of ``models.DeepReLU`` per run (theory mode only); None: the two-layer
    #: network, and the key is left out of run configs so that their ids do not change.
    depth: tuple[int, ...] | None = None

    @property
    def data_spec(self) -> RunData:
        return RunData(self.data, self.n, self.data_seed, self.mode)


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


def config_dict(config: Config) -> dict:
    """The normalised config as plain JSON-able data (stored in the store's meta)."""
    experiments: list[dict] = []
    for exp in config.experiments:
        row = {f.name: getattr(exp, f.name) for f in fields(exp) if f.name != "optimizers"}
        row["widths"], row["seeds"] = list(exp.widths), list(exp.seeds)
        if exp.depth is None:  # absent as before the key existed: stored metas compare equal
            del row["depth"]
        else:
            row["depth"] = list(exp.depth)
        row["optimizers"] = [
            {"spec": o.spec, "predict": o.predict, "diagnostics_every": o.diagnostics_every}
            for o in exp.optimizers
        ]
        experiments.append(row)
    return {"name": config.name, "description": config.description, "experiments": experiments}


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
    if sys.version_info >= (3, 11):
        import tomllib
    else:
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
        except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition
            raise ValueError(
                f"`config` file {str(source)!r} is not UTF-8 text (byte "
                f"{exc.object[exc.start]:#04x} at offset {exc.start})"
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
    experiments: list[ExperimentConfig] = []
    seen: dict[str, str] = {}  # experiment id -> where it was defined
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
        t = {**table, **dict(zip((key for key, _ in axes), combo, strict=True))}
        if len(combos) > 1:
            varied = ", ".join(
                f"{key}={value}" for (key, _), value in zip(axes, combo, strict=True)
            )
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
    n = None if n is None else integer(f"{where}.n", n, minimum=1)
    data_seed = integer(f"{where}.data_seed", t.get("data_seed", 0), minimum=0)
    data = check.data_spec(f"{where}.data", t["data"], n, data_seed, mode == "theory")
    every = t.get("diagnostics_every")
    every = None if every is None else integer(f"{where}.diagnostics_every", every, minimum=1)
    predict = check.boolean(f"{where}.predict", t.get("predict", mode == "theory"))
    title, kind = t.get("title", ""), t.get("kind", "curves")
    if not isinstance(title, str):
        raise ValueError(f"`{where}.title` must be a string, got {title!r}")
    optimizers = optimizer_choices(where, t, predict, every)
    depth = check.depths(f"{where}.depth", t.get("depth"), mode)
    return ExperimentConfig(
        id=exp_id,
        data=data,
        widths=check.int_list(f"{where}.widths", t["widths"], minimum=1),
        steps=integer(f"{where}.steps", t["steps"], minimum=1),
        optimizers=optimizers,
        title=title,
        kind=check.string(f"{where}.kind", kind),
        mode=mode,
        n=n,
        data_seed=data_seed,
        loss=check.string(f"{where}.loss", t.get("loss", "half-sum"), allowed=SQUARED_LOSSES),
        seeds=check.int_list(f"{where}.seeds", t.get("seeds", [0]), minimum=0),
        dtype=check.string(f"{where}.dtype", t.get("dtype", "float64"), allowed=DTYPES),
        device=check.string(f"{where}.device", t.get("device", "auto"), allowed=DEVICES),
        predict=predict,
        diagnostics_every=every,
        depth=depth,
    )
