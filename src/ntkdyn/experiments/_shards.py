"""Shards of a sweep for job arrays without a scheduler (``--shard i/N``, ``ntkdyn merge``).

A shard trains a fixed part of the engine batches of the *whole* config and stores them in
an ordinary store of that config; ``ntkdyn merge`` unites the shard stores
(:mod:`ntkdyn.experiments.merge`), and ``sweep --resume`` completes a store that lacks some.

Which batches a shard trains must not depend on the machine it runs on (one shard may land on a
GPU node, another on a CPU node), so shards are cut from the CPU batch plan
(``runs.MAX_BATCH_ELEMENTS``, or the explicit ``max_batch_elements``): the batches of one
machine's unsharded sweep on a CPU are exactly the union of its shards' batches, hence
bit-identical curves. Batches are dealt to shards by longest work first (:func:`work_units`,
about the flops of the training steps, computed from the config and the data alone), each to
the least loaded shard, ties to the lowest index: deterministic and balanced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .runs import DataCache, RunSpec

__all__ = ["parse_shard", "shard_batches", "work_units"]

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"i/N"`` (1 <= i <= N) -> ``(i, N)``; raises ValueError naming ``--shard``."""
    if isinstance(text, tuple):
        i, n = text
    else:
        match = _SHARD.match(str(text))
        if match is None:
            raise ValueError(f"`--shard` must look like i/N (e.g. 2/8), got {text!r}")
        i, n = int(match.group(1)), int(match.group(2))
    if not (isinstance(i, int) and isinstance(n, int) and 1 <= i <= n):
        raise ValueError(f"`--shard` must be i/N with 1 <= i <= N, got {i}/{n}")
    return i, n


def work_units(runs: Iterable[RunSpec], cache: DataCache) -> float:
    """Work units of ``runs`` (the progress display's, and what shards are balanced on): width x steps x n x (d + 1) per run, about the
    flops of its training steps (a unit of a notebook run on 600 x 784 MNIST costs thousands of
    times one of a theory run on 20 x 5 Gaussians: width x steps alone made the ETA of the
    ``paper`` preset read 5 minutes for 45); a deep run adds 1.5 x width^2 x steps x n per
    hidden ``m x m`` layer (its ``6 n m^2`` flops per step against the ``4 n m d`` of a
    first layer, ``_cost.step_flops``)."""
    total = 0.0
    for run in runs:
        ds = cache.dataset(run.data_spec)
        per_row = ds.d + 1 + 1.5 * ((run.depth or 1) - 1) * run.width
        total += float(run.width) * run.config["steps"] * ds.n * per_row
    return total


def shard_batches(
    batches: list[list[RunSpec]], shard: tuple[int, int], cache: DataCache
) -> list[list[RunSpec]]:
    """The batches of shard ``(i, N)``, in plan order (see the module docstring)."""
    i, n = shard
    work = [work_units(batch, cache) for batch in batches]
    load = [0.0] * n
    owner: dict[int, int] = {}
    order = sorted(range(len(batches)), key=lambda b: (-work[b], b))
    for b in order:
        target = min(range(n), key=lambda s: (load[s], s))
        owner[b] = target
        load[target] += work[b]
    return [batch for b, batch in enumerate(batches) if owner[b] == i - 1]
