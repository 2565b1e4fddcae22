"""The falsification suite: for every claim, settings that must come out refuted (narrow
networks, a step above the stability limit, a run trained with one rule and judged as
another) and settings that must come out supported (curves that follow the kernel model as
the theory says). Each case asserts its verdict (docs/verdicts.md §8).

Real networks are trained where the case is about networks (narrow widths, wrong r, wrong
family); the rest use curves produced exactly by kernel models, with a width-dependent drift
where a width limit is judged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ntkdyn
from ntkdyn.optim.rules import parse
from ntkdyn.verdicts import (
    at_one_width,
    judge_crossover,
    judge_power_law,
    judge_rate,
    width_limit,
)
from ntkdyn.verdicts.tolerances import KERNEL_MODEL_RTOL, POINT_RTOL, WIDTH_SLOPE_BAND

from ladder import LADDER, SEEDS, drifted, kernel_model_of, theory_net


def _train(data, widths, seeds, spec: str, steps: int):
    """``[(width, losses, kernel model)]`` of real networks trained with ``spec``."""
    nets = [theory_net(m, s) for m in widths for s in seeds]
    models = [kernel_model_of(n, data) for n in nets]
    runs = ntkdyn.train(nets, data.X, data.y, parse(spec), steps=steps)
    return [(n.width, r.losses, mdl) for n, r, mdl in zip(nets, runs, models, strict=True)]


def _limit(trained, judge, spec):
    pairs = [(m, judge(L, mdl, spec).within(KERNEL_MODEL_RTOL)) for m, L, mdl in trained]
    return width_limit(pairs, tol=KERNEL_MODEL_RTOL, band=WIDTH_SLOPE_BAND)


def _one(trained, judge, spec, tol=KERNEL_MODEL_RTOL):
    return at_one_width([(m, judge(L, mdl, spec).within(tol)) for m, L, mdl in trained], tol=tol)


# --------------------------------------------------------------------------------------------
# Must come out refuted.


def test_narrow_networks_refute_the_kernel_rate(data):
    """C1-C5: a ladder of narrow networks (16..1024, 3 seeds) misses its kernel model."""
    trained = _train(data, (16, 64, 256, 1024), SEEDS, "gd:lr=0.1", 1000)
    agg = _limit(trained, judge_rate, "gd:lr=0.1")
    assert agg.verdict == "refuted", agg.reason


def test_step_above_the_stability_limit_is_refuted_not_inconclusive(data):
    """h_max > 2 for GD and > 4/3 for scheduled Nesterov: the kernel model is unstable."""
    net = theory_net(1024, 0)
    model = kernel_model_of(net, data)
    lr = 2.2 / model.lambda_max
    j = judge_rate(np.linspace(1.0, 0.5, 200), model, f"gd:lr={lr}")
    assert j.verdict == "refuted" and "unstable" in j.note
    lr = 1.5 / model.lambda_max
    for judge in (judge_power_law, judge_crossover):
        j = judge(np.linspace(1.0, 0.5, 200), model, f"nesterov-torch:lr={lr},r=3")
        assert j.verdict == "refuted" and "unstable" in j.note


def test_wrong_r_is_refuted(data):
    """C3: networks trained with r = 3 (and r = 8) judged as r = 2 (and r = 3)."""
    for trained_r, judged_r, steps in ((3, 2, 700), (8, 3, 1800)):
        trained = _train(data, (4096,), SEEDS, f"nesterov-torch:lr=0.1,r={trained_r}", steps)
        right = _one(trained, judge_power_law, f"nesterov-torch:lr=0.1,r={trained_r}")
        wrong = _one(trained, judge_power_law, f"nesterov-torch:lr=0.1,r={judged_r}")
        assert wrong.verdict == "refuted", wrong.reason
        assert right.rows[-1].median < wrong.rows[-1].median


def test_wrong_momentum_family_is_refuted(data):
    """C2/C4: HB trained, judged as NAG-SC with the same beta, and the reverse."""
    for trained_spec, judged_spec in (
        ("hb:lr=0.1,beta=0.95", "nesterov-sc:lr=0.1,beta=0.95"),
        ("nesterov-sc:lr=0.1,beta=0.95", "hb:lr=0.1,beta=0.95"),
    ):
        trained = _train(data, (2048,), SEEDS, trained_spec, 1000)
        assert _one(trained, judge_rate, trained_spec, POINT_RTOL).verdict == "supported"
        wrong = _one(trained, judge_rate, judged_spec, POINT_RTOL)
        assert wrong.verdict == "refuted", wrong.reason


def test_scheduled_and_constant_momentum_are_not_interchangeable(theory_like):
    """A scheduled-Nesterov curve judged as NAG-SC, and a NAG-SC curve judged as scheduled."""
    model = theory_like
    sched = model.curve("nesterov-torch:lr=0.1,r=3", 2000)
    assert judge_rate(sched, model, "nesterov-sc:lr=0.1,beta=0.9").verdict == "refuted"
    const = model.curve("nesterov-sc:lr=0.1,beta=0.9", 2000)
    assert judge_power_law(const, model, "nesterov-torch:lr=0.1,r=3").verdict == "refuted"


def test_wrong_learning_rate_is_refuted(init_models):
    """C1: GD run at lr 0.115 judged as lr 0.1, on the whole ladder."""
    pairs = [
        (
            m,
            judge_rate(drifted(mdl, m, s).curve("gd:lr=0.115", 1000), mdl, "gd:lr=0.1").within(
                KERNEL_MODEL_RTOL
            ),
        )
        for (m, s), mdl in init_models.items()
    ]
    agg = width_limit(pairs, tol=KERNEL_MODEL_RTOL, band=WIDTH_SLOPE_BAND)
    assert agg.verdict == "refuted", agg.reason


# --------------------------------------------------------------------------------------------
# Must come out supported.


@pytest.fixture(scope="module")
def theory_like(init_models):
    return init_models[(LADDER[-1], 0)]


@pytest.mark.parametrize("spec", ["gd:lr=0.1", "hb:lr=0.1,beta=critical"])
def test_first_order_drift_is_supported(init_models, spec):
    """Curves of kernel models whose lambda_min drifts like m^-1/2: the deviation shrinks like
    m^-1/2 for GD and, on a window short against the overdamped split time, for HB at
    critical damping too (its m^-1/4 branch-point law is asymptotic; docs/verdicts.md §3)."""
    pairs = []
    for (m, s), mdl in init_models.items():
        rule = (
            parse(spec)
            if "critical" not in spec
            else parse(f"hb:lr=0.1,beta={1 - 2 * math.sqrt(0.1 * mdl.lambda_min)}")
        )
        pairs.append(
            (
                m,
                judge_rate(drifted(mdl, m, s).curve(rule, 1000), mdl, rule).within(
                    KERNEL_MODEL_RTOL
                ),
            )
        )
    agg = width_limit(pairs, tol=KERNEL_MODEL_RTOL, band=WIDTH_SLOPE_BAND)
    assert agg.verdict == "supported", agg.reason
    assert agg.slope == pytest.approx(-0.5, abs=0.1)


def test_exact_power_law_and_crossover_are_supported(init_models):
    models = [init_models[(LADDER[-1], s)] for s in SEEDS]
    for r in (2, 3, 8):
        spec = f"nesterov-torch:lr=0.1,r={r}"
        pairs = [(LADDER[-1], judge_power_law(m.curve(spec, 2100), m, spec)) for m in models]
        assert at_one_width(pairs, tol=KERNEL_MODEL_RTOL).verdict == "supported"
    spec = "nesterov-torch:lr=0.1,r=2"
    pairs = [
        (
            m,
            judge_crossover(drifted(mdl, m, s).curve(spec, 2100), mdl, spec).within(
                KERNEL_MODEL_RTOL
            ),
        )
        for (m, s), mdl in init_models.items()
    ]
    agg = width_limit(pairs, tol=KERNEL_MODEL_RTOL, band=WIDTH_SLOPE_BAND)
    assert agg.verdict == "supported", agg.reason
