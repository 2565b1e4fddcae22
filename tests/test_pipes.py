"""A reader that goes away (``ntkdyn ... | head -1``) never turns into success: the work is
finished and stored, progress goes quiet, and the exit code is 141 (128 + SIGPIPE)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from ntkdyn.cli import EXIT_BROKEN_PIPE
from ntkdyn.experiments.store import STORE_NAME

CONFIG = """
name = "pipe"
[[experiment]]
id = "P"
data = "gaussian:d=5"
n = 10
widths = [32, 64]
seeds = [0, 1, 2]
steps = 300
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=0.6"]
"""
RUNS = 12


def _first_line_then_close(args: list[str], lines: int = 1) -> int:
    """Run ``ntkdyn ARGS`` with stdout and stderr into one pipe, read ``lines`` lines, close
    it. With ``lines = 0`` the reader is gone before the command writes anything (a short
    output read later could sit whole in the pipe's buffer, which no program can tell from
    a complete read)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ntkdyn.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    for _ in range(lines):
        proc.stdout.readline()
    proc.stdout.close()
    return proc.wait(timeout=300)


def test_a_sweep_piped_into_head_finishes_stores_and_says_it_was_cut(tmp_path):
    cfg = tmp_path / "pipe.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert _first_line_then_close(["sweep", str(cfg), "--out", str(out)]) == EXIT_BROKEN_PIPE
    con = sqlite3.connect(out / STORE_NAME)
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == RUNS
    con.close()
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["kernel", "--data", "gaussian:d=5", "--n", "20", "--json"],
        ["--help"],
    ],
)
def test_truncated_output_is_not_success(args):
    assert _first_line_then_close(args, lines=0) == EXIT_BROKEN_PIPE


def test_output_read_to_the_end_is_success(tmp_path):
    """The check can fail the other way: a reader that takes everything gets exit code 0."""
    done = subprocess.run(
        [sys.executable, "-m", "ntkdyn.cli", "kernel", "--data", "gaussian:d=5", "--n", "20"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout
