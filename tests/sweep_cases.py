"""The tiny sweep config shared by the sweep tests (run once, by the ``tiny`` fixture in
conftest.py)."""

from __future__ import annotations

TINY = """
name = "tiny"
[[experiment]]
id = "T"
mode = "theory"
data = "gaussian:d=5"
n = 10
widths = [64, 128]
seeds = [0, 1]
steps = 200
optimizers = ["gd:lr=0.5", "hb:lr=0.5,beta=critical", "nesterov:lr=0.5,r=3"]
"""
