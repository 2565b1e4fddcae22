"""What ``ntkdyn kernel`` and ``ntkdyn predict`` share, with and without ``--model``: loading
the data, the output path and CSV text, the stability check of a step and the float64 floor of
a curve. The library is imported inside each function (the parser stays cheap)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from ..optim import LinearRule

__all__ = [
    "StepCheck",
    "check_out_path",
    "check_step",
    "csv_text",
    "floor_note",
    "load_data",
    "print_json",
    "write_text",
]


def load_data(args: argparse.Namespace):
    """The data of ``--data``/``--n``/``--data-seed``, refused before loading if its kernel
    cannot fit in memory."""
    from .._budget import check_fits, kernel_bytes
    from ..data import load_dataset

    if args.n is not None:  # before the data is made: a huge n fails at once, not after minutes
        what = "the n x n kernel and its eigendecomposition"
        check_fits("--n", args.n, what, kernel_bytes(args.n), "lower --n")
    data = load_dataset(args.data, n=args.n, seed=args.data_seed)
    check_fits(
        "--data",
        args.data,
        f"the kernel of its {data.n} rows",
        kernel_bytes(data.n),
        "choose fewer rows with --n",
    )
    return data


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def print_json(payload: Mapping[str, Any]) -> None:
    print(json.dumps(payload, indent=2, default=_json_default))


# --------------------------------------------------------------------------------------------
# Files.


def check_out_path(path: Path, flag: str = "--out") -> None:
    """Refuse, before any work, a path that is a directory or lies under a file."""
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if path.is_dir() or blocked is not None:
        why = "is a directory" if path.is_dir() else f"is under {str(blocked)!r}, a file"
        raise UsageError(f"`{flag}` {str(path)!r} {why}; give the path of a CSV file")


def write_text(path: Path, text: str, flag: str = "--out") -> None:
    from .._io import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:
        raise UsageError(f"`{flag}` {str(path)!r} cannot be written: {exc.strerror}") from None


def csv_text(columns: Mapping[str, Any], *, integers: tuple[str, ...] = ("step",)) -> str:
    """Columns of equal length as CSV: the ``integers`` columns as ints, every other value
    as ``repr`` of a float (round-trips every float64 exactly) or as text if it is a str."""
    keys = list(columns)
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer)
    w.writerow(keys)
    for row in zip(*(columns[k] for k in keys), strict=True):
        w.writerow([_cell(k in integers, v) for k, v in zip(keys, row, strict=True)])
    return buffer.getvalue()


def _cell(integer: bool, value: Any) -> object:
    if isinstance(value, str):
        return value
    return int(value) if integer else repr(float(value))


# --------------------------------------------------------------------------------------------
# The step and the floor.


@dataclass(frozen=True)
class StepCheck:
    """The rule's lr against the largest stable lr on the (effective) kernel."""

    lr: float
    max_stable_lr: float
    bound: str | None  # the loss's curvature bound (non-squared losses), None for an exact limit

    @property
    def factor(self) -> float:
        return self.lr / self.max_stable_lr if self.max_stable_lr > 0 else float("inf")

    @property
    def stable(self) -> bool:
        return self.lr < self.max_stable_lr


def check_step(
    eigenvalues: np.ndarray, rule: LinearRule, *, bound: str | None, strict: bool
) -> StepCheck | None:
    """Judge ``rule.lr`` on the effective kernel's ``eigenvalues`` (``ntkdyn.stability``):
    above the largest stable lr, one warning line on stderr, or with ``strict`` an error
    naming ``--optimizer``. None when the kernel is zero (no step is unstable on it)."""
    from ..dynamics import stability

    if float(eigenvalues.max()) <= 0.0:
        return None
    report = stability(eigenvalues, rule)
    check = StepCheck(rule.lr, report.max_stable_lr, bound)
    if check.stable:
        return check
    limit = (
        f"the largest stable lr {check.max_stable_lr:.6g} of {rule.name} on this kernel"
        if bound is None
        else f"{check.max_stable_lr:.6g}, the largest lr of {rule.name} stable for every "
        f"curvature up to the loss's bound {bound}"
    )
    what = f"lr {check.lr:.6g} is {check.factor:.4g}x {limit}"
    if strict:
        raise UsageError(f"`--optimizer` {rule.spec}: {what} (--strict); lower lr")
    outcome = (
        "the predicted loss grows without bound" if bound is None else "the prediction may diverge"
    )
    print(
        f"ntkdyn: warning: `--optimizer` {rule.spec}: {what}; {outcome} (--strict: an error)",
        file=sys.stderr,
    )
    return check


def floor_note(step: int, floor: float, last: float) -> str:
    """What the command says when a curve is cut at the float64 floor."""
    return (
        f"curve stops at step {step}: below the float64 floor {floor:.3g} "
        f"(c/2 nC (eps max|T|)^2, docs/mathematics.md §9.4); the exact recurrence goes on to "
        f"{last:.3g}, which no float64 network can show"
    )


def print_stability(rows, optimal, crossover) -> None:
    """The stable-lr table of ``ntkdyn kernel``, then the optimal GD/HB parameters and the
    scheduled-Nesterov crossover when given (None: left out)."""
    print(f"    {'optimizer':<28} {'max lr':>12} {'max h':>9}  bound")
    for r in rows:
        print(f"    {r.label:<28} {r.max_stable_lr:>12.6g} {r.max_stable_h:>9.6g}  {r.bound}")
    if optimal is not None:
        o = optimal
        print(f"  optimal GD: lr = {o.gd_lr:.6g}, error factor per step {o.gd_rate:.6g}")
        print(
            f"  optimal HB: lr = {o.hb_lr:.6g}, beta = {o.hb_beta:.6g}, "
            f"error factor per step {o.hb_rate:.6g}"
        )
    if crossover is not None:
        x = crossover
        print(
            f"  scheduled Nesterov (r = {x.r:g}, lr = {x.lr:g}, h0 = {x.h0:.3g}): "
            f"linear after step ~{x.step:.4g}, at L/L0 ~ {x.loss_rel:.3g}"
        )
