"""Shards of a sweep for job arrays without a scheduler (``--shard i/N``, ``ntkdyn merge``).

A shard trains a fixed part of the engine batches of the *whole* config and stores them in
an ordinary store of that config; ``ntkdyn merge`` unites the shard stores
(:mod:`ntkdyn.experiments.merge`), and ``sweep --resume`` completes a store that lacks some.

Which batches a shard trains must not depend on the machine it runs on (one shard may land on a
GPU node, another on a CPU node), so shards are cut from the CPU batch plan
(``runs.MAX_BATCH_ELEMENTS``, or the explicit ``max_batch_elements``): the batches of one
machine's unsharded sweep on a CPU are exactly the union of its shards' batches, hence
bit-identical curves. Batches are dealt to shards by longest work first (width x steps), each
to the least loaded shard, ties to the lowest index: deterministic and balanced.
"""

from __future__ import annotations

import re

from .runs import RunSpec

__all__ = ["parse_shard", "shard_batches"]

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


def _work(batch: list[RunSpec]) -> int:
    return sum(run.width * run.config["steps"] for run in batch)


def shard_batches(batches: list[list[RunSpec]], shard: tuple[int, int]) -> list[list[RunSpec]]:
    """The batches of shard ``(i, N)``, in plan order (see the module docstring)."""
    i, n = shard
    load = [0] * n
    owner: dict[int, int] = {}
    order = sorted(range(len(batches)), key=lambda b: (-_work(batches[b]), b))
    for b in order:
        target = min(range(n), key=lambda s: (load[s], s))
        owner[b] = target
        load[target] += _work(batches[b])
    return [batch for b, batch in enumerate(batches) if owner[b] == i - 1]
