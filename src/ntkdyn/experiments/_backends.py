"""Where a sweep's engine batches train: in the sweep's own process (``local``) or on a Dask
cluster (``dask``, :mod:`._dask`). Either way the driver (``sweep.run_sweep``) alone writes
the store, one batch per transaction, as batches finish, so ``--resume`` works the same.

A backend is an iterator of :class:`Finished` batches; it reports steps through
``on_step(batch_index, step, steps)``. It stops early on the first failure (local) or after the
other batches finished (dask: :class:`BatchError` names the runs of each failed batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from ._batch import train_batch
from .runs import DataCache, RunSpec

__all__ = ["BACKENDS", "Backend", "BatchError", "Finished", "local_batches", "require_dask"]

#: The backends of ``--backend``.
BACKENDS = ("local", "dask")

StepReport = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Finished:
    """Batch ``index`` of the pending batches trained in ``seconds``: one record per run."""

    index: int
    rows: list[dict]
    seconds: float


@dataclass(frozen=True)
class Backend:
    """Where the batches train (``_backends``): ``local`` (this process) or ``dask`` on a local
    cluster of ``workers`` processes or the scheduler at ``scheduler``, with ``threads`` torch
    threads per worker."""

    name: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"`--backend` must be one of {', '.join(BACKENDS)}, got {self.name!r}")
        if self.name == "local" and (self.workers is not None or self.scheduler is not None):
            raise ValueError("`--workers` and `--scheduler` need `--backend dask`")
        if self.workers is not None and self.scheduler is not None:
            raise ValueError(
                "`--workers` starts a local cluster, `--scheduler` joins one: pick one"
            )
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"`--workers` must be >= 1, got {self.workers}")
        if self.threads < 1:
            raise ValueError(f"`--threads` must be >= 1, got {self.threads}")
        if self.name == "dask":
            require_dask()

    def describe(self) -> dict[str, object]:
        """What the store's ``backend`` meta records."""
        fields = {"name": self.name, "workers": self.workers, "scheduler": self.scheduler}
        if self.name == "dask":
            fields["threads"] = self.threads
        return {k: v for k, v in fields.items() if v is not None}


def require_dask() -> None:
    """Refuse ``--backend dask`` without the extra, saying which one to install."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError(
            "`--backend` 'dask' needs Dask: pip install 'ntkdyn[distributed]' (the local "
            "backend needs nothing)"
        ) from None


class BatchError(RuntimeError):
    """Batches that failed (an exception in training, or a worker lost too many times); the
    others are stored. ``failures``: (run ids, cause) per failed batch."""

    def __init__(self, failures: list[tuple[list[str], str]], stored: int) -> None:
        self.failures = failures
        parts = [f"runs {', '.join(ids)}: {cause}" for ids, cause in failures]
        super().__init__(
            f"{len(failures)} batch(es) failed ({'; '.join(parts)}); the {stored} other runs "
            "trained now are stored: fix the cause and run again with --resume"
        )


def local_batches(
    pending: list[list[RunSpec]],
    cache: DataCache,
    devices: dict[str, str],
    on_step: StepReport | None = None,
) -> Generator[Finished, None, None]:
    """Train the batches one after the other in this process."""
    for index, batch in enumerate(pending):
        report = None
        if on_step is not None:

            def report(step: int, steps: int, index: int = index) -> None:
                on_step(index, step, steps)

        start = time.perf_counter()
        try:
            rows = train_batch(batch, cache, devices, progress=report)
        except Exception as exc:  # keep the traceback, name the runs (Python >= 3.11)
            note = getattr(exc, "add_note", None)
            if note is not None:
                note(f"ntkdyn: in the engine batch of runs {', '.join(r.id for r in batch)}")
            raise
        yield Finished(index, rows, time.perf_counter() - start)
