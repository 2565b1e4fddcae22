"""The records of a dry run (``estimate.plan_sweep``): one :class:`BatchPlan` per pending engine
batch and the :class:`SweepPlan` of the whole sweep, with their text and JSON forms."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .._budget import format_bytes

__all__ = ["TEXT_BATCH_LINES", "BatchPlan", "SweepPlan"]

#: Batches listed one per line up to this many; above, one line per experiment group.
TEXT_BATCH_LINES = 40


@dataclass(frozen=True)
class BatchPlan:
    """One pending engine batch (one ``ntkdyn.training.train`` call).

    Attributes:
        experiments: the experiment ids of its runs, in order; ``runs``: how many.
        width: total width; ``n``, ``d``: data rows and inputs; ``steps``; ``dtype``;
        device: resolved; ``optimizer``: rule name; ``family``: the rule's family;
        memory_bytes: ``_budget.network_bytes`` summed over its networks; ``flops``:
            matrix-product flops of its training steps; ``seconds``: estimate on this machine
            (None without calibration); ``worker_seconds``: the same on one single-thread
            worker (None unless planned for workers).
    """

    experiments: tuple[str, ...]
    runs: int
    width: int
    n: int
    d: int
    steps: int
    dtype: str
    device: str
    optimizer: str
    family: str
    memory_bytes: int
    flops: int
    seconds: float | None
    worker_seconds: float | None = None


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep would do (module docstring); :meth:`text` and :meth:`as_dict` show it.

    ``parallel_seconds``: the estimate on ``workers`` single-thread workers, of which
    ``worker_slots`` train at the same time; ``every_core_busy``: they are a local cluster
    taking every core of this machine, so the estimate is a lower bound (the scheduler, the
    nannies and the driver share those cores).
    """

    config: str
    total_runs: int
    done_runs: int
    batches: tuple[BatchPlan, ...]
    setup_seconds: float
    calibration_seconds: float
    threads: int
    workers: int
    seconds: float | None
    parallel_seconds: float | None
    worker_slots: int = 1
    every_core_busy: bool = False

    @property
    def to_train(self) -> int:
        """Runs that would be trained."""
        return self.total_runs - self.done_runs

    @property
    def peak_memory_bytes(self) -> int:
        """Memory of the largest batch (0 with nothing to train)."""
        return max((b.memory_bytes for b in self.batches), default=0)

    def as_dict(self) -> dict:
        """Plain data for ``--json`` (every field, the batches as a list of dicts)."""
        out = asdict(self)
        out["batches"] = [asdict(b) for b in self.batches]
        out["to_train"] = self.to_train
        out["peak_memory_bytes"] = self.peak_memory_bytes
        return out

    def text(self) -> str:
        """A compact table (one line per batch up to :data:`TEXT_BATCH_LINES`, else one per
        experiment group) ending with the totals."""
        head = f"{'batch':>5}  {'experiments':<16} {'runs':>4} {'width':>8} {'n':>5} {'d':>4} "
        head += f"{'steps':>6} {'dtype':<7} {'device':<6} {'optimizer':<16} {'memory':>9} "
        head += f"{'estimate':>9}"
        lines = [f"sweep {self.config!r}: dry run, nothing is trained or written", head]
        rows = [(str(i + 1), [b]) for i, b in enumerate(self.batches)]
        if len(self.batches) > TEXT_BATCH_LINES:
            groups: dict[tuple[str, ...], list[BatchPlan]] = {}
            for b in self.batches:
                groups.setdefault(b.experiments, []).append(b)
            rows = [(f"x{len(g)}", g) for g in groups.values()]
        for label, group in rows:
            b = group[0]
            secs = [x.seconds for x in group]
            est = None if None in secs else sum(s for s in secs if s is not None)
            lines.append(
                f"{label:>5}  {_clip('+'.join(b.experiments), 16):<16} "
                f"{sum(x.runs for x in group):>4} {sum(x.width for x in group):>8} {b.n:>5} "
                f"{b.d:>4} {b.steps:>6} {b.dtype:<7} {b.device:<6} {_clip(b.optimizer, 16):<16} "
                f"{format_bytes(max(x.memory_bytes for x in group)):>9} {_duration(est):>9}"
            )
        lines.append(
            f"runs: {self.total_runs} ({self.done_runs} done, {self.to_train} to train) in "
            f"{len(self.batches)} batches; largest batch {format_bytes(self.peak_memory_bytes)}"
        )
        if self.seconds is None:
            lines.append("estimated time: not calibrated")
        else:
            lines.append(
                f"estimated time on this machine: {_duration(self.seconds)} "
                f"({self.threads} threads; set-up {_duration(self.setup_seconds)}, "
                f"calibration took {_duration(self.calibration_seconds)})"
            )
        if self.workers > 1 and self.parallel_seconds is not None:
            at_once = (
                f"; {self.worker_slots} at a time, one per core"
                if self.worker_slots < self.workers
                else ""
            )
            if self.every_core_busy:  # docs/distributed.md: measured 1.1-1.5x on 2 cores
                at_once += "; at least: the workers share every core with the scheduler"
            lines.append(
                f"with {self.workers} single-thread workers: {_duration(self.parallel_seconds)} "
                f"(longest batches first{at_once})"
            )
        return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
