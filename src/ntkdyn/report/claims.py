"""The paper's claims C1-C7 and C8 (deep networks, ``_claim_depth``) as pre-registered
hypotheses, judged from stored runs.

Each claim states what is measured, on which window, and the named tolerance it is held to
(``ntkdyn.verdicts.tolerances``, derived in docs/verdicts.md). The judging itself is
``ntkdyn.verdicts``: pure functions of (curve, kernel model, rule, window); this module only
selects the runs of each claim from the store, groups them and words the result. Runs are
selected by their experiment's ``kind``: ``theory-ladder`` (a width ladder with seeds: the
kernel claims as limits in width, C6), ``theory-curves`` (scheduled Nesterov at one width: C3,
C7) and ``theory-point`` (underdamped momentum at a modest width: the point tests of C2, C4,
C5). A claim whose runs the store lacks altogether (:data:`NEEDS`) is left out: a user's own
sweep is not the claim's experiment, and :func:`omitted_claims` says what it would need.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..optim import Family
from ..optim.rules import rules_of
from ..prediction import KernelModel
from ..verdicts import (
    RunJudgment,
    at_one_width,
    combine,
    judge_crossover,
    judge_power_law,
    judge_rate,
    rate_sensitivity,
    width_limit,
)
from ..verdicts.tolerances import (
    CROSSOVER_REACH,
    KERNEL_MODEL_RTOL,
    MIN_DECADES,
    MIN_SEEDS,
    MIN_WIDTHS,
    POINT_MAX_SENSITIVITY,
    POINT_RTOL,
    POWER_LAW_RTOL,
    SMALL_STEP_FACTOR,
    SMALL_STEP_WINDOW,
    WIDTH_SLOPE_BAND,
)
from ._claim_depth import DEPTH, c8_claim
from ._claim_text import HYPOTHESES, STATEMENTS, c6_claim
from ._evidence import fmt_number, run_name
from .summary import RunAnalysis

__all__ = [
    "EXTRA_NEEDS",
    "LADDER",
    "NEEDS",
    "POINT",
    "SINGLE",
    "STATEMENTS",
    "Claim",
    "Needs",
    "evaluate_claims",
    "fmt_number",
    "kernel_model",
    "omitted_claims",
    "omitted_sentence",
    "run_name",
]

LADDER, SINGLE, POINT = "theory-ladder", "theory-curves", "theory-point"  # and DEPTH (C8)
#: The optimizer family each linear-rate claim is about.
_LINEAR = {
    "C1": Family.GD,
    "C2": Family.HEAVY_BALL,
    "C4": Family.NESTEROV_CONSTANT,
    "C5": Family.HIGHER_ORDER,
}


@dataclass(frozen=True)
class Claim:
    """A claim's verdict ("supported" | "refuted" | "inconclusive") with its hypothesis,
    criterion, tolerances and per-width, per-seed evidence."""

    id: str
    statement: str
    verdict: str
    evidence: str
    hypothesis: str = ""
    criterion: str = ""
    tolerances: dict[str, object] = field(default_factory=dict)
    reason: str = ""
    figures: tuple[str, ...] = ()
    by_width: tuple[dict, ...] = ()
    runs: tuple[dict, ...] = ()
    quantity: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "statement": self.statement,
            "verdict": self.verdict,
            "evidence": self.evidence,
            "hypothesis": self.hypothesis,
            "criterion": self.criterion,
            "tolerances": dict(self.tolerances),
            "reason": self.reason,
            "figures": list(self.figures),
            "by_width": [dict(r) for r in self.by_width],
            "runs": [dict(r) for r in self.runs],
            "quantity": self.quantity,
        }


def kernel_model(a: RunAnalysis) -> KernelModel | None:
    """The run's stored kernel model at initialisation (None for older or partial records)."""
    lam, xi = a.record.kernel_eigenvalues, a.record.kernel_modes
    if lam is None or xi is None or lam.size == 0 or lam.min() <= 0:
        return None
    return KernelModel(lam, xi, loss_factor=a.c)


def _judge(a: RunAnalysis, how: Callable[..., RunJudgment]) -> RunJudgment:
    model = kernel_model(a)
    if model is None:
        return RunJudgment("inconclusive", note="no kernel model stored for this run")
    if not a.ok and a.record.diverged_at is not None:
        return RunJudgment("refuted", note=f"the network diverged at step {a.record.diverged_at}")
    return how(a.record.losses, model, a.rule, floor_rel=a.floor_rel)


def _run_row(a: RunAnalysis, j: RunJudgment) -> dict[str, object]:
    return {
        "width": a.width,
        "seed": a.seed,
        "spec": a.rule.spec,
        "experiment": a.record.experiment,
        "measured": j.measured,
        "reference": j.reference,
        "deviation": j.deviation,
        "verdict": j.verdict,
        "note": j.note or (str(j.window) if j.window else ""),
    }


@dataclass
class _Parts:
    """Accumulates a claim's parts (one per rule setting) before wording the claim."""

    verdicts: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def add(self, label: str, agg, judged_runs, figures=(), *, counted: bool = True) -> None:
        if counted:
            self.verdicts.append(agg.verdict)
        else:
            self.skipped.append(label)
        shown = agg.slope is None or "slope" in agg.reason  # the reason may state it already
        slope = "" if shown else f", slope {agg.slope:+.2f}"
        self.reasons.append(f"{label}: {agg.verdict} ({agg.reason}{slope})")
        self.rows += [{"setting": label, **r.as_dict()} for r in agg.rows]
        self.runs += [_run_row(a, j) for a, j in judged_runs]
        self.figures += [f for f in figures if f not in self.figures]

    def claim(self, cid: str, tolerances: dict, quantity: str) -> Claim:
        verdict = combine(self.verdicts)
        if not self.reasons:
            reason = "no runs of this claim in the store"
        else:
            decisive = [r for r in self.reasons if r.split(": ", 1)[1].startswith(verdict)]
            reason = (decisive or self.reasons)[0]
        evidence = "; ".join(self.reasons) or reason
        if self.skipped:
            evidence += (
                f" (not counted, cannot decide at this precision: {', '.join(self.skipped)})"
            )
        hyp, crit = HYPOTHESES[cid]
        return Claim(
            cid,
            STATEMENTS[cid],
            verdict,
            evidence,
            hyp,
            crit,
            tolerances,
            reason,
            tuple(self.figures),
            tuple(self.rows),
            tuple(self.runs),
            quantity,
        )


def _group(runs: list[RunAnalysis], key) -> dict:
    out = defaultdict(list)
    for a in runs:
        out[key(a)].append(a)
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def _setting(a: RunAnalysis) -> str:
    return a.label


_LIMIT_TOL = {
    "KERNEL_MODEL_RTOL": KERNEL_MODEL_RTOL,
    "WIDTH_SLOPE_BAND": list(WIDTH_SLOPE_BAND),
    "MIN_WIDTHS": MIN_WIDTHS,
    "MIN_DECADES": MIN_DECADES,
    "MIN_SEEDS": MIN_SEEDS,
}


def _linear_claim(cid: str, by_kind: dict[str, list[RunAnalysis]]) -> Claim:
    family = _LINEAR[cid]
    parts = _Parts()
    ladder = [a for a in by_kind.get(LADDER, []) if a.rule.family is family]
    for label, runs in _group(ladder, _setting).items():
        judged = [(a, _judge(a, judge_rate).within(KERNEL_MODEL_RTOL)) for a in runs]
        agg = width_limit(
            [(a.width, j) for a, j in judged], tol=KERNEL_MODEL_RTOL, band=WIDTH_SLOPE_BAND
        )
        figs = (f"{cid}_deviation_vs_width", f"{runs[0].record.experiment}_overlay")
        parts.add(f"{label} (width limit)", agg, judged, figs)
    point = [a for a in by_kind.get(POINT, []) if a.rule.family is family]
    for label, runs in _group(point, _setting).items():
        judged = [(a, _judge(a, judge_rate).within(POINT_RTOL)) for a in runs]
        model = kernel_model(runs[0])
        sens = None if model is None else rate_sensitivity(model, runs[0].rule)
        agg = at_one_width([(a.width, j) for a, j in judged], tol=POINT_RTOL)
        counted = sens is not None and sens <= POINT_MAX_SENSITIVITY
        note = "n/a" if sens is None else f"{sens:.3f}"
        parts.add(
            f"{label} (point test, rate sensitivity to lambda_min {note})",
            agg,
            judged,
            (f"{runs[0].record.experiment}_rates",),
            counted=counted,
        )
    tol = {**_LIMIT_TOL, "POINT_RTOL": POINT_RTOL, "POINT_MAX_SENSITIVITY": POINT_MAX_SENSITIVITY}
    return parts.claim(cid, tol, "per-step rate s (slope of log L); deviation = s_net/s_kernel - 1")


def _c3(by_kind: dict[str, list[RunAnalysis]]) -> Claim:
    parts = _Parts()
    runs = [
        a
        for k in (LADDER, SINGLE)
        for a in by_kind.get(k, [])
        if a.rule.family is Family.NESTEROV_SCHEDULED
    ]
    for label, group in _group(runs, _setting).items():
        judged = [(a, _judge(a, judge_power_law).within(KERNEL_MODEL_RTOL)) for a in group]
        agg = at_one_width([(a.width, j) for a, j in judged], tol=KERNEL_MODEL_RTOL)
        eid = group[0].record.experiment
        parts.add(label, agg, judged, (f"{eid}_nag_loglog", f"{eid}_overlay"))
    tol = {
        "KERNEL_MODEL_RTOL": KERNEL_MODEL_RTOL,
        "POWER_LAW_RTOL": POWER_LAW_RTOL,
        "SMALL_STEP_FACTOR": SMALL_STEP_FACTOR,
        "SMALL_STEP_WINDOW": SMALL_STEP_WINDOW,
        "MIN_SEEDS": MIN_SEEDS,
    }
    return parts.claim(
        "C3",
        tol,
        "window exponent p (E_k ~ k^-p on [K/4, K], K = r/h0); deviation = p_net/p_kernel - 1",
    )


def _c7(by_kind: dict[str, list[RunAnalysis]]) -> Claim:
    parts = _Parts()
    for kind in (LADDER, SINGLE):
        runs = [a for a in by_kind.get(kind, []) if a.rule.family is Family.NESTEROV_SCHEDULED]
        for label, group in _group(runs, _setting).items():
            judged = [(a, _judge(a, judge_crossover).within(KERNEL_MODEL_RTOL)) for a in group]
            pairs = [(a.width, j) for a, j in judged]
            if kind == LADDER:
                agg = width_limit(pairs, tol=KERNEL_MODEL_RTOL, band=WIDTH_SLOPE_BAND)
            else:
                agg = at_one_width(pairs, tol=KERNEL_MODEL_RTOL)
            # a setting whose curves cannot reach the crossover above the floor is reported
            # but not counted (docs/verdicts.md §6); every other outcome counts
            blind = all("cannot be seen" in j.note for _, j in judged)
            eid = group[0].record.experiment
            parts.add(
                f"{label} ({'width limit' if kind == LADDER else 'one width'})",
                agg,
                judged,
                ("C7_deviation_vs_width", f"{eid}_crossover"),
                counted=not blind,
            )
    tol = {**_LIMIT_TOL, "POWER_LAW_RTOL": POWER_LAW_RTOL, "CROSSOVER_REACH": CROSSOVER_REACH}
    return parts.claim(
        "C7",
        tol,
        "per-step rate s after the crossover on [K/4, K], K >= "
        f"{CROSSOVER_REACH:g} r/h0; deviation = s_net/s_kernel - 1",
    )


@dataclass(frozen=True)
class Needs:
    """The runs a claim reads: theory-mode runs of one of ``kinds`` whose optimizer is of one
    of ``families`` (any optimizer when empty). A store without any is not the claim's
    experiment, so the claim is left out rather than judged inconclusive."""

    kinds: tuple[str, ...]
    families: tuple[Family, ...] = ()

    def met_by(self, a: RunAnalysis) -> bool:
        return (
            a.config.get("mode") == "theory"
            and a.kind in self.kinds
            and (not self.families or a.rule.family in self.families)
        )

    def describe(self) -> str:
        """E.g. ``hb runs of kind theory-ladder or theory-point``."""
        names = [cls.name for f in self.families for cls in rules_of(f)]
        what = "/".join(names) + " runs" if names else "runs"
        return f"{what} of kind {' or '.join(self.kinds)}"


#: What each claim reads (the module docstring's kinds; C6 any width ladder).
NEEDS: dict[str, Needs] = {
    "C1": Needs((LADDER, POINT), (Family.GD,)),
    "C2": Needs((LADDER, POINT), (Family.HEAVY_BALL,)),
    "C3": Needs((LADDER, SINGLE), (Family.NESTEROV_SCHEDULED,)),
    "C4": Needs((LADDER, POINT), (Family.NESTEROV_CONSTANT,)),
    "C5": Needs((LADDER, POINT), (Family.HIGHER_ORDER,)),
    "C6": Needs((LADDER,)),
    "C7": Needs((LADDER, SINGLE), (Family.NESTEROV_SCHEDULED,)),
}
#: Claims beyond the paper's, judged when a store has their runs and otherwise left out
#: without a note (only the ``theory`` preset runs them): C8, deep networks.
EXTRA_NEEDS: dict[str, Needs] = {"C8": Needs((DEPTH,))}


def _applies(cid: str, analyses: list[RunAnalysis]) -> bool:
    needs = NEEDS.get(cid) or EXTRA_NEEDS[cid]
    return any(needs.met_by(a) for a in analyses)


def omitted_claims(analyses: list[RunAnalysis]) -> list[dict[str, str]]:
    """The claims left out for lack of the runs they read: ``{"id", "needs"}`` each, in
    claim order (empty when every claim applies)."""
    return [
        {"id": cid, "needs": needs.describe()}
        for cid, needs in NEEDS.items()
        if not _applies(cid, analyses)
    ]


def omitted_sentence(omitted: list[dict[str, str]]) -> str:
    """One sentence naming the left-out claims and what each needs ("" when none is)."""
    if not omitted:
        return ""
    parts = "; ".join(f"{o['id']} needs {o['needs']}" for o in omitted)
    return (
        f"Claims left out because the store holds none of the theory-mode runs they read "
        f"(an experiment's `kind`, docs/guide.md): {parts}."
    )


def evaluate_claims(analyses: list[RunAnalysis]) -> list[Claim]:
    """Those of C1-C8 whose runs (:data:`NEEDS`) the analysed runs hold, judged from the
    theory-mode runs (module docstring); a claim with runs but too little evidence is
    inconclusive."""
    by_kind = defaultdict(list)
    for a in analyses:
        if a.config.get("mode") == "theory":
            by_kind[a.kind].append(a)
    judges: dict[str, Callable[[], Claim]] = {
        "C1": lambda: _linear_claim("C1", by_kind),
        "C2": lambda: _linear_claim("C2", by_kind),
        "C3": lambda: _c3(by_kind),
        "C4": lambda: _linear_claim("C4", by_kind),
        "C5": lambda: _linear_claim("C5", by_kind),
        "C6": lambda: c6_claim(by_kind.get(LADDER, []), Claim),
        "C7": lambda: _c7(by_kind),
        "C8": lambda: c8_claim(by_kind.get(DEPTH, []), Claim, HYPOTHESES["C8"], STATEMENTS["C8"]),
    }
    return [judge() for cid, judge in judges.items() if _applies(cid, analyses)]
