"""Configs: valid configs and their expansion into runs, stable ids, data-driven parameters
against docs/mathematics.md §6, and grids over datasets and modes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkdyn.experiments.config import config_dict, load_config
from ntkdyn.experiments.runs import DataCache, expand_runs, run_id

from config_cases import BASE, base_dict

#: docs/mathematics.md §6: n = 20 Gaussian rows in R^5, lambda_0 = lambda_min(H^inf) = 0.04473; with
#: lr = 0.1 the critical beta 1 - 2 sqrt(lambda_0 lr) is 0.8662 (4 digits quoted).
MATH6_LAMBDA0 = 0.04473
MATH6_BETA = 0.8662
MATH6_DIGITS_TOL = 5e-5
#: Resolved values are rounded to 12 significant digits (config.RESOLVED_DIGITS).
RESOLVED_RTOL = 1e-11


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
        "gd:lr=0.1",
        "hb:lr=0.1,beta=0.9",
        "nesterov:lr=0.1,r=2.0",
        "nesterov:lr=0.1,r=3.0",
        "nesterov:lr=0.05,r=2.0",
        "nesterov:lr=0.05,r=3.0",
    ]


def test_expansion_order_count_and_run_config():
    runs = expand_runs(BASE)
    assert len(runs) == 6 * 2 * 2
    assert len({r.id for r in runs}) == len(runs)
    first = runs[0]
    assert first.config == {
        "experiment": "A",
        "mode": "theory",
        "data": "gaussian:d=5",
        "n": 10,
        "data_seed": 0,
        "loss": "half-sum",
        "width": 8,
        "seed": 0,
        "optimizer": "gd:lr=0.1",
        "steps": 50,
        "dtype": "float64",
        "device": "auto",
        "predict": True,
        "diagnostics_every": None,
    }
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
# Data-driven parameters (docs/mathematics.md §0, 4, 6).


def test_critical_beta_is_math_md_section6_value():
    cfg = {
        "name": "c",
        "experiment": [
            {
                "id": "E",
                "data": "gaussian:d=5",
                "n": 20,
                "widths": [8],
                "steps": 5,
                "optimizers": ["hb:lr=0.1,beta=critical", "nesterov-sc:lr=0.1,beta=critical"],
                "grid": [{"optimizer": "hom", "lr": 0.1, "b1": "critical", "b2": [0.2]}],
            }
        ],
    }
    hb, nsc, hom = expand_runs(cfg)
    lam0 = np.linalg.eigvalsh(h_inf(unit_gaussian(20, 5, 0)))[0]
    assert abs(lam0 - MATH6_LAMBDA0) < MATH6_DIGITS_TOL
    expected = 1 - 2 * math.sqrt(lam0 * 0.1)
    assert abs(hb.rule.beta - MATH6_BETA) < MATH6_DIGITS_TOL
    assert hb.rule.beta == pytest.approx(expected, rel=RESOLVED_RTOL)
    assert nsc.rule.beta == hb.rule.beta
    # HOM: b1 + b2 equals HB's critical beta (docs/mathematics.md §6: (beta - 0.2, 0.2))
    assert (hom.rule.b1, hom.rule.b2) == (pytest.approx(expected - 0.2, rel=RESOLVED_RTOL), 0.2)
    assert "beta=0.8662" in hb.config["optimizer"]  # the number is recorded, not "critical"


def test_critical_beta_uses_the_loss_factor_and_lr_targets_h():
    n, lr = 20, 2.0
    cfg = {
        "name": "c",
        "experiment": [
            {
                "id": "E",
                "data": "gaussian:d=5",
                "n": n,
                "loss": "mse",
                "widths": [8],
                "steps": 5,
                "optimizers": [f"hb:lr={lr},beta=critical", "gd:lr=hmax=0.5", "gd:lr=h0=0.01"],
            }
        ],
    }
    hb, gd_max, gd_0 = expand_runs(cfg)
    # K = (2/n) H (docs/mathematics.md §7.1)
    ev = np.linalg.eigvalsh(h_inf(unit_gaussian(n, 5, 0))) * 2.0 / n
    assert hb.rule.beta == pytest.approx(1 - 2 * math.sqrt(ev[0] * lr), rel=RESOLVED_RTOL)
    assert gd_max.rule.lr * ev[-1] == pytest.approx(0.5, rel=RESOLVED_RTOL)
    assert gd_0.rule.lr * ev[0] == pytest.approx(0.01, rel=RESOLVED_RTOL)


def test_critical_beta_out_of_range_names_the_field():
    cfg = {
        "name": "c",
        "experiment": [
            {
                "id": "E",
                "data": "gaussian:d=5",
                "n": 20,
                "widths": [8],
                "steps": 5,
                "optimizers": ["gd:lr=0.1", "hb:lr=100,beta=critical"],
            }
        ],
    }
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
