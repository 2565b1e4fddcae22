"""Deep networks through the sweep pipeline: the ``depth`` config key (validation, run ids,
data-driven values on the deep NTK), batches, the cost model, a small end-to-end sweep with its
stored predictions and claim C8, and the Dask payload (docs/verdicts.md §9).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from ntkdyn.experiments._optimizers import RESOLVED_DIGITS
from ntkdyn.experiments.config import config_dict, load_config
from ntkdyn.experiments.runs import DataCache, expand_runs, network_elements, plan_batches

#: A two-layer config whose run ids were stored before the ``depth`` key existed (computed on
#: the tree before the change): a store of it must resume unchanged.
_PLAIN: dict[str, Any] = {
    "name": "t",
    "experiment": [
        {
            "id": "A",
            "data": "gaussian:d=5",
            "n": 8,
            "widths": [16],
            "steps": 5,
            "optimizers": ["gd:lr=0.1", "hb:lr=0.1,beta=critical"],
        }
    ],
}
_STORED_IDS = ["ab1410752c26090d", "7f92001e42136cd3"]


def _with(**changes) -> dict:
    exp = {**_PLAIN["experiment"][0], **changes}
    return {"name": "t", "experiment": [exp]}


# --------------------------------------------------------------------------------------------
# Config, ids and refusals.


def test_configs_without_depth_keep_their_stored_run_ids_and_meta():
    runs = expand_runs(_PLAIN)
    assert [r.id for r in runs] == _STORED_IDS
    assert all("depth" not in r.config and r.depth is None for r in runs)
    assert "depth" not in config_dict(load_config(_PLAIN))["experiments"][0]


def test_depth_as_int_or_list_expands_per_depth_with_its_own_ids():
    assert load_config(_with(depth=2)).experiments[0].depth == (2,)
    runs = expand_runs(_with(depth=[1, 3]))
    assert [(r.config["optimizer"].split(":")[0], r.depth) for r in runs] == [
        ("gd", 1),
        ("gd", 3),
        ("hb", 1),
        ("hb", 3),
    ]
    assert len({r.id for r in runs}) == 4 and not {r.id for r in runs} & set(_STORED_IDS)
    assert config_dict(load_config(_with(depth=[1, 3])))["experiments"][0]["depth"] == [1, 3]
    # from [defaults] too
    raw = {"name": "t", "defaults": {"depth": 2}, "experiment": [_PLAIN["experiment"][0]]}
    assert load_config(raw).experiments[0].depth == (2,)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"depth": 2, "mode": "notebook"}, r"`experiment\[0\]\.depth` needs mode = \"theory\""),
        ({"depth": 0}, r"`experiment\[0\]\.depth` must be a non-empty list of positive ints"),
        ({"depth": [2, 2]}, r"`experiment\[0\]\.depth` lists a value twice"),
        ({"depth": "2"}, r"`experiment\[0\]\.depth` must be an int >= 1"),
        ({"depth": True}, r"`experiment\[0\]\.depth` must be an int >= 1"),
        ({"depth": []}, r"`experiment\[0\]\.depth` must be a non-empty list"),
    ],
)
def test_bad_depths_are_refused_naming_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        load_config(_with(**changes))


def test_data_driven_values_resolve_on_the_deep_ntk():
    from ntkdyn.kernels import deep_relu_ntk

    cache = DataCache()
    runs = expand_runs(_with(depth=[2], optimizers=["gd:lr=hmax=0.5"]), cache=cache)
    X = cache.dataset(runs[0].data_spec).X
    lam_max = np.linalg.eigvalsh(deep_relu_ntk(X, 2))[-1]
    assert runs[0].rule.lr == pytest.approx(0.5 / lam_max, rel=10.0 ** (1 - RESOLVED_DIGITS))
    two_layer = expand_runs(_with(optimizers=["gd:lr=hmax=0.5"]))[0].rule.lr
    assert abs(runs[0].rule.lr / two_layer - 1) > 0.5  # the two-layer H^inf would be wrong


# --------------------------------------------------------------------------------------------
# Batches and the cost model.


def test_depths_train_in_separate_batches_bounded_by_their_weights():
    cache = DataCache()
    runs = expand_runs(_with(depth=[1, 3], widths=[64], seeds=[0, 1]), cache=cache)
    batches = plan_batches(runs, cache)
    depths = sorted(tuple(sorted({r.depth or 0 for r in b})) for b in batches)
    assert depths == [(1,), (1,), (3,), (3,)]  # one depth per batch (gd and hb apart too)
    one, three = runs[0].config, runs[2].config
    assert network_elements(three, 8, 5) == network_elements(one, 8, 5) + 2 * 64 * 64
    # the bound counts m^2 per hidden layer: two depth-3 networks need two batches here
    small = plan_batches(runs, cache, max_elements=network_elements(three, 8, 5) + 1)
    assert all(len(b) == 1 for b in small if b[0].depth == 3)
    assert any(len(b) == 2 for b in small if b[0].depth == 1)


def test_a_deep_batch_is_estimated_costlier_than_a_shallow_one_of_the_same_width():
    from ntkdyn.experiments._shards import work_units
    from ntkdyn.experiments.estimate import Calibration, MachineConstants, plan_sweep

    constants = MachineConstants(
        step_overhead=1e-4, seconds_per_flop=1e-10, kernel_per_unit=1e-6, unit_setup=1e-7
    )
    cfg = _with(depth=[1, 3], widths=[512], optimizers=["gd:lr=0.1"])
    plan = plan_sweep(cfg, calibrate=Calibration.fixed(constants), devices={"auto": "cpu"})
    shallow, deep = plan.batches  # expansion order: depth 1, then depth 3
    assert shallow.width == deep.width == 512
    assert deep.flops > 50 * shallow.flops  # 6 n m^2 per hidden layer against 4 n m d
    assert deep.seconds is not None and shallow.seconds is not None
    assert deep.seconds > 10 * shallow.seconds
    assert deep.memory_bytes > 10 * shallow.memory_bytes
    cache = DataCache()
    runs = expand_runs(cfg, cache=cache)
    assert work_units(runs[1:], cache) > 50 * work_units(runs[:1], cache)
    # the two-layer estimate is unchanged by the depth terms
    flat = plan_sweep(_PLAIN, calibrate=Calibration.fixed(constants), devices={"auto": "cpu"})
    assert flat.batches[0].flops == 5 * 4 * 16 * 8 * 5


# --------------------------------------------------------------------------------------------
# End to end: a small deep sweep, its stored predictions, the claim, the Dask payload.

_SMALL: dict[str, Any] = {
    "name": "deep-small",
    "experiment": [
        {
            "id": "D",
            "kind": "theory-depth",
            "data": "gaussian:d=5",
            "n": 8,
            "depth": 2,
            "widths": [16],
            "seeds": [0, 1, 2],
            "steps": 60,
            "optimizers": ["gd:lr=hmax=0.5", "nesterov-torch:lr=hmax=0.5,r=3"],
        }
    ],
}


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    from ntkdyn.experiments.sweep import run_sweep

    out = tmp_path_factory.mktemp("deep")
    run_sweep(_SMALL, out, progress=False)
    return out


def test_a_deep_sweep_stores_both_predictions_and_the_report_judges_c8(small_store):
    from ntkdyn.kernels import deep_relu_ntk, spectrum
    from ntkdyn.optim.rules import parse
    from ntkdyn.prediction import KernelModel, predict_curves
    from ntkdyn.report._claim_depth import depth_band, run_band_error
    from ntkdyn.report.build import analyze_store
    from ntkdyn.report.claims import evaluate_claims, omitted_claims

    analyses, *_ = analyze_store(small_store)
    assert len(analyses) == 6 and all(a.config["depth"] == 2 for a in analyses)
    cache = DataCache()
    ds = cache.dataset(expand_runs(_SMALL, cache=cache)[0].data_spec)
    limit = spectrum(deep_relu_ntk(ds.X, 2), vectors=True)
    for a in analyses:
        r = a.record
        assert r.pred_discrete is not None and r.pred_discrete_inf is not None
        # the H(0) prediction starts at the network's own initial loss
        assert r.pred_discrete[0] == pytest.approx(r.losses[0], rel=1e-9)
        # the limit prediction is the exact recursion on the depth-2 analytic NTK, from e0
        model = KernelModel.from_spectrum(limit, _e0(a, ds), 1.0)
        expected = predict_curves(model, parse(a.rule.spec), r.steps).loss
        np.testing.assert_allclose(r.pred_discrete_inf, expected, rtol=1e-8, atol=1e-14)
    claims = {c.id: c for c in evaluate_claims(analyses)}
    assert set(claims) == {"C8"} and "C8" not in {o["id"] for o in omitted_claims(analyses)}
    c8 = claims["C8"]
    assert c8.verdict == "inconclusive" and "narrower" in c8.reason
    assert c8.tolerances["DEPTH_WIDTH"] == 4096 and len(c8.runs) == 6
    # must fail: networks of width 16 leave the band of depth 2 (median over seeds and rules)
    errors = [run_band_error(a) for a in analyses]
    assert all(e is not None for e in errors)
    assert np.all(np.isfinite(np.asarray(errors, dtype=float)))
    assert float(np.median(np.asarray(errors, dtype=float))) > depth_band(2), errors


def _e0(a, ds) -> np.ndarray:
    """The run's initial residual, from its rebuilt network (seeded as the sweep builds it)."""
    import torch

    from ntkdyn.experiments._batch import build_network
    from ntkdyn.experiments.runs import RunSpec

    run = RunSpec(a.record.id, a.record.experiment, a.record.config, a.rule)
    f0 = build_network(run, ds.d)(torch.as_tensor(np.array(ds.X))).detach().numpy()
    return f0 - ds.y


def test_the_dask_payload_carries_the_drivers_deep_spectrum():
    from ntkdyn.experiments._batch import train_batch
    from ntkdyn.experiments._dask import _payload

    cfg = {**_SMALL, "experiment": [{**_SMALL["experiment"][0], "seeds": [0], "steps": 5}]}
    cache = DataCache()
    batch = plan_batches(expand_runs(cfg, cache=cache), cache)[0]
    ((spec, dataset, two_layer, deep),) = _payload(batch, cache)
    assert set(deep) == {2} and two_layer is not None
    worker = DataCache()
    worker.preload(spec, dataset, two_layer, deep)
    assert worker.deep_spectrum(spec, 2) is cache.deep_spectrum(spec, 2)  # not recomputed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        here = train_batch(batch, cache, {"auto": "cpu"})
        there = train_batch(batch, worker, {"auto": "cpu"})
    np.testing.assert_array_equal(here[0]["pred_discrete_inf"], there[0]["pred_discrete_inf"])
    np.testing.assert_array_equal(here[0]["losses"], there[0]["losses"])
