"""Presets: valid configs whose numbers follow from docs/mathematics.md and docs/paper.md (not tuned).

The step counts and grids of the quick preset are checked against the kernel model they were
derived from (docs/mathematics.md §3, 5, 6, 7.2), and the notebook miniature's width/lr scaling against the
measured width-proportionality of the notebook NTK (docs/mathematics.md §7.1).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ntkdyn.data import load_dataset
from ntkdyn.dynamics.discrete import predict_discrete
from ntkdyn.experiments.config import Config
from ntkdyn.experiments.presets import (
    FULL_LADDER,
    MINI_WIDTH_DIVISOR,
    PRESETS,
    QUICK_LADDER,
    get_preset,
    preset_dict,
)
from ntkdyn.experiments.runs import expand_runs
from ntkdyn.kernels import empirical_ntk, spectrum, two_layer_gram
from ntkdyn.models import TwoLayerReLU

#: docs/mathematics.md §6: lambda_0 = 0.04473, critical beta = 1 - 2 sqrt(lambda_0 0.1) = 0.8662.
LAMBDA_0 = 0.04473
BETA_CRIT = 0.8662


@pytest.fixture(scope="module")
def quick_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # E6's b1 + b2 = 1 note
        config = get_preset("quick")
        return config, expand_runs(config)


def _by_experiment(runs):
    out = {}
    for r in runs:
        out.setdefault(r.experiment, []).append(r)
    return out


def test_quick_is_a_valid_config_with_every_kind_the_report_needs(quick_runs):
    config, runs = quick_runs
    assert isinstance(config, Config) and config.name == "quick"
    kinds = {e.kind for e in config.experiments}
    assert {
        "theory-ladder",
        "theory-curves",
        "theory-point",
        "E1",
        "E2",
        "E3",
        "E4",
        "E5",
        "E6",
    } <= kinds
    assert len({r.id for r in runs}) == len(runs)


def test_quick_theory_setting_is_math6(quick_runs):
    _, runs = quick_runs
    theory = [r for r in runs if r.config["mode"] == "theory"]
    assert {r.config["data"] for r in theory} == {"gaussian:d=5"}
    assert {(r.config["n"], r.config["loss"], r.config["dtype"]) for r in theory} == {
        (20, "half-sum", "float64")
    }
    assert {r.rule.lr for r in theory} == {0.1}
    for r in theory:
        if r.experiment == "T-point":  # underdamped point tests (docs/verdicts.md §4)
            continue
        if r.rule.name in ("hb", "nesterov-sc"):
            assert r.rule.beta == pytest.approx(BETA_CRIT, abs=1e-4)
        if r.rule.name == "hom":
            assert (r.rule.b1, r.rule.b2) == pytest.approx((BETA_CRIT - 0.2, 0.2), abs=1e-4)
    names = {r.rule.spec for r in theory if r.rule.name == "nesterov-torch"}
    assert {n.split(",r=")[-1] for n in names} == {"2.0", "3.0", "8.0"}
    for eid in ("T-gd", "T-nag", "T-momentum"):  # width ladders: 4 widths, 1.8 decades, 3 seeds
        assert sorted({r.width for r in theory if r.experiment == eid}) == QUICK_LADDER
        assert sorted({r.seed for r in theory if r.experiment == eid}) == [0, 1, 2]


def test_quick_step_counts_reach_what_the_claims_need(quick_runs):
    """GD falls >= 10 decades; C7's 4 r/h0 fits for r = 2, 3; the momentum runs and the width
    sweep reach the floors/horizons they are evaluated on (kernel model with H^inf, e0 = -y)."""
    _, runs = quick_runs
    exps = _by_experiment(runs)
    ds = load_dataset("gaussian:d=5", n=20, seed=0)
    K = spectrum(two_layer_gram(ds.X), vectors=True)
    assert K.lambda_min == pytest.approx(LAMBDA_0, abs=1e-5)
    h0 = 0.1 * K.lambda_min
    L = predict_discrete(K, -ds.y, "gd:lr=0.1", exps["T-gd"][0].config["steps"])
    assert L[-1] / L[0] < 1e-3  # GD's window [K/4, K] is deep in its linear phase
    assert exps["T-nag"][0].config["steps"] >= 4 * 2 / h0
    steps = exps["T-nag-r"][0].config["steps"]
    assert steps >= 4 * 3 / h0
    assert steps < 4 * 8 / h0  # r = 8: C7 cannot see the crossover (docs/verdicts.md §6)
    for r in exps["T-momentum"]:
        L = predict_discrete(K, -ds.y, r.rule, r.config["steps"])
        assert L[-1] / L[0] < 1e-20  # the classifier's float64 floor is reached
    for r in exps["T-point"]:
        L = predict_discrete(K, -ds.y, r.rule, r.config["steps"])
        assert L[-1] / L[0] < 1e-20


def test_quick_notebook_miniatures_scale_the_authors_settings(quick_runs):
    _, runs = quick_runs
    exps = _by_experiment(runs)
    k = MINI_WIDTH_DIVISOR
    for eid in ("E1", "E2", "E3", "E4", "E5", "E6"):
        for r in exps[eid]:
            assert (r.config["mode"], r.config["loss"], r.config["n"]) == ("notebook", "mse", 60)
            assert r.config["data"] == "digits"
    assert {r.width for r in exps["E1"]} == {3000 // k}
    assert [r.rule.lr for r in exps["E3"]] == pytest.approx([1e-4 * k] * len(exps["E3"]))
    assert [r.rule.lr for r in exps["E2"]] == pytest.approx([5e-5 * k] * len(exps["E2"]))
    e2 = sorted({r.width for r in exps["E2"]})
    assert e2[0] == 2000 // k and e2[-1] == 8000 // k
    assert sorted({r.width for r in exps["E4"]}) == [w // k for w in range(1000, 8001, 1000)]
    assert {r.rule.beta for r in exps["E2"]} == {0.0, 0.6, 0.9}
    assert {r.rule.beta for r in exps["E3"]} == {0.2, 0.5, 0.8}
    assert {r.rule.r for r in exps["E4"]} == {2.0, 4.0, 10.0}
    assert {r.rule.r for r in exps["E5"] if r.rule.name != "gd"} == {2.0, 3.0, 6.0, 8.0}
    assert {(r.rule.name, r.rule.params.get("b2")) for r in exps["E6"]} >= {
        ("hom-notebook", 0.2),
        ("hom-notebook", 0.5),
        ("hom-notebook", 0.8),
    }
    assert {r.config["steps"] for r in exps["E2"] + exps["E4"]} == {200}


def test_notebook_kernel_grows_linearly_with_width():
    """The basis of the miniature's scaling: lambda_max(K) / m of the notebook network is the
    same at m and 4m (digits pixels in [0, 1], n = 60), so widths / 4 with lr x 4 keep
    h_max = lr lambda_max(K)."""
    ds = load_dataset("digits", n=60, seed=0, normalize=False)
    X = np.array(ds.X)  # the loader scales pixels to [0, 1]
    widths, seeds = (500, 2000), (0, 1, 2, 3)
    per_width = []
    for m in widths:
        vals = []
        for seed in seeds:
            net = TwoLayerReLU(
                64,
                m,
                parameterization="notebook",
                dtype=torch.float64,
                generator=torch.Generator().manual_seed(seed),
            )
            H = np.asarray(empirical_ntk(net, torch.as_tensor(X)))
            vals.append((2.0 / 60) * spectrum(H).lambda_max / m)
        per_width.append(np.mean(vals))
    # H ~ sum_r a_r^2 1{unit r active} (...): a_r ~ U(-1, 1), half the units active at init, so
    # the per-unit mean has relative std sqrt(1/10 - 1/36) / (1/6) / sqrt(m) = 1.61 / sqrt(m);
    # three standard deviations of the difference of the two seed means:
    tol = 3 * 1.61 * math.sqrt(sum(1 / (len(seeds) * m) for m in widths))
    assert per_width[1] == pytest.approx(per_width[0], rel=tol)
    assert 3.0 < per_width[0] < 4.5  # ~3.7 per unit width (presets docstring)


def test_paper_preset_sizes_and_mnist_override(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(b"\0" * 16)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\0" * 8)
    raw = preset_dict("paper", data=f"mnist:{folder}")
    exps = {e["id"]: e for e in raw["experiment"]}
    assert exps["E4"]["seeds"] == list(range(10))
    assert exps["E4"]["widths"] == list(range(1000, 8001, 1000))
    assert exps["E2"]["widths"] == list(range(2000, 8001, 500))
    assert exps["E1"]["steps"] == 5000 and exps["E2"]["steps"] == 200
    assert exps["E1"]["optimizers"] == ["gd:lr=0.0001"]
    assert all(
        exps[e]["data"] == f"mnist:{folder}" and exps[e]["n"] == 600
        for e in ("E1", "E2", "E3", "E4", "E5", "E6")
    )
    assert exps["T-gd"]["widths"] == FULL_LADDER
    assert {e["id"]: e for e in preset_dict("paper")["experiment"]}["E1"]["data"] == "digits"


def test_theory_preset_uses_theory_mode_and_hmax_learning_rates():
    raw = preset_dict("theory")
    for e in raw["experiment"]:
        assert e["mode"] == "theory" and e["predict"] is True
    e1 = next(e for e in raw["experiment"] if e["id"] == "E1")
    assert e1["optimizers"] == ["gd:lr=hmax=1.0"] and e1["loss"] == "mse"


def test_overrides_apply_to_every_experiment_and_bad_input_names_the_field():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = get_preset("quick", dtype="float32", device="cpu")
    assert {(e.dtype, e.device) for e in config.experiments} == {("float32", "cpu")}
    with pytest.raises(ValueError, match="`preset`"):
        get_preset("fast")
    with pytest.raises(ValueError, match="dtype"):
        get_preset("quick", dtype="float16")
    with pytest.raises(ValueError, match="data"):
        get_preset("quick", data="nosuchdata")
    assert set(PRESETS) == {"quick", "paper", "theory"}


def test_critical_beta_is_math6_value():
    assert 1 - 2 * math.sqrt(LAMBDA_0 * 0.1) == pytest.approx(BETA_CRIT, abs=1e-4)
