"""Claims C1-C7 end to end from stored records: the report's verdicts come from the verdict
functions, with hypotheses, tolerances and per-width, per-seed evidence (docs/verdicts.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntkdyn.experiments.presets import PRESETS, get_preset
from ntkdyn.experiments.store import RunRecord
from ntkdyn.optim.rules import RULES, parse
from ntkdyn.prediction import KernelModel
from ntkdyn.report.claims import NEEDS, evaluate_claims, omitted_claims, omitted_sentence
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


#: One run of the kind and optimizer each claim reads (module ``NEEDS``).
_NEEDED = {
    "C1": ("theory-ladder", "gd:lr=0.1"),
    "C2": ("theory-point", "hb:lr=0.1,beta=0.9"),
    "C3": ("theory-curves", "nesterov:lr=0.1,r=3"),
    "C4": ("theory-point", "nesterov-sc:lr=0.1,beta=0.9"),
    "C5": ("theory-ladder", "hom:lr=0.1,b1=0.5,b2=0.2"),
    "C6": ("theory-ladder", "hb:lr=0.1,beta=0.5"),
    "C7": ("theory-curves", "nesterov-torch:lr=0.1,r=3"),
}


def _bare(spec, kind, *, mode="theory"):
    """A stored run with no kernel model (too little evidence for any verdict)."""
    losses = np.geomspace(1.0, 1e-3, 51)
    cfg = {**CFG, "mode": mode, "experiment": "X", "width": 64, "seed": 0}
    cfg.update({"optimizer": parse(spec).spec, "steps": 50, "predict": False})
    rec = RunRecord(
        id=f"X-{spec}",
        experiment="X",
        config=cfg,
        status="ok",
        diverged_at=None,
        steps=50,
        final_loss=float(losses[-1]),
        losses=losses,
        finished="2026-01-01T00:00:00Z",
    )
    return analyze_run(rec, kind)


def test_claims_without_their_runs_are_left_out_and_the_sentence_says_what_they_need():
    assert evaluate_claims([]) == []
    omitted = omitted_claims([])
    assert [o["id"] for o in omitted] == [f"C{i}" for i in range(1, 8)]
    note = omitted_sentence(omitted)
    assert note.count(" needs ") == 7 and note.endswith(".") and note.count(". ") == 0
    assert "C2 needs hb runs of kind theory-ladder or theory-point" in note
    assert omitted_sentence([]) == ""
    # a user's own grid (kind "curves") and notebook-mode ladders feed no claim
    runs = [
        _bare("gd:lr=0.1", "curves"),
        _bare("hb:lr=0.1,beta=0.9", "theory-ladder", mode="notebook"),
    ]
    assert evaluate_claims(runs) == [] and len(omitted_claims(runs)) == 7


@pytest.mark.parametrize("cid", sorted(_NEEDED))
def test_a_claim_with_its_runs_but_no_evidence_stays_inconclusive(cid):
    kind, spec = _NEEDED[cid]
    claims = {c.id: c for c in evaluate_claims([_bare(spec, kind)])}
    assert cid in claims and claims[cid].verdict == "inconclusive", claims.get(cid)
    assert cid not in {o["id"] for o in omitted_claims([_bare(spec, kind)])}
    # the same run under a kind the claim does not read leaves it out
    other = next(
        k for k in ("theory-ladder", "theory-curves", "theory-point") if k not in NEEDS[cid].kinds
    )
    assert cid not in {c.id for c in evaluate_claims([_bare(spec, other)])}


@pytest.mark.parametrize("preset", PRESETS)
def test_the_presets_feed_every_claim(preset):
    """Each preset's theory experiments meet every claim's needs, so it keeps C1-C7."""
    fed = {
        (e.kind, RULES[o.name].family)
        for e in get_preset(preset).experiments
        if e.mode == "theory"
        for o in e.optimizers
    }
    for cid, needs in NEEDS.items():
        assert any(
            k in needs.kinds and (not needs.families or f in needs.families) for k, f in fed
        ), cid


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


@pytest.mark.parametrize("cid", sorted(_NEEDED))
def test_every_claim_dict_has_the_report_fields(cid):
    kind, spec = _NEEDED[cid]
    c = {c.id: c for c in evaluate_claims([_bare(spec, kind)])}[cid].as_dict()
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
