"""Claims C1-C7 end to end from stored records: the report's verdicts come from the verdict
functions, with hypotheses, tolerances and per-width, per-seed evidence (docs/verdicts.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkdyn.experiments.store import RunRecord
from ntkdyn.optim.rules import parse
from ntkdyn.prediction import KernelModel
from ntkdyn.report.claims import evaluate_claims
from ntkdyn.report.summary import analyze_run

from ladder import LADDER, SEEDS, drifted

CFG = {
    "mode": "theory",
    "data": "gaussian:d=5",
    "n": 20,
    "data_seed": 0,
    "loss": "half-sum",
    "dtype": "float64",
    "device": "cpu",
    "diagnostics_every": None,
}


def _record(experiment, spec, losses, model: KernelModel, width, seed, *, pred=None):
    cfg = {
        **CFG,
        "experiment": experiment,
        "width": width,
        "seed": seed,
        "optimizer": parse(spec).spec,
        "steps": losses.size - 1,
        "predict": pred is not None,
    }
    return RunRecord(
        id=f"{experiment}-{spec}-{width}-{seed}",
        experiment=experiment,
        config=cfg,
        status="ok",
        diverged_at=None,
        steps=losses.size - 1,
        final_loss=float(losses[-1]),
        losses=losses,
        pred_discrete=pred,
        lambda_min_k=model.lambda_min,
        lambda_max_k=model.lambda_max,
        kernel_eigenvalues=model.eigenvalues,
        kernel_modes=model.modes,
        finished="2026-01-01T00:00:00Z",
    )


def _ladder(init_models, spec, steps, judged=None):
    """Ladder records whose curves follow a drifted kernel model (``spec``), judged as
    ``judged`` (default: the same rule)."""
    out = []
    for (m, s), mdl in init_models.items():
        curve = drifted(mdl, m, s).curve(spec, steps)
        out.append(_record("T-lad", judged or spec, curve, mdl, m, s, pred=mdl.curve(spec, steps)))
    return out


def _claims(records, kind):
    return {c.id: c for c in evaluate_claims([analyze_run(r, kind) for r in records])}


def test_c1_supported_with_evidence_and_refuted_for_the_wrong_lr(init_models):
    good = _claims(_ladder(init_models, "gd:lr=0.1", 1000), "theory-ladder")["C1"]
    assert good.verdict == "supported", good.reason
    assert good.tolerances["KERNEL_MODEL_RTOL"] == 0.1
    assert [r["width"] for r in good.by_width] == list(LADDER)
    assert len(good.runs) == len(LADDER) * len(SEEDS)
    assert "C1_deviation_vs_width" in good.figures
    assert good.hypothesis and good.criterion and "supported" in good.criterion
    bad = _claims(_ladder(init_models, "gd:lr=0.115", 1000, "gd:lr=0.1"), "theory-ladder")["C1"]
    assert bad.verdict == "refuted", bad.reason
    # each seed's row says whether it is inside the tolerance, not merely that it was measured
    for row in (r for r in good.runs + bad.runs if r["deviation"] is not None):
        inside = abs(row["deviation"]) <= good.tolerances["KERNEL_MODEL_RTOL"]
        assert row["verdict"] == ("within" if inside else "outside"), row
    assert any(row["verdict"] == "outside" for row in bad.runs)


def test_c2_point_test_counts_only_where_the_rate_is_lambda_free(init_models):
    models = [init_models[(LADDER[-1], s)] for s in SEEDS]
    under = [
        _record("T-pt", "hb:lr=0.1,beta=0.95", m.curve("hb:lr=0.1,beta=0.95", 1000), m, 4096, s)
        for s, m in zip(SEEDS, models, strict=True)
    ]
    claims = _claims(under, "theory-point")
    assert claims["C2"].verdict == "supported", claims["C2"].evidence
    wrong = [
        _record("T-pt", "nesterov-sc:lr=0.1,beta=0.95", r.losses, m, 4096, s)
        for r, s, m in zip(under, SEEDS, models, strict=True)
    ]
    assert _claims(wrong, "theory-point")["C4"].verdict == "refuted"


def test_c3_and_c7_from_exact_scheduled_nesterov_curves(init_models):
    spec = "nesterov-torch:lr=0.1,r=2"
    claims = _claims(_ladder(init_models, spec, 2100), "theory-ladder")
    assert claims["C3"].verdict == "supported", claims["C3"].evidence
    assert claims["C7"].verdict == "supported", claims["C7"].evidence
    wrong = _claims(_ladder(init_models, "nesterov-torch:lr=0.1,r=3", 2100, spec), "theory-ladder")
    assert wrong["C3"].verdict == "refuted", wrong["C3"].evidence


def test_claims_without_runs_are_inconclusive_and_say_so():
    claims = evaluate_claims([])
    assert [c.id for c in claims] == [f"C{i}" for i in range(1, 8)]
    assert all(c.verdict == "inconclusive" for c in claims)
    assert all(c.reason for c in claims)


def test_unstable_rule_is_refuted_in_the_claim(init_models):
    mdl = init_models[(LADDER[-1], 0)]
    lr = 1.5 / mdl.lambda_max
    spec = f"nesterov-torch:lr={lr},r=3"
    recs = [
        _record(
            "T-n", spec, np.linspace(1.0, 0.5, 300), init_models[(LADDER[-1], s)], LADDER[-1], s
        )
        for s in SEEDS
    ]
    c3 = _claims(recs, "theory-curves")["C3"]
    assert c3.verdict == "refuted" and "unstable" in c3.reason
    assert math.isfinite(lr)


@pytest.mark.parametrize("cid", ["C1", "C2", "C3", "C4", "C5", "C6", "C7"])
def test_every_claim_dict_has_the_report_fields(cid):
    c = {c.id: c for c in evaluate_claims([])}[cid].as_dict()
    assert {
        "id",
        "statement",
        "hypothesis",
        "criterion",
        "tolerances",
        "verdict",
        "reason",
        "evidence",
        "figures",
        "by_width",
        "runs",
        "quantity",
    } <= set(c)
