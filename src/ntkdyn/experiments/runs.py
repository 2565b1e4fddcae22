"""The runs of a validated config: stable ids, the data each trains on, the expansion, the
engine batches they train in, the size check and the provenance of the data.

Run ids are the first 16 hex digits of sha256 of the run config as canonical JSON (sorted
keys), so they do not depend on key order in the file and change with any value. Data-driven
optimizer values are resolved here, on ``c H^inf`` of each experiment's data (``config``
module docstring).

Ids hash the config, not the data: a ``csv:`` or ``mnist:`` file edited between a sweep and
its resume keeps the ids. :func:`data_hashes` gives the content hash of each data key (the
sweep stores them in its meta) and :func:`check_data_hashes` refuses a change. A config too
big to start by accident is refused by :func:`check_size` unless confirmed (``--yes``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._budget import NETWORK_WORK_ARRAYS, check_fits, network_bytes
from ..conventions import itemsize, loss_factor
from ..optim.rules import Rule
from . import _checks as check
from ._optimizers import OptimizerChoice, resolve
from .config import Config, ExperimentConfig, RunData, load_config

if TYPE_CHECKING:
    from ..data import Dataset
    from ..kernels import Spectrum

__all__ = [
    "CUDA_BATCH_ELEMENTS",
    "MAX_BATCH_ELEMENTS",
    "MAX_RUNS",
    "MAX_WORK",
    "DataCache",
    "RunConfigView",
    "RunSpec",
    "check_networks_fit",
    "check_size",
    "choice_rule",
    "data_key",
    "expand_runs",
    "network_elements",
    "plan_batches",
    "run_id",
    "sweep_size",
]

#: Runs above which a sweep must be confirmed (``confirm_large`` / ``--yes``): the paper's
#: presets have 769, so more is most likely a grid typo (a 1,000,000-run config once started).
MAX_RUNS = 10_000
#: Estimated work, sum of width x steps over the runs, above which a sweep must be confirmed:
#: about 13 times the paper preset's 3.8e9 (hours on a CPU, not minutes).
MAX_WORK = 5 * 10**10

#: Bound on total width x max(n, d) of one engine batch on a CPU (float64: 256 MiB per tensor).
MAX_BATCH_ELEMENTS = 1 << 25
#: The same on a GPU (2 GiB per tensor): the paper's E2 width sweep (total width 195,000,
#: d = 784) is one batch, as in docs/design.md's performance anchor.
CUDA_BATCH_ELEMENTS = 1 << 28

_BATCH_KEYS = (
    "mode",
    "data",
    "n",
    "data_seed",
    "loss",
    "steps",
    "dtype",
    "device",
    "diagnostics_every",
    "depth",
)


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

    @property
    def depth(self) -> int | None:
        """Hidden layers of the run's ``DeepReLU``; None for the two-layer network."""
        return self.config.get("depth")


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
    """Loaded datasets and ``H^inf`` spectra (with eigenvectors), one per data key, and the
    analytic deep NTK spectra, one per (data key, depth)."""

    def __init__(self) -> None:
        self._spectra: dict[str, Spectrum] = {}
        self._deep: dict[tuple[str, int], Spectrum] = {}
        self._files: dict[str, Dataset] = {}
        self._given: dict[str, Dataset] = {}

    def preload(
        self,
        spec: RunData,
        dataset: Dataset,
        spectrum: Spectrum | None,
        deep: Mapping[int, Spectrum] | None = None,
    ) -> None:
        """Use ``dataset`` (and ``spectrum``, and the deep spectra by depth) for ``spec``: what
        a Dask worker gets from the driver, so that it trains on the driver's arrays, never on
        a file of its own."""
        self._given[spec.key] = dataset
        if spectrum is not None:
            self._spectra[spec.key] = spectrum
        for depth, s in (deep or {}).items():
            self._deep[(spec.key, depth)] = s

    def dataset(self, spec: RunData) -> Dataset:
        """The data of ``spec``. Files are read once per cache (per sweep), never from the
        process-wide cache of the embedded sources: a file may change between two sweeps."""
        from ..data import load_dataset, parse_data_spec

        if spec.key in self._given:
            return self._given[spec.key]
        if parse_data_spec(spec.data).path is None:
            return check.load_data(spec.data, spec.n, spec.data_seed, spec.normalize)
        if spec.key not in self._files:
            self._files[spec.key] = load_dataset(
                spec.data, n=spec.n, seed=spec.data_seed, normalize=spec.normalize
            )
        return self._files[spec.key]

    def spectrum(self, spec: RunData) -> Spectrum:
        """Spectrum of ``H^inf`` (first layer, docs/mathematics.md §1.2) of the data; no loss factor."""
        if spec.key not in self._spectra:
            from ..kernels import spectrum, two_layer_gram

            self._spectra[spec.key] = spectrum(
                two_layer_gram(self.dataset(spec).X, layer="first"), vectors=True
            )
        return self._spectra[spec.key]

    def deep_spectrum(self, spec: RunData, depth: int) -> Spectrum:
        """Spectrum of the infinite-width NTK of ``DeepReLU`` with ``depth`` hidden layers
        (``kernels.deep_relu_ntk``, docs/mathematics.md §1.5) of the data; no loss factor."""
        key = (spec.key, depth)
        if key not in self._deep:
            from ..kernels import deep_relu_ntk, spectrum

            self._deep[key] = spectrum(deep_relu_ntk(self.dataset(spec).X, depth), vectors=True)
        return self._deep[key]

    def limit_spectrum(self, spec: RunData, depth: int | None) -> Spectrum:
        """The infinite-width kernel of a run's network: ``H^inf`` (two-layer) or the deep
        NTK of ``depth`` hidden layers."""
        return self.spectrum(spec) if depth is None else self.deep_spectrum(spec, depth)

    def loss_factor(self, spec: RunData, loss: str) -> float:
        """``c`` of ``loss = c/2 sum e^2`` on the data (``ntkdyn.conventions.loss_factor``)."""
        return loss_factor(loss, self.dataset(spec).n)


def choice_rule(
    choice: OptimizerChoice, exp: ExperimentConfig, cache: DataCache, depth: int | None = None
) -> Rule:
    """The rule of an optimizer entry, data-driven values resolved on ``c H^inf`` of the
    experiment's data, or on ``c`` times the deep NTK for a ``depth`` (``config`` module
    docstring)."""
    if not choice.data_driven:
        return resolve(choice, 0.0, 0.0)
    c = cache.loss_factor(exp.data_spec, exp.loss)
    K = cache.limit_spectrum(exp.data_spec, depth).scaled(c)
    return resolve(choice, K.lambda_min, K.lambda_max)


def network_elements(run_config: Mapping, n: int, d: int) -> int:
    """Width x max(n, d) of a run's network, plus ``width^2`` per hidden ``m x m`` layer of a
    deep one: the unit of the batch bound and of ``_budget.network_bytes``. A deep run with
    ``diagnostics_every`` adds its checkpoint Jacobian, ``n`` rows of all its weights (the
    engine's generic path forms it; without ``diagnostics_every`` a deep run has no
    checkpoints, ``experiments._batch``)."""
    width, depth = run_config["width"], run_config.get("depth")
    if depth is None:
        return width * max(n, d)
    elements = width * max(n, d) + (depth - 1) * width * width
    if run_config.get("diagnostics_every") is not None:
        # one n x weights array, counted as elements of NETWORK_WORK_ARRAYS + 3 arrays each
        elements += n * (width * (d + 1) + (depth - 1) * width * width) // (NETWORK_WORK_ARRAYS + 3)
    return elements


def expand_runs(
    config: Config | Mapping | str | os.PathLike, *, cache: DataCache | None = None
) -> list[RunSpec]:
    """All runs of a config, in order experiment > optimizer > depth > width > seed.

    The run config holds ``experiment, mode, data, n, data_seed, loss, width, seed, optimizer``
    (the canonical ``rule.spec``, data-driven values resolved), ``steps, dtype, device`` (as
    requested: ``auto`` stays ``auto``, so ids agree across machines), ``predict`` and
    ``diagnostics_every``, and ``depth`` only for an experiment that sets it (so the ids of
    every other run are those they had before the key existed). Raises ValueError for a
    data-driven value out of range or a run listed twice.
    """
    config = load_config(config)
    cache = cache if cache is not None else DataCache()
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # count every repeat; the caller's filters apply
            return _expand(config, cache)
    finally:
        _replay_collapsed(caught)  # outside the block: the caller's filters decide


def _replay_collapsed(caught: list[warnings.WarningMessage]) -> None:
    """Warn once per distinct (category, message), with its count when it repeated."""
    counts = Counter((w.category, str(w.message)) for w in caught)
    for (category, message), count in counts.items():  # first-seen order
        suffix = f" ({count} times while expanding the config)" if count > 1 else ""
        warnings.warn(message + suffix, category, stacklevel=3)


def _expand(config: Config, cache: DataCache) -> list[RunSpec]:
    runs: list[RunSpec] = []
    seen: dict[str, str] = {}
    for exp in config.experiments:
        depths: tuple[int | None, ...] = exp.depth or (None,)
        for choice, depth in itertools.product(exp.optimizers, depths):
            rule = choice_rule(choice, exp, cache, depth)
            for width, seed in itertools.product(exp.widths, exp.seeds):
                cfg: dict = {
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
                if depth is not None:
                    cfg["depth"] = depth
                rid = run_id(cfg)
                if rid in seen:
                    at = "" if depth is None else f", depth {depth}"
                    raise ValueError(
                        f"`{choice.where}` repeats the run {rule.spec} (width {width}, seed "
                        f"{seed}{at}) already given by `{seen[rid]}`"
                    )
                seen[rid] = choice.where
                runs.append(RunSpec(rid, exp.id, cfg, rule))
    return runs


# --------------------------------------------------------------------------------------------
# Engine batches (trained by ``sweep``).


def plan_batches(
    runs: list[RunSpec],
    cache: DataCache,
    *,
    max_elements: int | None = None,
    devices: dict[str, str] | None = None,
) -> list[list[RunSpec]]:
    """Engine batches: runs with equal batch keys (a deep run's depth among them) and the
    same optimizer family, in first-appearance order, split greedily so that the sum of
    :func:`network_elements` (``width * max(n, d)`` for a two-layer network) stays
    ``<= max_elements`` (a single larger run forms its own batch).

    One family per batch: on a 2-core AMD EPYC a float32 batch mixing GD with HB (or HOM)
    slowed from ~2 ms to ~100 ms per step after a few hundred steps (the families alone stay
    fast; cause not yet found), which made the 5000-epoch E6 take many minutes.

    ``max_elements`` None: :data:`CUDA_BATCH_ELEMENTS` for runs whose device resolves (through
    ``devices``, requested -> resolved) to cuda, else :data:`MAX_BATCH_ELEMENTS`.
    """
    devices = devices or {}
    groups: dict[tuple, list[RunSpec]] = {}
    for run in runs:
        key = tuple(run.config.get(k) for k in _BATCH_KEYS) + (run.rule.name,)
        groups.setdefault(key, []).append(run)
    batches = []
    for group in groups.values():
        ds = cache.dataset(group[0].data_spec)
        bound = max_elements
        if bound is None:
            cuda = devices.get(group[0].config["device"]) == "cuda"
            bound = CUDA_BATCH_ELEMENTS if cuda else MAX_BATCH_ELEMENTS
        current: list[RunSpec] = []
        size = 0
        for run in group:
            elements = network_elements(run.config, ds.n, ds.d)
            if current and size + elements > bound:
                batches.append(current)
                current, size = [], 0
            current.append(run)
            size += elements
        batches.append(current)
    return batches


# --------------------------------------------------------------------------------------------
# Size of a sweep, and the provenance of its data.


def sweep_size(config: Config) -> tuple[int, int]:
    """``(runs, work)`` of a validated config without expanding it; work is the sum of
    width x steps over its runs (the unit of the sweep's ETA)."""
    runs = work = 0
    for exp in config.experiments:
        per_width = len(exp.optimizers) * len(exp.seeds)
        runs += per_width * len(exp.widths)
        work += per_width * sum(exp.widths) * exp.steps
    return runs, work


def check_size(config: Config, *, confirm_large: bool) -> None:
    """Refuse a config past :data:`MAX_RUNS` runs or :data:`MAX_WORK` work unless
    ``confirm_large`` (``--yes``); the message gives both numbers."""
    runs, work = sweep_size(config)
    if confirm_large or (runs <= MAX_RUNS and work <= MAX_WORK):
        return
    raise ValueError(
        f"`config` {config.name!r} expands to {runs:,} runs (limit MAX_RUNS = {MAX_RUNS:,}) "
        f"with an estimated work of {work:.3g} width x steps (limit MAX_WORK = {MAX_WORK:.3g}); "
        "check its grids, or add --yes (confirm_large=True) to run it anyway"
    )


def check_networks_fit(runs: list[RunSpec], cache: DataCache) -> None:
    """The largest single network must fit in memory (a batch holds at least one), checked
    before anything is written (docs/design.md, "Reliability rules")."""

    def need(run: RunSpec) -> int:
        ds = cache.dataset(run.data_spec)
        size = itemsize(run.config["dtype"])
        registers = getattr(run.rule, "registers", 3)  # Adam: two moments and the weights
        return network_bytes(1, network_elements(run.config, ds.n, ds.d), registers, size)

    worst = max(runs, key=need)
    what = f"one network of experiment {worst.experiment!r} (weights, optimizer registers, work)"
    check_fits("widths", worst.width, what, need(worst), "use smaller widths")
