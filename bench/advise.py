"""Benchmark: ``ntkdyn advise`` on the embedded digits data, without ``--verify``.

Run as ``python bench/advise.py [--n 200] [--width 4096] [--repeats 2]``. Times, in one process:

* the baseline: one ``kernel_at_init`` of the seeded theory-mode network (the empirical NTK at
  initialisation and its eigendecomposition), which every advice starts from;
* ``advise(..., probe_steps=0)``: kernel and hyperparameter search, no probe;
* ``advise(...)`` with the default probe (30 steps per candidate on the real network);

and prints each time as a ratio to the baseline, the components of the full advice (kernel,
search, probe: ``Advice.timings``), and the wall time of the
command itself (``python -m ntkdyn.cli advise ...``, start-up and data loading included) against
the issue's target of 10 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from _common import best_time, cpu_model

from ntkdyn import load_dataset
from ntkdyn.advisor import advise
from ntkdyn.models import seeded_network
from ntkdyn.prediction import kernel_at_init

#: The issue's target for the whole command on the embedded digits data (seconds).
TARGET_SECONDS = 10.0
DATA = "digits:classes=3/8"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    data = load_dataset(DATA, n=args.n)
    net = seeded_network(data.d, args.width, seed=0)
    print(f"{DATA}, n = {data.n}, d = {data.d}, width {args.width}, float64")

    kernel_s, _ = best_time(lambda: kernel_at_init(net, data, "half-sum"), "cpu", args.repeats)
    bare_s, _ = best_time(
        lambda: advise(data, width=args.width, probe_steps=0), "cpu", args.repeats
    )
    full_s, advice = best_time(lambda: advise(data, width=args.width), "cpu", args.repeats)
    assert advice is not None
    print(f"  baseline kernel_at_init       {kernel_s:8.3f} s   1.00x")
    print(f"  advise, no probe              {bare_s:8.3f} s   {bare_s / kernel_s:5.2f}x")
    print(f"  advise, probe 30 steps        {full_s:8.3f} s   {full_s / kernel_s:5.2f}x")
    parts = advice.timings  # the full advice's own stage timings
    search = sum(v for k, v in parts.items() if k.startswith("search"))
    probe = sum(v for k, v in parts.items() if k.startswith("probe"))
    print("  components (the full advice's own stage timings):")
    print(f"    kernel  {parts.get('kernel', float('nan')):8.3f} s")
    print(f"    search  {search:8.3f} s")
    print(f"    probe   {probe:8.3f} s   ({len(advice.candidates)} candidates)")

    command = [
        sys.executable, "-m", "ntkdyn.cli", "advise", "--data", DATA,
        "--n", str(args.n), "--width", str(args.width),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    verdict = "meets" if wall < TARGET_SECONDS else "MISSES"
    print(
        f"  command wall time             {wall:8.3f} s   {verdict} the {TARGET_SECONDS:g} s target"
    )
    best = advice.best()
    if best is not None:
        print(f"  advised: {best.rule.spec}, {best.predicted_steps} predicted steps")


if __name__ == "__main__":
    main()
