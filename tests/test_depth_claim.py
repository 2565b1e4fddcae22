"""Claim C8 (deep networks, docs/verdicts.md §9): the per-setting verdict on synthetic errors
(each outcome where it must come out), and the issue's must-hold on real networks (slow):
depth 2 and 3, m = 4096, n = 32, GD, HB and scheduled Nesterov stay inside the band of their
prediction envelope down to 1e-2 L0, and a depth-3 network judged against the depth-2
analytic NTK leaves it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkdyn.report._claim_depth import depth_band, judge_depth_setting
from ntkdyn.verdicts.tolerances import (
    DEPTH_BAND_PER_LAYER,
    DEPTH_FLUCTUATION,
    DEPTH_MAX_SLOPE,
    DEPTH_WIDTH,
)

#: Widths of the synthetic ladders: DEPTH_WIDTH and 1.2 decades below it (the preset's).
_WIDTHS = (256, 1024, DEPTH_WIDTH)


def _ladder(at_widest: float, slope: float, seeds: int = 3) -> dict[int, list[float]]:
    """Errors ``at_widest * (m / DEPTH_WIDTH)^slope`` with a +-10% spread over the seeds."""
    spread = np.linspace(0.9, 1.1, seeds)
    return {m: list(at_widest * (m / DEPTH_WIDTH) ** slope * spread) for m in _WIDTHS}


def test_the_band_grows_with_depth_as_registered():
    assert depth_band(1) == pytest.approx(DEPTH_BAND_PER_LAYER)
    assert depth_band(3) == pytest.approx(3 * DEPTH_BAND_PER_LAYER)
    assert depth_band(4, limit=True) == pytest.approx(
        4 * DEPTH_BAND_PER_LAYER + 2 * DEPTH_FLUCTUATION
    )


def test_an_error_inside_the_band_that_falls_like_m_to_the_minus_half_is_supported():
    band = depth_band(2)
    verdict, reason, slope = judge_depth_setting(2, _ladder(0.5 * band, -0.5))
    assert verdict == "supported", reason
    assert slope == pytest.approx(-0.5, abs=0.01)


def test_outside_the_band_at_the_claims_width_is_refuted():
    verdict, reason, _ = judge_depth_setting(2, _ladder(1.2 * depth_band(2), -0.5))
    assert verdict == "refuted" and "outside the band" in reason


def test_outside_the_analytic_band_is_refuted_even_inside_the_h0_band():
    errors = _ladder(0.5 * depth_band(3), -0.5)
    errors_inf = _ladder(1.2 * depth_band(3, limit=True), -0.5)
    verdict, reason, _ = judge_depth_setting(3, errors, errors_inf)
    assert verdict == "refuted" and "analytic" in reason
    assert judge_depth_setting(3, errors, _ladder(0.5 * depth_band(3), -0.5))[0] == "supported"


def test_an_analytic_error_that_does_not_shrink_with_width_is_refuted():
    """A wrong analytic kernel: its error tends to a constant inside the band at every width,
    which only the width criterion can tell."""
    errors = _ladder(0.5 * depth_band(3), -0.5)
    flat = _ladder(0.8 * depth_band(3, limit=True), 0.0)
    verdict, reason, _ = judge_depth_setting(3, errors, flat)
    assert verdict == "refuted" and "analytic NTK's error does not shrink" in reason
    shrinking = _ladder(0.8 * depth_band(3, limit=True), -0.5)
    assert judge_depth_setting(3, errors, shrinking)[0] == "supported"


def test_an_error_that_does_not_shrink_with_width_is_refuted():
    verdict, reason, slope = judge_depth_setting(1, _ladder(0.5 * depth_band(1), 0.0))
    assert verdict == "refuted" and "does not shrink" in reason
    assert slope is not None and slope > DEPTH_MAX_SLOPE


def test_a_diverged_seed_at_the_widest_width_counts_as_outside():
    errors = _ladder(0.5 * depth_band(2), -0.5)
    errors[DEPTH_WIDTH] = [0.1, math.inf, math.inf]
    assert judge_depth_setting(2, errors)[0] == "refuted"


@pytest.mark.parametrize(
    "errors, why",
    [
        ({m: v[:2] for m, v in _ladder(0.1, -0.5).items()}, "seeds"),  # two seeds
        ({m: v for m, v in _ladder(0.1, -0.5).items() if m < DEPTH_WIDTH}, "narrower"),
        ({DEPTH_WIDTH: [0.1, 0.11, 0.12]}, "decades"),  # one width: band met, no trend
        ({m: v for m, v in _ladder(10.0, 0.0).items() if m < DEPTH_WIDTH}, "narrower"),
        ({}, "no run"),
    ],
)
def test_too_little_evidence_is_inconclusive(errors, why):
    verdict, reason, _ = judge_depth_setting(2, errors)
    assert verdict == "inconclusive" and why in reason


# --------------------------------------------------------------------------------------------
# The must-hold, on real networks.

#: The claim's setting (docs/verdicts.md §9, h_max = 0.5), steps that take each kernel
#: prediction past 1e-2 L0 with a margin: on the analytic NTK GD needs about 215 at depth 2
#: and 140 at depth 3, HB and scheduled NAG about 35 and 27. (At h_max = 1, outside the
#: registered setting, GD at depth 2 measured 0.443 against its band of 0.4, seed 0.)
_MUST_HOLD = {
    "name": "depth-must-hold",
    "defaults": {
        "mode": "theory",
        "kind": "theory-depth",
        "data": "gaussian:d=5",
        "n": 32,
        "loss": "half-sum",
        "dtype": "float64",
        "depth": [2, 3],
        "widths": [DEPTH_WIDTH],
        "seeds": [0],
    },
    "experiment": [
        {"id": "D-gd", "steps": 260, "optimizers": ["gd:lr=hmax=0.5"]},
        {
            "id": "D-mom",
            "steps": 50,
            "optimizers": ["hb:lr=hmax=0.5,beta=critical", "nesterov-torch:lr=hmax=0.5,r=3"],
        },
    ],
}


@pytest.fixture(scope="module")
def must_hold_runs(tmp_path_factory):
    """The claim's setting trained once (slow): the analyses and each run's band errors."""
    from ntkdyn.experiments.sweep import run_sweep
    from ntkdyn.report._claim_depth import run_band_error
    from ntkdyn.report.build import analyze_store

    out = tmp_path_factory.mktemp("depth-must-hold")
    run_sweep(_MUST_HOLD, out, progress=False)
    analyses, *_ = analyze_store(out)
    assert len(analyses) == 6
    assert len({(a.rule.family, a.config["depth"]) for a in analyses}) == 6
    rows = [(a, run_band_error(a), run_band_error(a, limit=True)) for a in analyses]
    for a, err, err_inf in rows:  # every number, whatever the verdicts
        print(f"depth {a.config['depth']} {a.rule.name}: rel H(0) {err}, analytic {err_inf}")
    return rows


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason=(
        "measured refuted (docs/verdicts.md §9): at depth 2 the networks leave the registered "
        "H(0) band 0.4 (GD 0.443, HB 0.601, scheduled NAG 0.633, seed 0); the band is kept"
    ),
)
def test_deep_networks_stay_in_the_registered_band(must_hold_runs):
    for a, err, err_inf in must_hold_runs:
        depth = a.config["depth"]
        assert err_inf is not None and err_inf <= depth_band(depth, limit=True)
        assert err is not None and err <= depth_band(depth), (a.rule.spec, depth, err)


@pytest.mark.slow
def test_the_analytic_band_holds(must_hold_runs):
    for a, _, err_inf in must_hold_runs:
        assert err_inf is not None and err_inf <= depth_band(a.config["depth"], limit=True)


def _errors_against_depth2(config: dict, analyses) -> list[float | None]:
    """Each run's relative error against the depth-2 analytic NTK with its own e0 (the wrong
    kernel for a depth-3 network), as the claim measures it."""
    import torch

    from ntkdyn.experiments._batch import build_network
    from ntkdyn.experiments.runs import DataCache, expand_runs
    from ntkdyn.optim.rules import parse
    from ntkdyn.prediction import KernelModel, predict_curves
    from ntkdyn.report.summary import REL_HORIZON, prediction_error

    cache = DataCache()
    runs = {r.id: r for r in expand_runs(config, cache=cache)}
    errors = []
    for a in analyses:
        run = runs[a.record.id]
        ds = cache.dataset(run.data_spec)
        f0 = build_network(run, ds.d)(torch.as_tensor(np.array(ds.X))).detach().numpy()
        wrong = KernelModel.from_spectrum(cache.deep_spectrum(run.data_spec, 2), f0 - ds.y, 1.0)
        pred = predict_curves(wrong, parse(a.rule.spec), a.record.steps).loss
        errors.append(prediction_error(a.record.losses, pred, horizon=REL_HORIZON, relative=True))
    return errors


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason=(
        "measured (docs/verdicts.md §9): the depth-3 GD network against the depth-2 analytic "
        "NTK is off by 0.778, inside the depth-3 analytic band 0.946: that band does not tell "
        "the two kernels apart, so C8's analytic half cannot refute a wrong kernel here"
    ),
)
def test_a_wrong_depths_kernel_leaves_the_analytic_band(must_hold_runs):
    # must fail: each depth-3 network against the depth-2 analytic kernel (its own e0)
    deep3 = [a for a, _, _ in must_hold_runs if a.config["depth"] == 3]
    for a, err in zip(deep3, _errors_against_depth2(_MUST_HOLD, deep3), strict=True):
        print(f"depth 3 {a.rule.name} against the depth-2 NTK: rel {err:.3f}")
        assert err is not None and err > depth_band(3, limit=True)


#: The must-fail of C8 as a whole: depth-3 GD networks on the claim's width ladder and seeds.
_LADDER = {
    "name": "depth-wrong-kernel",
    "defaults": {**_MUST_HOLD["defaults"], "depth": 3, "widths": [256, 1024, DEPTH_WIDTH]},
    "experiment": [
        {"id": "D-gd", "steps": 260, "optimizers": ["gd:lr=hmax=0.5"], "seeds": [0, 1, 2]}
    ],
}


@pytest.mark.slow
def test_c8_refutes_a_wrong_depths_kernel_over_the_width_ladder(tmp_path):
    from ntkdyn.experiments.sweep import run_sweep
    from ntkdyn.report._claim_depth import run_band_error
    from ntkdyn.report.build import analyze_store

    run_sweep(_LADDER, tmp_path, progress=False)
    analyses, *_ = analyze_store(tmp_path)
    h0, right, wrong = ({} for _ in range(3))
    for a, err in zip(analyses, _errors_against_depth2(_LADDER, analyses), strict=True):
        h0.setdefault(a.width, []).append(run_band_error(a))
        right.setdefault(a.width, []).append(run_band_error(a, limit=True))
        wrong.setdefault(a.width, []).append(err)
    print(f"\nH(0) {h0}\ndepth-3 NTK {right}\ndepth-2 NTK {wrong}")
    print("with its own kernels:", judge_depth_setting(3, h0, right))
    verdict, reason, _ = judge_depth_setting(3, h0, wrong)
    print("against the depth-2 NTK:", verdict, reason)
    assert verdict == "refuted", reason
