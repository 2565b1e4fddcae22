"""Benchmark: start-up time of the ``ntkdyn`` command.

Run as ``python bench/bench_startup.py [--runs 15]``. Times, as the median wall time of
``--runs`` fresh subprocesses each, ``python -m ntkdyn.cli --version`` and the installed
``ntkdyn --version`` console script against two baselines measured in the same session:
``python -c pass`` (the interpreter alone) and ``python -c "import numpy"``. It prints each
median and its ratio to the baselines. The target is ``ntkdyn --version`` under 0.5 s on a
2-core machine, which holds only while the parser imports no torch, scipy or matplotlib
(tests/test_cli.py checks the imports; this script only measures, it asserts nothing).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5


def median_wall_time(argv: list[str], runs: int) -> float:
    """Median seconds of ``runs`` runs of ``argv`` (one warm-up run first, not counted)."""
    subprocess.run(argv, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    args = parser.parse_args(argv)
    python = sys.executable
    baselines = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import numpy'": [python, "-c", "import numpy"],
    }
    commands = {"python -m ntkdyn.cli --version": [python, "-m", "ntkdyn.cli", "--version"]}
    script = shutil.which("ntkdyn")
    if script is None:
        print("ntkdyn console script not on PATH: skipped")
    else:
        commands["ntkdyn --version"] = [script, "--version"]
    base = {name: median_wall_time(cmd, args.runs) for name, cmd in baselines.items()}
    for name, seconds in base.items():
        print(f"{name:<34} {seconds * 1000:8.1f} ms")
    pass_s, numpy_s = base.values()
    for name, cmd in commands.items():
        seconds = median_wall_time(cmd, args.runs)
        verdict = "meets" if seconds < TARGET_S else "misses"
        print(
            f"{name:<34} {seconds * 1000:8.1f} ms   {seconds / pass_s:5.2f}x bare python, "
            f"{seconds / numpy_s:5.2f}x numpy import; {verdict} the {TARGET_S:g} s target"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
