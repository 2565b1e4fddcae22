"""The base config of the config tests, as TOML text and as a dict (the same config), and the
smallest valid config the bad-input tests start from."""

from __future__ import annotations

BASE = """
name = "base"
[defaults]
data = "gaussian:d=5"
n = 10
steps = 50
[[experiment]]
id = "A"
widths = [8, 16]
seeds = [0, 1]
optimizers = ["gd:lr=0.1", "hb:lr=0.1,beta=0.9"]
[[experiment.grid]]
optimizer = "nesterov"
lr = [0.1, 0.05]
r = [2, 3]
"""


def base_dict() -> dict:
    return {
        "name": "base",
        "defaults": {"data": "gaussian:d=5", "n": 10, "steps": 50},
        "experiment": [
            {
                "id": "A",
                "widths": [8, 16],
                "seeds": [0, 1],
                "optimizers": ["gd:lr=0.1", "hb:lr=0.1,beta=0.9"],
                "grid": [{"optimizer": "nesterov", "lr": [0.1, 0.05], "r": [2, 3]}],
            }
        ],
    }


#: The smallest valid sweep (one run of 2 steps): the bad-input tests break one field of it.
OK_TOML = """
name = "t"
[[experiment]]
id = "A"
data = "gaussian:d=5"
n = 4
widths = [8]
steps = 2
optimizers = ["gd:lr=0.1"]
"""
