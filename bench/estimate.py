"""The dry-run estimate against the measured sweep: ``python bench/estimate.py``.

For a reduced slice of the ``paper`` preset (every experiment kept, its steps divided by
``--divisor``, seeds cut to ``--seeds``, the theory ladders to their first three widths) and
for the ``quick`` preset (or ``--quick-divisor`` of its steps), prints the time ``plan_sweep``
projects, then runs ``run_sweep`` on it (silent, into a temporary directory) and prints the
measured time and the ratio measured / projected (target: within 30%, i.e. 0.77..1.3).
With ``--workers N`` (the ``distributed`` extra installed) the paper slice also runs on a local
Dask cluster of N workers and is compared with the projection for N single-thread workers.
Then prints the projection of the whole ``paper`` and ``theory`` presets on this machine.
The calibration is the library's own (constants from its calibration runs only).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import torch

# bench/ goes after site-packages, where Python put it first: bench/distributed.py must not
# pass for the `distributed` package
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]
from _common import cpu_model  # noqa: E402

from ntkdyn.experiments import Backend, load_config, run_sweep  # noqa: E402
from ntkdyn.experiments.estimate import plan_sweep  # noqa: E402
from ntkdyn.experiments.presets import get_preset, preset_dict  # noqa: E402

#: The 30% target of the issue, as a ratio band.
TARGET = 0.3


def paper_slice(divisor: int, seeds: int) -> dict:
    """The ``paper`` preset with steps / ``divisor``, ``seeds`` seeds, ladders of 3 widths."""
    raw = preset_dict("paper")
    raw["name"] = f"paper-slice-{divisor}"
    for exp in raw["experiment"]:
        exp["steps"] = max(exp["steps"] // divisor, 2)
        exp["seeds"] = exp["seeds"][:seeds]
        if exp["kind"] == "theory-ladder":
            exp["widths"] = exp["widths"][:3]
        if "diagnostics_every" in exp:
            exp["diagnostics_every"] = max(exp["diagnostics_every"] // divisor, 1)
    return raw


def quick_slice(divisor: int) -> dict:
    """The ``quick`` preset with steps / ``divisor`` (1: the preset itself)."""
    raw = preset_dict("quick")
    if divisor > 1:
        raw["name"] = f"quick-slice-{divisor}"
        for exp in raw["experiment"]:
            exp["steps"] = max(exp["steps"] // divisor, 2)
            if "diagnostics_every" in exp:
                exp["diagnostics_every"] = max(exp["diagnostics_every"] // divisor, 1)
    return raw


def compare(name: str, raw: dict, workers: int = 1) -> float:
    """Projection, measurement and their ratio for one config (on a local Dask cluster of
    ``workers`` workers when > 1); returns the ratio."""
    config = load_config(raw)
    start = time.perf_counter()
    plan = plan_sweep(config, workers=workers)
    planned = time.perf_counter() - start
    projected = plan.parallel_seconds if workers > 1 else plan.seconds
    assert projected is not None
    where = f"{workers} Dask workers" if workers > 1 else "local backend"
    print(
        f"{name}, {where}: {plan.total_runs} runs in {len(plan.batches)} batches; projected "
        f"{projected:.1f} s (planning with calibration took {planned:.1f} s)",
        flush=True,
    )
    backend = Backend("dask", workers=workers) if workers > 1 else "local"
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_sweep(config, out, progress=False, backend=backend)
        measured = time.perf_counter() - start
    ratio = measured / projected
    ok = "within" if abs(ratio - 1) <= TARGET else "OUTSIDE"
    print(
        f"{name}, {where}: measured {measured:.1f} s; measured / projected = {ratio:.2f} "
        f"({ok} {TARGET:.0%})",
        flush=True,
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divisor", type=int, default=50, help="paper slice: steps / this")
    parser.add_argument("--seeds", type=int, default=1, help="paper slice: seeds kept")
    parser.add_argument("--quick-divisor", type=int, default=10, help="quick: steps / this")
    parser.add_argument("--workers", type=int, default=1, help="also on N Dask workers")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the presets' expected warnings (HOM b1 + b2 = 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, ")
    print(f"{torch.get_num_threads()} threads, load {load:.1f}")
    compare(
        f"paper slice (steps / {args.divisor}, {args.seeds} seeds)",
        paper_slice(args.divisor, args.seeds),
    )
    if args.workers > 1:
        compare(
            f"paper slice (steps / {args.divisor}, {args.seeds} seeds)",
            paper_slice(args.divisor, args.seeds),
            workers=args.workers,
        )
    compare(f"quick (steps / {args.quick_divisor})", quick_slice(args.quick_divisor))
    for name in ("paper", "theory"):
        plan = plan_sweep(get_preset(name))
        print(f"whole {name!r} preset projected here: {plan.seconds:.0f} s", flush=True)
        print(plan.text())


if __name__ == "__main__":
    main()
