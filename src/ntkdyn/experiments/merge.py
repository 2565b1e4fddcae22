"""``ntkdyn merge OUT SHARD_DIR...``: the union of results stores of one config.

A sweep split into shards (``ntkdyn sweep CONFIG --shard i/N``, one SLURM array task each)
writes one ordinary store per shard: the full config's meta, and the runs of its share of the
engine batches. :func:`merge_stores` copies their runs and kernels into one store, from which
``ntkdyn report`` works as from an unsharded sweep (docs/distributed.md, "Shards and merge").

Rules (docs/design.md, "Reliability rules"): everything is read and checked before anything
is written. Every source must be a healthy store (``ntkdyn doctor`` salvages a damaged one)
of the same config, with the same content hash for each data key, as must ``OUT`` when it
already holds a store. A run found twice must have the same results (its stored row, the
timing columns ``elapsed`` and ``finished`` aside: a run trained twice computes the same
curves at another time); it is copied once, otherwise the merge is refused with its id.
Writing holds ``OUT``'s lock and commits each source's runs in one transaction, so a killed
merge leaves whole sources or nothing of one, and running it again completes it. A merged
store lacking some shards is an ordinary incomplete store: ``ntkdyn sweep CONFIG --out OUT
--resume`` trains the missing runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._lock import out_dir_lock
from ._merge_meta import (
    MERGED_FROM,
    differences,
    distinct_environments,
    expected_runs,
    hashes_of,
    merged_meta,
    missing_shards,
)
from .records import RUN_COLUMNS, KernelRecord, RunRecord, StoreError, row_checksum
from .store import STORE_NAME, Store

__all__ = ["KERNEL_RTOL", "MERGED_FROM", "MergeResult", "merge_stores"]

#: Largest relative difference (to ``lambda_max``) between two stored ``H^inf`` spectra of one
#: data key that is taken as the same kernel: the data are the same (their content hashes
#: agree), and float64 symmetric eigensolvers on different BLAS builds or thread counts differ
#: by about ``n * eps`` (1.3e-13 at n = 600); a thousand times that still flags any real
#: difference of the data or of the kernel's definition.
KERNEL_RTOL = 1e-10
_TIMING = ("elapsed", "finished")


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_stores` did.

    Attributes:
        out: the results directory; ``store``: its SQLite file.
        sources: the source stores, in the order given.
        copied: runs copied from each source (same order).
        present: runs of each source already in ``out`` (earlier, or from a source before it).
        total: runs in ``out`` after the merge; ``expected``: runs of the config (None when
            the stored config cannot be counted).
        shards: the sources' ``shard`` meta values (``i/N``), sorted, duplicates dropped.
        notes: lines worth reading: an incomplete store and how to complete it, kernels that
            differed within :data:`KERNEL_RTOL`, environments that differed.
    """

    out: Path
    store: Path
    sources: tuple[Path, ...]
    copied: tuple[int, ...]
    present: tuple[int, ...]
    total: int
    expected: int | None
    shards: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        """Whether ``out`` holds every run of the config."""
        return self.expected is not None and self.total >= self.expected

    def lines(self) -> list[str]:
        """What ``ntkdyn merge`` prints: one line per source, a total, then the notes."""
        out = [
            f"{str(src)!r}: {c} runs copied, {p} already present"
            for src, c, p in zip(self.sources, self.copied, self.present, strict=True)
        ]
        of = f" of {self.expected}" if self.expected is not None else ""
        out.append(f"merged: {self.total}{of} runs in {str(self.store)!r}")
        return out + list(self.notes)


@dataclass
class _Source:
    """One store as read in a single read transaction (a consistent snapshot)."""

    path: Path
    meta: dict[str, str]
    kernels: dict[str, KernelRecord]
    runs: list[RunRecord]


@dataclass
class _Plan:
    """What a merge writes: the meta, the kernels, each source's new runs, and the counts."""

    meta: dict[str, str]
    kernels: list[KernelRecord]
    runs: list[list[RunRecord]]
    copied: list[int]
    present: list[int]
    notes: list[str]


def _plan(existing: _Source | None, read: list[_Source]) -> _Plan:
    """Check ``OUT``'s store (None: no store yet) against the sources and plan the writes;
    raises ValueError before anything is written."""
    if existing is not None:
        _check_out(existing, read)
    everything = ([existing] if existing is not None else []) + read
    runs, copied, present = _plan_runs(everything, existing is not None)
    kernels, notes = _merge_kernels(everything)
    if len(distinct_environments([s.meta for s in everything])) > 1:
        notes.append(
            f"the sources' environments differ: summary.json lists them under "
            f"environment.{MERGED_FROM}"
        )
    return _Plan(merged_meta([s.meta for s in everything]), kernels, runs, copied, present, notes)


def merge_stores(
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    say: Callable[[str], None] | None = None,
) -> MergeResult:
    """Copy the runs and kernels of the stores ``sources`` into ``out/results.sqlite``.

    Args:
        sources: results directories (or their ``results.sqlite``) of one config, e.g. the
            shards of a sweep; ``out`` must not be one of them.
        out: the results directory written (created if needed); it may already hold a store
            of the same config (from an earlier merge, or a sweep), whose runs are kept.
        say: called with a line when each source is read and written (progress for a CLI).

    Returns:
        a :class:`MergeResult`.

    Raises:
        ValueError naming ``SHARD_DIR`` or ``OUT`` (nothing written): no sources, a source
        given twice or equal to ``out``, a missing or damaged store, another config, another
        data content hash, a run stored with different results in two places.
    """
    tell = say if say is not None else (lambda line: None)
    paths = _source_paths(sources)
    out_dir = _out_dir(out, paths)
    read = []
    for path in paths:
        read.append(_read(path, "SHARD_DIR"))
        tell(f"read {str(path)!r}: {len(read[-1].runs)} runs")
    _check_sources(read)
    store_path = out_dir / STORE_NAME
    # Everything is checked before anything is created, then again under the lock when OUT
    # holds a store (another writer may have changed it in between).
    plan = _plan(_read(store_path, "OUT") if store_path.is_file() else None, read)
    out_dir.mkdir(parents=True, exist_ok=True)
    with out_dir_lock(out_dir):
        if store_path.is_file():
            plan = _plan(_read(store_path, "OUT"), read)
        with Store(store_path) as store:
            store.set_meta(plan.meta)
            store.write_kernels(plan.kernels)
            for src, new in zip(read, plan.runs, strict=True):
                store.write_batch(new)  # one transaction: a whole source or nothing of it
                tell(f"wrote {len(new)} runs of {str(src.path)!r}")
            total = len(store.finished_ids())
    meta, notes = plan.meta, list(plan.notes)
    expected = expected_runs(meta["config"])
    shards = tuple(sorted({s.meta["shard"] for s in read if s.meta.get("shard")}))
    if expected is not None and total < expected:
        notes.insert(
            0,
            f"incomplete: {expected - total} of the config's {expected} runs are missing"
            f"{missing_shards(shards)}; `ntkdyn sweep CONFIG --out {out_dir} --resume` "
            "trains them",
        )
    return MergeResult(
        out_dir,
        store_path,
        tuple(p for p in paths),
        tuple(plan.copied),
        tuple(plan.present),
        total,
        expected,
        shards,
        tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Reading and checking (nothing is written here).


def _store_file(path: str | os.PathLike[str]) -> Path:
    given = Path(path).expanduser()
    return given / STORE_NAME if given.is_dir() else given


def _source_paths(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(sources, (str, os.PathLike)):
        raise ValueError(f"`SHARD_DIR` must be a list of results directories, got {sources!r}")
    if not sources:
        raise ValueError("`SHARD_DIR` needs at least one results directory to merge")
    paths: list[Path] = []
    seen: dict[Path, str] = {}
    for given in sources:
        path = _store_file(given)
        if not path.is_file():
            raise ValueError(
                f"`SHARD_DIR` {str(given)!r} holds no {STORE_NAME} (run a sweep first)"
            )
        key = path.resolve()
        if key in seen:
            raise ValueError(f"`SHARD_DIR` {str(given)!r} is given twice (also as {seen[key]!r})")
        seen[key] = str(given)
        paths.append(path)
    return paths


def _out_dir(out: str | os.PathLike[str], sources: list[Path]) -> Path:
    path = Path(out).expanduser()
    if path.name == STORE_NAME and not path.is_dir():
        path = path.parent
    if path.exists() and not path.is_dir():
        raise ValueError(f"`OUT` {str(path)!r} exists and is not a directory")
    target = (path / STORE_NAME).resolve()
    for src in sources:
        if src.resolve() == target:
            raise ValueError(
                f"`OUT` {str(path)!r} is also a source (`SHARD_DIR` {str(src.parent)!r}): merge "
                "into a new directory; the sources are only read"
            )
    return path


def _read(path: Path, field_name: str) -> _Source:
    """Meta, kernels and verified runs of one store, in one read transaction."""
    try:
        with Store(path, readonly=True, check=True) as store:
            conn = store._db
            conn.execute("BEGIN")  # one snapshot: a sweep still writing it cannot tear it
            try:
                meta, kernels, runs = store.meta(), store.kernels(), store.load_runs()
            finally:
                conn.rollback()
    except StoreError as exc:
        raise ValueError(f"`{field_name}` {str(path.parent)!r} cannot be merged: {exc}") from None
    if "config" not in meta:
        raise ValueError(
            f"`{field_name}` {str(path.parent)!r} is not a sweep's store (its meta has no config)"
        )
    return _Source(path, meta, kernels, runs)


def _check_sources(read: list[_Source]) -> None:
    first = read[0]
    for src in read[1:]:
        _check_same(first, src, "SHARD_DIR")


def _check_out(existing: _Source, read: list[_Source]) -> None:
    if existing.meta.get("shard"):  # an unsharded sweep records shard = ""
        raise ValueError(
            f"`OUT` {str(existing.path.parent)!r} holds shard {existing.meta['shard']} of a "
            "sweep: merge into a new directory (give the shard as a SHARD_DIR)"
        )
    _check_same(read[0], existing, "OUT")


def _check_same(ref: _Source, other: _Source, field_name: str) -> None:
    """Refuse ``other`` unless it has ``ref``'s config and agreeing data content hashes."""
    where = f"`{field_name}` {str(other.path.parent)!r}"
    if other.meta["config"] != ref.meta["config"]:
        a, b = json.loads(ref.meta["config"]), json.loads(other.meta["config"])
        diffs = "; ".join(differences(a, b)[:3]) or "the same settings, written differently"
        raise ValueError(
            f"{where} holds results of another config than {str(ref.path.parent)!r} ({diffs}); "
            "only stores of one config are merged"
        )
    mine, theirs = hashes_of(ref.meta), hashes_of(other.meta)
    for key in sorted(set(mine) & set(theirs)):
        if mine[key] != theirs[key]:
            raise ValueError(
                f"{where}: the data of key {key!r} has content hash {theirs[key]!r} there but "
                f"{mine[key]!r} in {str(ref.path.parent)!r} (the data changed between the "
                "sweeps); run that shard again on the current data"
            )


# --------------------------------------------------------------------------------------------
# What is written.


def _result_digest(run: RunRecord) -> str:
    """The checksum of a run's row with its timing columns blanked: equal results, equal
    digest."""
    row = list(run._row())
    for name in _TIMING:
        row[RUN_COLUMNS.index(name)] = None
    return row_checksum("runs", row)


def _plan_runs(
    everything: list[_Source], has_out: bool
) -> tuple[list[list[RunRecord]], list[int], list[int]]:
    """The new runs of each source, and the counts; refuses a run stored with different
    results in two places (``everything``: the existing ``OUT`` first when ``has_out``)."""
    held: dict[str, tuple[str, Path]] = {}
    plans, copied, present = [], [], []
    for i, src in enumerate(everything):
        new = []
        for run in src.runs:
            digest = _result_digest(run)
            if run.id in held:
                if held[run.id][0] != digest:
                    raise ValueError(
                        f"`SHARD_DIR` {str(src.path.parent)!r}: run {run.id!r} ({run.experiment}, "
                        f"{run.optimizer}, width {run.width}, seed {run.seed}) is stored with "
                        f"different results in {str(held[run.id][1].parent)!r}; keep one of "
                        "them (ntkdyn sweep --resume retrains a run left out)"
                    )
                continue
            held[run.id] = (digest, src.path)
            new.append(run)
        if has_out and i == 0:
            continue  # the runs already in OUT are only compared against
        plans.append(new)
        copied.append(len(new))
        present.append(len(src.runs) - len(new))
    return plans, copied, present


def _merge_kernels(everything: list[_Source]) -> tuple[list[KernelRecord], list[str]]:
    """The union of the ``H^inf`` spectra; the first one kept for a data key, a later one
    refused unless it agrees within :data:`KERNEL_RTOL`."""
    kept: dict[str, tuple[KernelRecord, Path]] = {}
    notes = []
    for src in everything:
        for key, k in src.kernels.items():
            if key not in kept:
                kept[key] = (k, src.path)
                continue
            ref, where = kept[key]
            if row_checksum("kernels", k._row()) == row_checksum("kernels", ref._row()):
                continue
            gap = _kernel_gap(ref, k)
            if gap > KERNEL_RTOL:
                raise ValueError(
                    f"`SHARD_DIR` {str(src.path.parent)!r}: the H^inf spectrum of data key "
                    f"{key!r} differs from the one in {str(where.parent)!r} (relative "
                    f"difference {gap:.3g} > KERNEL_RTOL = {KERNEL_RTOL:g})"
                )
            notes.append(
                f"kernel {key!r}: {str(src.path.parent)!r} differs from {str(where.parent)!r} "
                f"by {gap:.2g} (relative, within KERNEL_RTOL); the latter is kept"
            )
    return [k for k, _ in kept.values()], notes


def _kernel_gap(a: KernelRecord, b: KernelRecord) -> float:
    same = (a.data, a.n, a.data_seed, a.mode) == (b.data, b.n, b.data_seed, b.mode)
    if not same or a.eigenvalues.shape != b.eigenvalues.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(a.eigenvalues), initial=0.0)), np.finfo(float).tiny)
    return float(np.max(np.abs(a.eigenvalues - b.eigenvalues), initial=0.0)) / scale
