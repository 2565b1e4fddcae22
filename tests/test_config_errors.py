"""Configs: strict validation, every bad-config kind is a ValueError naming its field."""

from __future__ import annotations

import copy
import re

import pytest

from ntkdyn.experiments.config import load_config

from config_cases import base_dict

# --------------------------------------------------------------------------------------------
# Bad configs: ValueError naming the field.


def _bad(path, value):
    """Copy of base_dict with ``path`` (tuple of keys) set to value (or deleted: ...)."""
    cfg = copy.deepcopy(base_dict())
    node = cfg
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


E0 = ("experiment", 0)
BAD = {
    # unknown keys
    "unknown top key": (("nme",), "x", r"`nme` is not a known key"),
    "unknown experiment key": (
        E0 + ("widht",),
        [8],
        r"`experiment\[0\]\.widht` is not a known key \(did you mean `widths`",
    ),
    "unknown defaults key": (("defaults", "lr"), 0.1, r"`defaults\.lr` is not a known key"),
    "unknown grid key": (
        E0 + ("grid", 0, "bta"),
        [0.1],
        r"`experiment\[0\]\.grid\[0\]\.bta` is not a known key",
    ),
    "unknown optimizer param": (
        E0 + ("optimizers",),
        ["hb:lr=0.1,bta=0.9"],
        r"`experiment\[0\]\.optimizers\[0\]`: `bta` is not a parameter of hb",
    ),
    # wrong types
    "widths not a list": (
        E0 + ("widths",),
        "64",
        r"`experiment\[0\]\.widths` must be a non-empty list of positive ints, got '64'",
    ),
    "width zero": (
        E0 + ("widths",),
        [0, 8],
        r"`experiment\[0\]\.widths` must be a non-empty list of positive ints, got \[0, 8\]",
    ),
    "width bool": (E0 + ("widths",), [True], r"`experiment\[0\]\.widths` must be"),
    "width float": (E0 + ("widths",), [8.0], r"`experiment\[0\]\.widths` must be"),
    "seeds negative": (
        E0 + ("seeds",),
        [-1],
        r"`experiment\[0\]\.seeds` must be a non-empty list of ints >= 0",
    ),
    "steps zero": (
        ("defaults", "steps"),
        0,
        r"`experiment\[0\]\.steps` must be an integer >= 1, got 0",
    ),
    "steps float": (
        ("defaults", "steps"),
        2.5,
        r"`experiment\[0\]\.steps` must be an integer >= 1",
    ),
    "n zero": (("defaults", "n"), 0, r"`experiment\[0\]\.n` must be an integer >= 1"),
    "data_seed string": (
        E0 + ("data_seed",),
        "0",
        r"`experiment\[0\]\.data_seed` must be an integer >= 0",
    ),
    "predict string": (
        E0 + ("predict",),
        "yes",
        r"`experiment\[0\]\.predict` must be true or false",
    ),
    "diagnostics zero": (
        E0 + ("diagnostics_every",),
        0,
        r"`experiment\[0\]\.diagnostics_every` must be an integer >= 1",
    ),
    "title number": (E0 + ("title",), 3, r"`experiment\[0\]\.title` must be a string"),
    "name missing": (("name",), ..., r"`name` is required"),
    "name empty": (("name",), "", r"`name` must be a non-empty string"),
    "optimizers not list": (
        E0 + ("optimizers",),
        "gd:lr=0.1",
        r"`experiment\[0\]\.optimizers` must be a list",
    ),
    "optimizer spec number": (
        E0 + ("optimizers",),
        [0.1],
        r"`experiment\[0\]\.optimizers\[0\]` must be a spec",
    ),
    "grid value string": (
        E0 + ("grid", 0, "r"),
        ["3"],
        r"`experiment\[0\]\.grid\[0\]\.r` must be a number, got '3'",
    ),
    "grid not tables": (E0 + ("grid",), [3], r"`experiment\[0\]\.grid\[0\]` must be a table"),
    "experiment not list": (("experiment",), {}, r"`experiment` must hold at least one"),
    # lr <= 0 and other optimizer ranges (through optim.parse, prefixed with the path)
    "lr zero": (
        E0 + ("optimizers",),
        ["gd:lr=0"],
        r"`experiment\[0\]\.optimizers\[0\]`: `lr` must be",
    ),
    "lr negative in grid": (
        E0 + ("grid", 0, "lr"),
        [0.1, -0.1],
        r"`experiment\[0\]\.grid\[0\]`: `lr` must be",
    ),
    "lr missing": (
        E0 + ("optimizers",),
        ["hb:beta=0.9"],
        r"`experiment\[0\]\.optimizers\[0\]`: `lr` is required",
    ),
    "lr missing in grid": (
        E0 + ("grid", 0, "lr"),
        ...,
        r"`experiment\[0\]\.grid\[0\]\.lr` is required",
    ),
    "beta out of range": (
        E0 + ("optimizers",),
        ["hb:lr=0.1,beta=1.5"],
        r"`experiment\[0\]\.optimizers\[0\]`: `beta` must lie in",
    ),
    "critical on gd": (
        E0 + ("optimizers",),
        ["gd:lr=critical"],
        r"`experiment\[0\]\.optimizers\[0\]\.lr` = 'critical' is allowed only for",
    ),
    "hmax on beta": (
        E0 + ("optimizers",),
        ["hb:lr=0.1,beta=hmax=1"],
        r"`experiment\[0\]\.optimizers\[0\]\.beta` = 'hmax=1'",
    ),
    "unknown optimizer": (
        E0 + ("optimizers",),
        ["sgd:lr=0.1"],
        r"`experiment\[0\]\.optimizers\[0\]` optimizer name 'sgd' is unknown",
    ),
    "unknown grid optimizer": (
        E0 + ("grid", 0, "optimizer"),
        "nag",
        r"`experiment\[0\]\.grid\[0\]\.optimizer` 'nag' is unknown",
    ),
    # empty grids
    "widths empty": (E0 + ("widths",), [], r"`experiment\[0\]\.widths` must be a non-empty list"),
    "seeds empty": (E0 + ("seeds",), [], r"`experiment\[0\]\.seeds` must be a non-empty list"),
    "grid axis empty": (
        E0 + ("grid", 0, "r"),
        [],
        r"`experiment\[0\]\.grid\[0\]\.r` is an empty list",
    ),
    "no optimizers": (E0 + ("grid",), [], None),  # completed below (needs two edits)
    "widths duplicated": (
        E0 + ("widths",),
        [8, 8],
        r"`experiment\[0\]\.widths` lists a value twice",
    ),
    # datasets
    "unknown dataset": (
        ("defaults", "data"),
        "imagenet",
        r"`experiment\[0\]\.data`: `data` name 'imagenet' is unknown",
    ),
    "bad dataset option": (
        ("defaults", "data"),
        "gaussian:k=3",
        r"`experiment\[0\]\.data`: `k` is not an option",
    ),
    "bad digits classes": (
        ("defaults", "data"),
        "digits:classes=3",
        r"`experiment\[0\]\.data` 'digits:classes=3': `classes`",
    ),
    "n too large": (("defaults", "data"), "digits:classes=3/8", None),  # completed below
    "mnist missing": (
        ("defaults", "data"),
        "mnist:/nonexistent/mnist",
        r"`experiment\[0\]\.data` mnist path '/nonexistent/mnist' does not exist",
    ),
    # choices
    "bad device": (
        E0 + ("device",),
        "gpu",
        r"`experiment\[0\]\.device` must be one of \['auto', 'cpu', 'cuda'\], got 'gpu'",
    ),
    "bad dtype": (E0 + ("dtype",), "float16", r"`experiment\[0\]\.dtype` must be one of"),
    "bad loss": (E0 + ("loss",), "l1", r"`experiment\[0\]\.loss` must be one of"),
    "bad mode": (E0 + ("mode",), "ntk", r"`experiment\[0\]\.mode` must be one of"),
    "bad id": (E0 + ("id",), "a b", r"`experiment\[0\]\.id` must match"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_config_names_the_field(case):
    path, value, pattern = BAD[case]
    cfg = _bad(path, value)
    if case == "no optimizers":
        cfg["experiment"][0]["optimizers"] = []
        pattern = r"`experiment\[0\]\.optimizers` and `experiment\[0\]\.grid` are both empty"
    if case == "n too large":
        cfg["defaults"]["n"] = 5000
        pattern = r"`experiment\[0\]\.data` 'digits:classes=3/8': `n` = 5000 exceeds"
    with pytest.raises(ValueError, match=pattern):
        load_config(cfg)


def test_duplicate_experiment_ids():
    cfg = base_dict()
    cfg["experiment"].append(copy.deepcopy(cfg["experiment"][0]))
    pattern = r"`experiment\[1\]\.id` 'A' is already used by `experiment\[0\]`"
    with pytest.raises(ValueError, match=pattern):
        load_config(cfg)


def test_experiment_required_keys():
    for key in ("id", "widths"):
        cfg = _bad(E0 + (key,), ...)
        with pytest.raises(ValueError, match=rf"`experiment\[0\]\.{key}` is required"):
            load_config(cfg)


def test_mnist_folder_without_images_is_refused(tmp_path):
    cfg = _bad(("defaults", "data"), f"mnist:{tmp_path}")
    with pytest.raises(ValueError, match=r"`experiment\[0\]\.data` mnist folder .* holds no"):
        load_config(cfg)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"`config` is not valid TOML"):
        load_config("name = \n[[experiment]]")
    with pytest.raises(ValueError, match=r"`config` file .* cannot be read"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "key,value,field",
    [
        ("data", [], "experiment[0].data"),
        ("mode", ["theory", "notebok"], "experiment[0].mode"),
    ],
)
def test_bad_grid_lists_name_the_field(key, value, field):
    from ntkdyn.experiments.config import load_config as load

    table = {
        "id": "B",
        "data": "synthetic",
        "widths": [8],
        "steps": 5,
        "optimizers": ["gd:lr=0.1"],
        key: value,
    }
    with pytest.raises(ValueError, match=re.escape(f"`{field}")):
        load({"name": "bad", "experiment": [table]})
