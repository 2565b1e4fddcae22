"""Notebook findings E2 and E4: is there a best width (docs/paper.md E2, E4)?

Per beta (HB) / r (NAG): seed mean, standard error and range of the loss at the last
epoch per width. An interior minimum counts only if the best interior seed-mean is below the
best edge seed-mean by more than :data:`NOISE_MULTIPLE` standard errors of the difference, and
only if it is not at the stability edge, i.e. the next wider width has
``h_max = lr lambda_max(K)`` above the method's stable limit (the rule's
``stable_limit_formula``: HB ``2(1 + beta)``, scheduled Nesterov ``4/3`` as ``beta_k -> 1``;
docs/mathematics.md §3): the loss then rises past the
minimum because the wider networks are beyond the stable step, not by the paper's effect. A
minimum inside the seed noise is "not reproduced" (the presets run >= 4 seeds, enough for a
standard error; a single seed gives "inconclusive").
"""

from __future__ import annotations

import math

from ..optim import Family, rules_of
from ._evidence import fmt_number
from ._finding import Finding, finding, momentum_key
from ._run_stats import cell, final_loss, group_by, mean_hmax, runs_of, seed_stats, stable_limit
from .summary import RunAnalysis

__all__ = ["NOISE_MULTIPLE", "SE_MIN_SEEDS", "best_width"]

#: E2/E4: an interior minimum must beat the best edge by this many standard errors of the
#: difference (the usual two-standard-error rule; fixed before any run was judged).
NOISE_MULTIPLE = 2.0
#: E2/E4: seeds per width needed for a standard error (fewer: inconclusive).
SE_MIN_SEEDS = 2


# --------------------------------------------------------------------------------------------
# E2 / E4: the best width.


def _judge_widths(ms, st, hmax, limit, name) -> tuple[str, str]:
    """("ok" | "not" | "undecided", reason) for one beta / r (module docstring)."""
    if len(ms) < 3:
        return "undecided", f"{len(ms)} width(s): no interior"
    if min(st[m]["n"] for m in ms) < SE_MIN_SEEDS:
        return "undecided", f"fewer than {SE_MIN_SEEDS} seeds at some width: no standard error"
    bi = min(ms[1:-1], key=lambda m: st[m]["mean"])
    be = min((ms[0], ms[-1]), key=lambda m: st[m]["mean"])
    mi, me = st[bi]["mean"], st[be]["mean"]
    if not math.isfinite(mi):
        return "not", "every interior width has a diverged seed"
    se = math.hypot(st[bi]["se"], st[be]["se"]) if math.isfinite(me) else 0.0
    gap = f"best edge - best interior = {fmt_number(me - mi)} vs {NOISE_MULTIPLE:g} SE = " + (
        fmt_number(NOISE_MULTIPLE * se)
    )
    if not me - mi > NOISE_MULTIPLE * se:
        where = f"at the edge m = {be}" if me <= mi else f"at m = {bi}, inside the seed noise"
        return "not", f"lowest seed-mean {where} ({gap})"
    nxt = ms[ms.index(bi) + 1]
    if hmax[nxt] is None or limit is None:
        return "undecided", (
            f"interior minimum at m = {bi} stands out ({gap}); stability edge "
            f"not checked: h_max of m = {nxt} unknown"
        )
    if hmax[nxt] > limit:
        return "not", (
            f"interior minimum at m = {bi} stands out ({gap}) but sits at the stability edge: "
            f"the next width m = {nxt} has h_max = {fmt_number(hmax[nxt])} > {name}, so the loss "
            "rises past it because those networks are beyond the stable step"
        )
    return "ok", f"interior minimum at m = {bi} stands out ({gap}), below the stability edge"


def _stability_note(ms, st, hmax, limit, name) -> str:
    known = {m: h for m, h in hmax.items() if h is not None}
    if not known or limit is None:
        return "h_max unknown (lambda_max(K) not stored)"
    above = [m for m in ms if m in known and known[m] > limit]
    below = [m for m in ms if m in known and known[m] <= limit]
    if not above:
        return f"no width exceeds {name} (h_max <= {fmt_number(max(known.values()))})"
    listed = ", ".join(f"{m} ({fmt_number(known[m])})" for m in above)
    last = f"last width below it: m = {below[-1]}" if below else "no width below it"
    best = min(ms, key=lambda m: st[m]["mean"])
    nxt = ms[ms.index(best) + 1] if best != ms[-1] else None
    edge = nxt is not None and nxt in known and known[nxt] > limit
    where = "sits at the stability edge" if edge else "is not at the stability edge"
    return f"h_max > {name} at m = {listed}; {last}; the lowest seed-mean (m = {best}) {where}"


def best_width(eid: str, runs: list[RunAnalysis], family: Family) -> Finding:
    key = momentum_key(family)
    chosen = runs_of(runs, family)
    steps = chosen[0].record.steps if chosen else 200
    # the family's stable limit as printed (docs/mathematics.md §3)
    name = (chosen[0].rule if chosen else rules_of(family)[0]).stable_limit_formula
    name = name or "the stable limit"
    statement = (
        f"for every {key}, the seed-mean loss at epoch {steps} is lowest at a width strictly "
        "inside the grid, standing out of the seed noise, and not at the stability edge (the "
        f"next wider width's h_max = lr lambda_max(K) above {name})"
    )
    criterion = (
        f"reproduced if, for every {key}, the best interior seed-mean is below the best edge "
        f"seed-mean by more than {NOISE_MULTIPLE:g} standard errors of the difference and the "
        f"next wider width has h_max <= {name}; not reproduced if that fails for some {key}"
    )
    constants: dict[str, float | str] = {
        "NOISE_MULTIPLE": NOISE_MULTIPLE,
        "SE_MIN_SEEDS": SE_MIN_SEEDS,
    }
    if not chosen:
        return finding(eid, runs, statement, "inconclusive", "no runs stored", criterion, constants)
    parts, states, table = [], [], []
    for value, group in group_by(chosen, lambda a: a.rule.params[key]).items():
        widths = group_by(group, lambda a: a.width)
        ms = list(widths)
        st = {m: seed_stats([final_loss(a) for a in g]) for m, g in widths.items()}
        hmax = {m: mean_hmax(g) for m, g in widths.items()}
        limit = stable_limit(group[0].rule)
        constants[f"h_limit({key}={value:g})"] = cell(limit)
        label = f"{name} = {fmt_number(limit)}"
        state, reason = _judge_widths(ms, st, hmax, limit, label)
        states.append(state)
        for m in ms:
            h = hmax[m]
            above = "unknown" if h is None or limit is None else ("yes" if h > limit else "no")
            table.append(
                {
                    key: value,
                    "width": m,
                    "seeds": st[m]["n"],
                    "mean": cell(st[m]["mean"]),
                    "se": cell(st[m]["se"]),
                    "min": cell(st[m]["min"]),
                    "max": cell(st[m]["max"]),
                    "h_max": cell(hmax[m]),
                    "above_limit": above,
                }
            )
        parts.append(f"{key}={value:g}: {reason}; {_stability_note(ms, st, hmax, limit, label)}")
    verdict = (
        "not reproduced"
        if "not" in states
        else "inconclusive"
        if "undecided" in states
        else "reproduced"
    )
    return finding(eid, runs, statement, verdict, "; ".join(parts), criterion, constants, table)
