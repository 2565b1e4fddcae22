"""Configs: strict validation (every bad-config kind names its field), expansion, stable ids,
data-driven parameters against docs/mathematics.md 6, and the CLI's exit code 2 with nothing written."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest

from ntkdyn.cli import main
from ntkdyn.experiments.config import (
    DataCache,
    config_dict,
    expand_runs,
    load_config,
    run_id,
)

#: docs/mathematics.md 6: n = 20 Gaussian rows in R^5, lambda_0 = lambda_min(H^inf) = 0.04473; with
#: lr = 0.1 the critical beta 1 - 2 sqrt(lambda_0 lr) is 0.8662 (4 digits quoted).
MATH6_LAMBDA0 = 0.04473
MATH6_BETA = 0.8662
MATH6_DIGITS_TOL = 5e-5
#: Resolved values are rounded to 12 significant digits (config.RESOLVED_DIGITS).
RESOLVED_RTOL = 1e-11

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


def h_inf(X: np.ndarray) -> np.ndarray:
    """docs/mathematics.md §1.2, written out independently of ntkdyn.kernels."""
    S = X @ X.T
    norms = np.sqrt(np.outer(np.diag(S), np.diag(S)))
    theta = np.arccos(np.clip(S / norms, -1.0, 1.0))
    np.fill_diagonal(theta, 0.0)  # theta_ii = 0 exactly (arccos(1 - eps) ~ sqrt(2 eps) is not)
    return S * (np.pi - theta) / (2 * np.pi)


def unit_gaussian(n: int, d: int, seed: int) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n, d))  # data.py's gaussian source
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Valid configs.


def test_toml_text_dict_and_file_give_the_same_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(BASE)
    a, b, c = load_config(BASE), load_config(base_dict()), load_config(path)
    assert a == b == c
    assert load_config(str(path)) == a
    exp = a.experiments[0]
    assert (exp.data, exp.n, exp.steps, exp.mode, exp.loss, exp.dtype, exp.device) == (
        "gaussian:d=5",
        10,
        50,
        "theory",
        "half-sum",
        "float64",
        "auto",
    )
    assert exp.predict is True  # theory mode default
    # the grid is a product with lr first, in the order the values are given
    assert [o.spec for o in exp.optimizers] == [
        "gd:lr=0.1", "hb:lr=0.1,beta=0.9",
        "nesterov:lr=0.1,r=2.0", "nesterov:lr=0.1,r=3.0",
        "nesterov:lr=0.05,r=2.0", "nesterov:lr=0.05,r=3.0",
    ]  # fmt: skip


def test_expansion_order_count_and_run_config():
    runs = expand_runs(BASE)
    assert len(runs) == 6 * 2 * 2
    assert len({r.id for r in runs}) == len(runs)
    first = runs[0]
    assert first.config == {
        "experiment": "A", "mode": "theory", "data": "gaussian:d=5", "n": 10, "data_seed": 0,
        "loss": "half-sum", "width": 8, "seed": 0, "optimizer": "gd:lr=0.1", "steps": 50,
        "dtype": "float64", "device": "auto", "predict": True, "diagnostics_every": None,
    }  # fmt: skip
    assert first.id == run_id(first.config) and len(first.id) == 16
    assert [(r.width, r.seed) for r in runs[:4]] == [(8, 0), (8, 1), (16, 0), (16, 1)]
    # the optimizer in the run config is the rule's canonical spec: parse(spec) == rule
    from ntkdyn.optim import parse

    assert all(parse(r.config["optimizer"]) == r.rule for r in runs)


def test_grid_may_override_predict_and_diagnostics():
    cfg = base_dict()
    cfg["experiment"][0]["grid"][0].update(predict=False, diagnostics_every=10)
    runs = expand_runs(cfg)
    nag = [r for r in runs if r.config["optimizer"].startswith("nesterov")]
    other = [r for r in runs if not r.config["optimizer"].startswith("nesterov")]
    assert all(not r.config["predict"] and r.config["diagnostics_every"] == 10 for r in nag)
    assert all(r.config["predict"] and r.config["diagnostics_every"] is None for r in other)


def test_defaults_are_overridden_by_the_experiment():
    cfg = base_dict()
    cfg["experiment"][0]["steps"] = 7
    assert load_config(cfg).experiments[0].steps == 7


# --------------------------------------------------------------------------------------------
# Stable ids.

REORDERED = """
[[experiment]]
optimizers = ["gd:lr=0.1", "hb:beta=0.9,lr=0.1"]
seeds = [0, 1]
widths = [8, 16]
id = "A"
[[experiment.grid]]
r = [2, 3]
lr = [0.1, 0.05]
optimizer = "nesterov"

[defaults]
steps = 50
n = 10
data = "gaussian:d=5"
"""


def test_reordering_keys_does_not_change_ids():
    text = 'name = "base"\n' + REORDERED
    assert {r.id for r in expand_runs(text)} == {r.id for r in expand_runs(BASE)}
    # numerically equal spellings of a value give the same canonical spec and id
    cfg = base_dict()
    cfg["experiment"][0]["optimizers"] = ["gd:lr=1e-1", "hb:lr=0.10,beta=9e-1"]
    assert {r.id for r in expand_runs(cfg)} == {r.id for r in expand_runs(BASE)}


CHANGES = {
    "width": lambda e: e.update(widths=[8, 17]),
    "seed": lambda e: e.update(seeds=[0, 2]),
    "steps": lambda e: e.update(steps=51),
    "n": lambda e: e.update(n=11),
    "data_seed": lambda e: e.update(data_seed=1),
    "data": lambda e: e.update(data="gaussian:d=4"),
    "loss": lambda e: e.update(loss="mse"),
    "dtype": lambda e: e.update(dtype="float32"),
    "device": lambda e: e.update(device="cpu"),
    "mode": lambda e: e.update(mode="notebook"),
    "predict": lambda e: e.update(predict=False),
    "diagnostics_every": lambda e: e.update(diagnostics_every=5),
    "experiment id": lambda e: e.update(id="B"),
    "lr": lambda e: e.update(optimizers=["gd:lr=0.11", "hb:lr=0.11,beta=0.9"], grid=[]),
    "beta": lambda e: e.update(optimizers=["gd:lr=0.1", "hb:lr=0.1,beta=0.91"]),
    "r": lambda e: e["grid"][0].update(r=[2.5, 3.5]),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_changing_any_value_changes_the_ids(change):
    import json

    cfg = base_dict()
    exp = cfg["experiment"][0]
    exp.update(cfg.pop("defaults"))  # every value on the experiment itself
    before = {json.dumps(r.config, sort_keys=True): r.id for r in expand_runs(cfg)}
    CHANGES[change](exp)
    after = expand_runs(cfg)
    changed = 0
    for r in after:
        key = json.dumps(r.config, sort_keys=True)
        if key in before:  # an unchanged run keeps its id
            assert r.id == before[key]
        else:  # a changed run gets an id no run had before
            assert r.id not in before.values()
            changed += 1
    assert changed > 0


def test_config_dict_is_json_and_stable():
    import json

    a = json.dumps(config_dict(load_config(BASE)), sort_keys=True)
    b = json.dumps(config_dict(load_config('name = "base"\n' + REORDERED)), sort_keys=True)
    assert a == b


# --------------------------------------------------------------------------------------------
# Data-driven parameters (docs/mathematics.md 0, 4, 6).


def test_critical_beta_is_math_md_section6_value():
    cfg = {"name": "c", "experiment": [{
        "id": "E", "data": "gaussian:d=5", "n": 20, "widths": [8], "steps": 5,
        "optimizers": ["hb:lr=0.1,beta=critical", "nesterov-sc:lr=0.1,beta=critical"],
        "grid": [{"optimizer": "hom", "lr": 0.1, "b1": "critical", "b2": [0.2]}],
    }]}  # fmt: skip
    hb, nsc, hom = expand_runs(cfg)
    lam0 = np.linalg.eigvalsh(h_inf(unit_gaussian(20, 5, 0)))[0]
    assert abs(lam0 - MATH6_LAMBDA0) < MATH6_DIGITS_TOL
    expected = 1 - 2 * math.sqrt(lam0 * 0.1)
    assert abs(hb.rule.beta - MATH6_BETA) < MATH6_DIGITS_TOL
    assert hb.rule.beta == pytest.approx(expected, rel=RESOLVED_RTOL)
    assert nsc.rule.beta == hb.rule.beta
    # HOM: b1 + b2 equals HB's critical beta (docs/mathematics.md 6: (beta - 0.2, 0.2))
    assert (hom.rule.b1, hom.rule.b2) == (pytest.approx(expected - 0.2, rel=RESOLVED_RTOL), 0.2)
    assert "beta=0.8662" in hb.config["optimizer"]  # the number is recorded, not "critical"


def test_critical_beta_uses_the_loss_factor_and_lr_targets_h():
    n, lr = 20, 2.0
    cfg = {"name": "c", "experiment": [{
        "id": "E", "data": "gaussian:d=5", "n": n, "loss": "mse", "widths": [8], "steps": 5,
        "optimizers": [f"hb:lr={lr},beta=critical", "gd:lr=hmax=0.5", "gd:lr=h0=0.01"],
    }]}  # fmt: skip
    hb, gd_max, gd_0 = expand_runs(cfg)
    ev = np.linalg.eigvalsh(h_inf(unit_gaussian(n, 5, 0))) * 2.0 / n  # K = (2/n) H (docs/mathematics.md §7.1)
    assert hb.rule.beta == pytest.approx(1 - 2 * math.sqrt(ev[0] * lr), rel=RESOLVED_RTOL)
    assert gd_max.rule.lr * ev[-1] == pytest.approx(0.5, rel=RESOLVED_RTOL)
    assert gd_0.rule.lr * ev[0] == pytest.approx(0.01, rel=RESOLVED_RTOL)


def test_critical_beta_out_of_range_names_the_field():
    cfg = {"name": "c", "experiment": [{
        "id": "E", "data": "gaussian:d=5", "n": 20, "widths": [8], "steps": 5,
        "optimizers": ["gd:lr=0.1", "hb:lr=100,beta=critical"],
    }]}  # fmt: skip
    with pytest.raises(ValueError, match=r"`experiment\[0\]\.optimizers\[1\]\.beta` = 'critical'"):
        expand_runs(cfg)


def test_duplicate_runs_are_rejected():
    cfg = base_dict()
    cfg["experiment"][0]["optimizers"].append("gd:lr=0.10")
    with pytest.raises(ValueError, match=r"`experiment\[0\]\.optimizers\[2\]` repeats the run"):
        expand_runs(cfg)


def test_data_cache_shares_h_inf_per_data_key():
    cache = DataCache()
    runs = expand_runs(BASE, cache=cache)
    spec = runs[0].data_spec
    assert all(r.data_spec.key == spec.key for r in runs)
    s = cache.spectrum(spec)
    assert cache.spectrum(spec) is s
    np.testing.assert_allclose(
        s.eigenvalues, np.linalg.eigvalsh(h_inf(unit_gaussian(10, 5, 0))), rtol=1e-12, atol=1e-15
    )


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
    "unknown experiment key": (E0 + ("widht",), [8],
        r"`experiment\[0\]\.widht` is not a known key \(did you mean `widths`"),
    "unknown defaults key": (("defaults", "lr"), 0.1, r"`defaults\.lr` is not a known key"),
    "unknown grid key": (E0 + ("grid", 0, "bta"), [0.1],
        r"`experiment\[0\]\.grid\[0\]\.bta` is not a known key"),
    "unknown optimizer param": (E0 + ("optimizers",), ["hb:lr=0.1,bta=0.9"],
        r"`experiment\[0\]\.optimizers\[0\]`: `bta` is not a parameter of hb"),
    # wrong types
    "widths not a list": (E0 + ("widths",), "64",
        r"`experiment\[0\]\.widths` must be a non-empty list of positive ints, got '64'"),
    "width zero": (E0 + ("widths",), [0, 8],
        r"`experiment\[0\]\.widths` must be a non-empty list of positive ints, got \[0, 8\]"),
    "width bool": (E0 + ("widths",), [True], r"`experiment\[0\]\.widths` must be"),
    "width float": (E0 + ("widths",), [8.0], r"`experiment\[0\]\.widths` must be"),
    "seeds negative": (E0 + ("seeds",), [-1],
        r"`experiment\[0\]\.seeds` must be a non-empty list of ints >= 0"),
    "steps zero": (("defaults", "steps"), 0,
        r"`experiment\[0\]\.steps` must be an integer >= 1, got 0"),
    "steps float": (("defaults", "steps"), 2.5,
        r"`experiment\[0\]\.steps` must be an integer >= 1"),
    "n zero": (("defaults", "n"), 0, r"`experiment\[0\]\.n` must be an integer >= 1"),
    "data_seed string": (E0 + ("data_seed",), "0",
        r"`experiment\[0\]\.data_seed` must be an integer >= 0"),
    "predict string": (E0 + ("predict",), "yes",
        r"`experiment\[0\]\.predict` must be true or false"),
    "diagnostics zero": (E0 + ("diagnostics_every",), 0,
        r"`experiment\[0\]\.diagnostics_every` must be an integer >= 1"),
    "title number": (E0 + ("title",), 3, r"`experiment\[0\]\.title` must be a string"),
    "name missing": (("name",), ..., r"`name` is required"),
    "name empty": (("name",), "", r"`name` must be a non-empty string"),
    "optimizers not list": (E0 + ("optimizers",), "gd:lr=0.1",
        r"`experiment\[0\]\.optimizers` must be a list"),
    "optimizer spec number": (E0 + ("optimizers",), [0.1],
        r"`experiment\[0\]\.optimizers\[0\]` must be a spec"),
    "grid value string": (E0 + ("grid", 0, "r"), ["3"],
        r"`experiment\[0\]\.grid\[0\]\.r` must be a number, got '3'"),
    "grid not tables": (E0 + ("grid",), [3], r"`experiment\[0\]\.grid\[0\]` must be a table"),
    "experiment not list": (("experiment",), {}, r"`experiment` must hold at least one"),
    # lr <= 0 and other optimizer ranges (through optim.parse, prefixed with the path)
    "lr zero": (E0 + ("optimizers",), ["gd:lr=0"],
        r"`experiment\[0\]\.optimizers\[0\]`: `lr` must be"),
    "lr negative in grid": (E0 + ("grid", 0, "lr"), [0.1, -0.1],
        r"`experiment\[0\]\.grid\[0\]`: `lr` must be"),
    "lr missing": (E0 + ("optimizers",), ["hb:beta=0.9"],
        r"`experiment\[0\]\.optimizers\[0\]`: `lr` is required"),
    "lr missing in grid": (E0 + ("grid", 0, "lr"), ...,
        r"`experiment\[0\]\.grid\[0\]\.lr` is required"),
    "beta out of range": (E0 + ("optimizers",), ["hb:lr=0.1,beta=1.5"],
        r"`experiment\[0\]\.optimizers\[0\]`: `beta` must lie in"),
    "critical on gd": (E0 + ("optimizers",), ["gd:lr=critical"],
        r"`experiment\[0\]\.optimizers\[0\]\.lr` = 'critical' is allowed only for"),
    "hmax on beta": (E0 + ("optimizers",), ["hb:lr=0.1,beta=hmax=1"],
        r"`experiment\[0\]\.optimizers\[0\]\.beta` = 'hmax=1'"),
    "unknown optimizer": (E0 + ("optimizers",), ["sgd:lr=0.1"],
        r"`experiment\[0\]\.optimizers\[0\]` optimizer name 'sgd' is unknown"),
    "unknown grid optimizer": (E0 + ("grid", 0, "optimizer"), "nag",
        r"`experiment\[0\]\.grid\[0\]\.optimizer` 'nag' is unknown"),
    # empty grids
    "widths empty": (E0 + ("widths",), [], r"`experiment\[0\]\.widths` must be a non-empty list"),
    "seeds empty": (E0 + ("seeds",), [], r"`experiment\[0\]\.seeds` must be a non-empty list"),
    "grid axis empty": (E0 + ("grid", 0, "r"), [],
        r"`experiment\[0\]\.grid\[0\]\.r` is an empty list"),
    "no optimizers": (E0 + ("grid",), [], None),  # completed below (needs two edits)
    "widths duplicated": (E0 + ("widths",), [8, 8],
        r"`experiment\[0\]\.widths` lists a value twice"),
    # datasets
    "unknown dataset": (("defaults", "data"), "imagenet",
        r"`experiment\[0\]\.data`: `data` name 'imagenet' is unknown"),
    "bad dataset option": (("defaults", "data"), "gaussian:k=3",
        r"`experiment\[0\]\.data`: `k` is not an option"),
    "bad digits classes": (("defaults", "data"), "digits:classes=3",
        r"`experiment\[0\]\.data` 'digits:classes=3': `classes`"),
    "n too large": (("defaults", "data"), "digits:classes=3/8", None),  # completed below
    "mnist missing": (("defaults", "data"), "mnist:/nonexistent/mnist",
        r"`experiment\[0\]\.data` mnist path '/nonexistent/mnist' does not exist"),
    # choices
    "bad device": (E0 + ("device",), "gpu",
        r"`experiment\[0\]\.device` must be one of \['auto', 'cpu', 'cuda'\], got 'gpu'"),
    "bad dtype": (E0 + ("dtype",), "float16", r"`experiment\[0\]\.dtype` must be one of"),
    "bad loss": (E0 + ("loss",), "l1", r"`experiment\[0\]\.loss` must be one of"),
    "bad mode": (E0 + ("mode",), "ntk", r"`experiment\[0\]\.mode` must be one of"),
    "bad id": (E0 + ("id",), "a b", r"`experiment\[0\]\.id` must match"),
}  # fmt: skip


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


# --------------------------------------------------------------------------------------------
# Through the CLI: exit code 2, one line naming the field, nothing written.

GOOD_EXPERIMENT = """
[[experiment]]
id = "A"
data = "gaussian:d=5"
n = 10
widths = [8]
seeds = [0]
steps = 5
optimizers = ["gd:lr=0.1"]
"""

CLI_BAD = {
    "unknown key": ('widht = [8]', r"`experiment\[0\]\.widht`"),
    "wrong type": ('dtype = 64', r"`experiment\[0\]\.dtype`"),
    "lr <= 0": ('grid = [{optimizer = "gd", lr = [0.0]}]', r"`experiment\[0\]\.grid\[0\]`: `lr`"),
    "empty grid": ('seeds_placeholder = 1', r"`experiment\[0\]\.seeds`"),
    "unknown dataset": ('data_placeholder = 1', r"`experiment\[0\]\.data`"),
    "unreadable mnist": ('mnist_placeholder = 1', r"`experiment\[0\]\.data` mnist path"),
    "critical out of range": ('optimizers_placeholder = 1',
                              r"`experiment\[0\]\.optimizers\[0\]\.beta`"),
}  # fmt: skip


def _cli_config(case: str) -> str:
    text = GOOD_EXPERIMENT
    extra, _ = CLI_BAD[case]
    if case == "empty grid":
        return text.replace("seeds = [0]", "seeds = []")
    if case == "unknown dataset":
        return text.replace('"gaussian:d=5"', '"cifar10"')
    if case == "unreadable mnist":
        return text.replace('"gaussian:d=5"', '"mnist:/nonexistent/train-images-idx3-ubyte"')
    if case == "critical out of range":
        return text.replace('"gd:lr=0.1"', '"hb:lr=1000,beta=critical"')
    return text + extra + "\n"


def _run_cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("case", list(CLI_BAD), ids=list(CLI_BAD))
def test_cli_bad_config_exit_2_one_line_nothing_written(case, tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('name = "bad"\n' + _cli_config(case))
    out = tmp_path / "out"
    rc, _, err = _run_cli(["sweep", str(cfg), "--out", str(out)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkdyn: error:"), err
    assert __import__("re").search(CLI_BAD[case][1], lines[0]), lines[0]
    assert not out.exists()  # nothing half-written
    # an existing, empty out dir stays empty
    out.mkdir()
    assert _run_cli(["sweep", str(cfg), "--out", str(out)], capsys)[0] == 2
    assert list(out.iterdir()) == []


def test_cli_out_dir_not_writable(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('name = "ok"\n' + GOOD_EXPERIMENT)
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a directory")
    for out in (blocker / "out", blocker):  # parent is a file; the out path itself is a file
        rc, _, err = _run_cli(["sweep", str(cfg), "--out", str(out)], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert "`--out`" in err and str(blocker) in err
    assert blocker.read_text() == "a regular file, not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml", "file"]


def test_cli_missing_config_file(tmp_path, capsys):
    rc, _, err = _run_cli(["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")],
                          capsys)  # fmt: skip
    assert rc == 2 and "`CONFIG`" in err and not (tmp_path / "o").exists()


def test_lists_of_data_and_modes_expand_into_experiments():
    """Grids over datasets and parameterisations: one experiment per combination."""
    from ntkdyn.experiments.config import load_config as load

    cfg = load(
        {
            "name": "grid",
            "experiment": [
                {
                    "id": "G",
                    "title": "grid",
                    "data": ["gaussian:d=5", "synthetic"],
                    "mode": ["theory", "notebook"],
                    "widths": [8],
                    "steps": [5, 7],
                    "optimizers": ["gd:lr=0.01"],
                }
            ],
        }
    )
    ids = [e.id for e in cfg.experiments]
    assert ids == [f"G-{j}" for j in range(1, 9)]
    combos = {(e.data, e.mode, e.steps) for e in cfg.experiments}
    assert len(combos) == 8
    assert cfg.experiments[-1].title == "grid (data=synthetic, mode=notebook, steps=7)"
    single = load(
        {
            "name": "one",
            "experiment": [
                {
                    "id": "S",
                    "data": ["synthetic"],
                    "widths": [8],
                    "steps": 5,
                    "optimizers": ["gd:lr=0.1"],
                }
            ],
        }
    )
    assert [e.id for e in single.experiments] == ["S"]


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
