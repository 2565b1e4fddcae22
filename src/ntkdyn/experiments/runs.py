"""The runs of a validated config: stable ids, the data each trains on, the expansion.

Run ids are the first 16 hex digits of sha256 of the run config as canonical JSON (sorted
keys), so they do not depend on key order in the file and change with any value. Data-driven
optimizer values are resolved here, on ``c H^inf`` of each experiment's data (``config``
module docstring).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..conventions import loss_factor
from ..optim.rules import Rule
from . import _checks as check
from ._optimizers import OptimizerChoice, resolve
from .config import Config, ExperimentConfig, RunData, load_config

if TYPE_CHECKING:
    from ..data import Dataset
    from ..kernels import Spectrum

__all__ = [
    "DataCache",
    "RunConfigView",
    "RunSpec",
    "choice_rule",
    "data_key",
    "expand_runs",
    "run_id",
]


# --------------------------------------------------------------------------------------------
# Run records and ids.


class RunConfigView:
    """What a run's normalised ``config`` says, read the same way by every record holding one
    (:class:`RunSpec` before training, ``store.RunRecord`` after)."""

    config: dict

    @property
    def width(self) -> int:
        return self.config["width"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def data_spec(self) -> RunData:
        return RunData.of_run(self.config)


@dataclass(frozen=True, eq=False)
class RunSpec(RunConfigView):
    """One run of a sweep: its stable ``id`` and normalised ``config`` (do not mutate)."""

    id: str
    experiment: str
    config: dict
    rule: Rule


def run_id(run_config: Mapping) -> str:
    """First 16 hex digits of sha256 of the canonical JSON of a run config."""
    text = json.dumps(dict(run_config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_key(run_config: Mapping) -> str:
    """Key of a run's data in the store's ``kernels`` table."""
    return RunData.of_run(run_config).key


# --------------------------------------------------------------------------------------------
# Expansion into runs.


class DataCache:
    """Loaded datasets and ``H^inf`` spectra (with eigenvectors), one per data key."""

    def __init__(self) -> None:
        self._spectra: dict[str, Spectrum] = {}

    def dataset(self, spec: RunData) -> Dataset:
        return check.load_data(spec.data, spec.n, spec.data_seed, spec.normalize)

    def spectrum(self, spec: RunData) -> Spectrum:
        """Spectrum of ``H^inf`` (first layer, docs/mathematics.md §1.2) of the data; no loss factor."""
        if spec.key not in self._spectra:
            from ..kernels import spectrum, two_layer_gram

            self._spectra[spec.key] = spectrum(
                two_layer_gram(self.dataset(spec).X, layer="first"), vectors=True
            )
        return self._spectra[spec.key]

    def loss_factor(self, spec: RunData, loss: str) -> float:
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
                    "experiment": exp.id,
                    "mode": exp.mode,
                    "data": exp.data,
                    "n": exp.n,
                    "data_seed": exp.data_seed,
                    "loss": exp.loss,
                    "width": width,
                    "seed": seed,
                    "optimizer": rule.spec,
                    "steps": exp.steps,
                    "dtype": exp.dtype,
                    "device": exp.device,
                    "predict": choice.predict,
                    "diagnostics_every": choice.diagnostics_every,
                }
                rid = run_id(cfg)
                if rid in seen:
                    raise ValueError(
                        f"`{choice.where}` repeats the run {rule.spec} (width {width}, seed "
                        f"{seed}) already given by `{seen[rid]}`"
                    )
                seen[rid] = choice.where
                runs.append(RunSpec(rid, exp.id, cfg, rule))
    return runs
