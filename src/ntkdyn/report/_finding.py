"""A notebook finding as a record: what it measured, its verdict and evidence, and the numbers
of docs/paper.md it is compared with (``findings`` judges E1-E6)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..optim import Family, rules_of

if TYPE_CHECKING:
    from .summary import RunAnalysis

__all__ = ["PAPER_NUMBERS", "Finding", "finding", "momentum_key"]  # for findings.py


@dataclass(frozen=True)
class Finding:
    """A notebook finding: the measured pattern, the paper's numbers, the verdict
    ("reproduced" | "not reproduced" | "inconclusive"), its evidence, the one-line criterion,
    the pre-registered constants used and a table (one row per width or setting)."""

    id: str
    experiment: str
    statement: str
    paper: str
    verdict: str
    evidence: str
    criterion: str = ""
    constants: dict[str, object] = field(default_factory=dict)
    table: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "experiment": self.experiment,
            "statement": self.statement,
            "paper": self.paper,
            "verdict": self.verdict,
            "evidence": self.evidence,
            "criterion": self.criterion,
            "constants": dict(self.constants),
            "table": [dict(row) for row in self.table],
        }


PAPER_NUMBERS = {
    "E1": "loss 2.22 at epoch 100, 0.555 at 1000, 0.0620 at 5000 (MNIST n = 600, m = 3000)",
    "E2": "lowest loss at epoch 200 at width 5500 (beta 0), 4500 (0.6), 3500 (0.9), inside the "
    "grid 2000..8000 (one seed)",
    "E3": "higher beta converges faster (beta 0.2 < 0.5 < 0.8)",
    "E4": "10-seed mean lowest at width 2000-3000 (r = 2), 3000 (r = 4), 5000 (r = 10), inside "
    "the grid 1000..8000",
    "E5": "larger r reaches a lower loss: 1.5e-6 (r=2), 5.5e-8 (3), 9.3e-11 (6), 2.9e-12 (8) at "
    "epoch 5000",
    "E6": "loss 0.038 (b=.2,.2) and 0.019 (.2,.5) at epoch 5000; (.2,.8) blows up near epoch 3800",
}


def momentum_key(family: Family) -> str:
    """The parameter the runs of ``family`` are grouped by (beta for HB, r for NAG)."""
    return str(rules_of(family)[0].momentum_key)


def finding(
    eid: str,
    runs: Sequence[RunAnalysis],
    statement: str,
    verdict: str,
    evidence: str,
    criterion: str,
    constants: Mapping[str, object],
    table: Iterable[Mapping[str, object]] = (),
) -> Finding:
    """The finding ``eid`` of its experiment's runs, with the paper's numbers."""
    experiment = runs[0].record.experiment if runs else ""
    return Finding(
        eid,
        experiment,
        statement,
        PAPER_NUMBERS[eid],
        verdict,
        evidence,
        criterion,
        dict(constants),
        [dict(row) for row in table],
    )
