"""The hyperparameter search of ``ntkdyn.advisor`` (docs/advise.md).

Squared losses are searched in the kernel eigenbasis: every candidate rule of a family runs its
per-mode recurrence ``z_k = A_k z_{k-1} - lr b_k (lam * z_{k-1,0})`` (docs/mathematics.md §3)
in lockstep with the others (``_advise_lockstep``), and the run stops at the first step at
which any candidate reaches the target: that step is the best the grid can do, so no candidate
is stepped further than the winner. A coarse grid inside the stable
region (``lr <= (1 - STEP_SAFETY) lr_max`` at each candidate's momentum parameters, with the
textbook optimal pairs among its points) is refined three times around its best point.

Other losses (logistic, cross-entropy) have no per-mode form: a few candidates per family are
each predicted by the linearised model's exact function-space iteration
(``Linearized.predict``), without refinement.

Every rule is built from its spec class and run through its own ``(A_k, b_k)``; the families
differ only in how their hyperparameters are laid out as search coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._advise_lockstep import Lockstep, lockstep
from .dynamics import optimal_parameters, stability
from .optim.rules import GD, HeavyBall, HigherOrderMomentum, LinearRule, Nesterov, NesterovSC
from .validity import KERNEL_DRIFT_THRESHOLD

__all__ = [
    "FAMILIES",
    "STEP_SAFETY",
    "Space",
    "function_space_grid",
    "lr_max",
    "search_family",
    "spaces",
    "steps_to_target",
    "textbook_rules",
]

#: The recommended step keeps ``lr <= (1 - STEP_SAFETY) lr_max``. The kernel may drift by
#: ``KERNEL_DRIFT_THRESHOLD`` (relative) before the kernel model is declared broken, so
#: ``lambda_max`` may grow by that factor; a step stable on the grown kernel needs
#: ``lr (1 + delta) lambda_max <= h*``, i.e. ``lr <= lr_max / (1 + delta)``:
#: ``STEP_SAFETY = delta / (1 + delta)`` (= 0.0476; docs/advise.md).
STEP_SAFETY = KERNEL_DRIFT_THRESHOLD / (1.0 + KERNEL_DRIFT_THRESHOLD)
#: The rule class of each family, in the order the advisor lists them; a family is named by
#: its rule's spec name (``gd``, ``hb``, ``nesterov-sc``, ``nesterov`` (scheduled by ``r``),
#: ``hom``), the names ``--optimizer`` takes.
FAMILY_RULES: tuple[type[LinearRule], ...] = (
    GD,
    HeavyBall,
    NesterovSC,
    Nesterov,
    HigherOrderMomentum,
)
FAMILIES = tuple(cls.name for cls in FAMILY_RULES)
#: Refinement rounds around the best grid point; each halves the spacing of a 5-point stencil.
REFINE_ROUNDS = 3


def steps_to_target(losses: np.ndarray, target: float) -> int | None:
    """The first step ``k`` with ``losses[k] <= target * losses[0]``; None if never, or if the
    curve is not finite before it (a diverged run), or ``losses[0]`` is not a positive number.

    The one definition of steps-to-target: the advisor applies it to predicted curves and the
    verification to measured ones.
    """
    curve = np.asarray(losses, dtype=np.float64).ravel()
    if curve.size == 0 or not (np.isfinite(curve[0]) and curve[0] > 0):
        return None
    # the scan stops at the first step reached or not finite (NaN, inf: diverged)
    stop = np.flatnonzero(~(curve > target * curve[0]) | ~np.isfinite(curve))
    if not stop.size:
        return None
    k = int(stop[0])
    return k if np.isfinite(curve[k]) else None


def lr_max(rule: LinearRule, lambda_max: float) -> float:
    """The largest stable lr of ``rule``'s momentum parameters on a kernel whose largest
    (effective) eigenvalue is ``lambda_max`` (``dynamics.stability``)."""
    return float(stability(np.array([lambda_max]), rule).max_stable_lr)


# --------------------------------------------------------------------------------------------
# Search spaces.


@dataclass(frozen=True)
class Space:
    """A family's hyperparameters as search coordinates.

    ``build(coords)`` gives the rule (None outside the family's domain); ``lr`` is always the
    last coordinate, as the fraction ``f`` of the capped stable step ``(1 - STEP_SAFETY)
    lr_max`` at the other coordinates' momentum parameters.
    """

    family: str
    low: np.ndarray
    high: np.ndarray
    grid: np.ndarray  # (G, d), the textbook points included
    spacing: np.ndarray  # (d,), the coarse grid's spacing
    build: Callable[[np.ndarray], LinearRule | None]


def _capped(rule: LinearRule, f: float, lam_max: float) -> LinearRule:
    return rule.with_lr(f * (1.0 - STEP_SAFETY) * lr_max(rule, lam_max))


def _fraction(lr: float, rule: LinearRule, lam_max: float) -> float:
    """``lr`` as a fraction of the capped stable step of ``rule``, clipped to ``(0, 1]``."""
    return min(1.0, lr / ((1.0 - STEP_SAFETY) * lr_max(rule, lam_max)))


def _beta(u: float) -> float:
    return 1.0 - 10.0**u


def _u(beta: float, low: float) -> float:
    return max(low, math.log10(max(1.0 - beta, 10.0**low)))


def _product(*axes: np.ndarray) -> np.ndarray:
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)


def spaces(lam: np.ndarray, *, coarse: bool = False) -> dict[str, Space]:
    """The search space of every family on effective eigenvalues ``lam`` (ascending). With
    ``coarse``, the small grids of the function-space search (no textbook points)."""
    lam_max = float(lam[-1])
    positive = lam[lam > 0]
    lam_min = float(positive[0]) if positive.size else 0.0
    kappa = lam_max / lam_min if lam_min > 0 else 1e12
    # momentum 1 - 10^u reaches past the optimal 1 - 2/sqrt(kappa) by a decade
    u_low = max(-6.0, min(-3.0, -0.5 * math.log10(kappa) - 1.0))

    def gd(c: np.ndarray) -> LinearRule | None:
        return _capped(GD(1.0), float(c[0]), lam_max)

    def momentum(cls: type[HeavyBall] | type[NesterovSC]) -> Callable[[np.ndarray], LinearRule]:
        def build(c: np.ndarray) -> LinearRule:
            return _capped(cls(1.0, beta=_beta(float(c[0]))), float(c[1]), lam_max)

        return build

    def hom(c: np.ndarray) -> LinearRule | None:
        total, b2 = _beta(float(c[0])), float(c[1])
        b1 = total - b2
        if not (0.0 <= b1 < 1.0 and -1.0 < b2 < 1.0):
            return None
        return _capped(HigherOrderMomentum(1.0, b1=b1, b2=b2), float(c[2]), lam_max)

    def nag(c: np.ndarray) -> LinearRule:
        return _capped(Nesterov(1.0, r=2.0 ** float(c[0])), float(c[1]), lam_max)

    if coarse:
        f = np.array([0.25, 0.5, 1.0])
        u = np.log10([0.5, 0.1])
        grids = {
            GD.name: f[:, None],
            HeavyBall.name: _product(u, f),
            NesterovSC.name: _product(u, f),
            Nesterov.name: _product(np.log2([3.0]), f),
            HigherOrderMomentum.name: _product(np.log10([0.1]), np.array([0.0, 0.2]), f),
        }
    else:
        f = np.linspace(1.0 / 16, 1.0, 16)
        u = np.linspace(u_low, 0.0, 16)
        grids = {
            GD.name: np.linspace(1.0 / 32, 1.0, 32)[:, None],
            HeavyBall.name: _product(u, f),
            NesterovSC.name: _product(u, f),
            Nesterov.name: _product(np.linspace(0.0, 4.0, 9), np.linspace(1.0 / 12, 1.0, 12)),
            HigherOrderMomentum.name: _product(
                np.linspace(u_low, 0.0, 10), np.linspace(-0.4, 0.4, 5), f[1::2]
            ),
        }
        grids = _with_textbook(grids, lam, lam_max, kappa, u_low)
    d_u = -u_low / 15.0
    return {
        GD.name: Space(
            GD.name, np.array([0.0]), np.array([1.0]), grids[GD.name], np.array([1 / 32]), gd
        ),
        **{
            cls.name: Space(  # one momentum beta and the step: the same space for HB and NAG-SC
                cls.name,
                np.array([u_low, 0.0]),
                np.array([0.0, 1.0]),
                grids[cls.name],
                np.array([d_u, 1 / 16]),
                momentum(cls),
            )
            for cls in (HeavyBall, NesterovSC)
        },
        Nesterov.name: Space(
            Nesterov.name,
            np.array([-1.0, 0.0]),
            np.array([5.0, 1.0]),
            grids[Nesterov.name],
            np.array([0.5, 1 / 12]),
            nag,
        ),
        HigherOrderMomentum.name: Space(
            HigherOrderMomentum.name,
            np.array([u_low, -0.9, 0.0]),
            np.array([0.0, 0.9, 1.0]),
            grids[HigherOrderMomentum.name],
            np.array([-u_low / 9.0, 0.2, 1 / 8]),
            hom,
        ),
    }


def _with_textbook(
    grids: dict[str, np.ndarray], lam: np.ndarray, lam_max: float, kappa: float, u_low: float
) -> dict[str, np.ndarray]:
    """The grids with the textbook parameters added (``optimal_parameters``: GD's and HB's
    optimal pairs, HB's as HOM with ``b2 = 0``; NAG-SC at ``lr = 1/lambda_max``,
    ``beta = (sqrt kappa - 1)/(sqrt kappa + 1)``; NAG at ``lr = 1/lambda_max``, ``r = 3``),
    their step clipped to the capped stable step."""
    best = optimal_parameters(lam)
    root = math.sqrt(kappa)
    beta_sc = (root - 1.0) / (root + 1.0)
    hb = HeavyBall(1.0, beta=min(best.hb_beta, _beta(u_low)))
    sc = NesterovSC(1.0, beta=min(beta_sc, _beta(u_low)))
    u_hb = _u(hb.beta, u_low)
    f_hb = _fraction(best.hb_lr, hb, lam_max)
    extra = {
        GD.name: [[_fraction(best.gd_lr, GD(1.0), lam_max)]],
        HeavyBall.name: [[u_hb, f_hb]],
        NesterovSC.name: [[_u(sc.beta, u_low), _fraction(1.0 / lam_max, sc, lam_max)]],
        Nesterov.name: [[math.log2(3.0), _fraction(1.0 / lam_max, Nesterov(1.0, r=3.0), lam_max)]],
        HigherOrderMomentum.name: [[u_hb, 0.0, f_hb]],
    }
    return {k: np.vstack([g, np.array(extra[k], dtype=np.float64)]) for k, g in grids.items()}


def textbook_rules(lam: np.ndarray) -> dict[str, LinearRule]:
    """The textbook point of each family as a rule (the last grid point, :func:`spaces`)."""
    out = {}
    for name, space in spaces(lam).items():
        rule = space.build(space.grid[-1])
        assert rule is not None
        out[name] = rule
    return out


# --------------------------------------------------------------------------------------------
# The search.


def _evaluate(
    space: Space, coords: np.ndarray, lam: np.ndarray, xi0: np.ndarray, target: float, budget: int
) -> tuple[list[LinearRule], np.ndarray, Lockstep] | None:
    built = [(space.build(c), c) for c in coords]
    kept = [(r, c) for r, c in built if r is not None and r.lr > 0]
    if not kept:
        return None
    rules = [r for r, _ in kept]
    return rules, np.array([c for _, c in kept]), lockstep(lam, xi0, rules, target, budget)


def _best(result: Lockstep) -> tuple[int, float, int]:
    """Index of the best candidate (fewest steps, then the lowest loss at the stop) and its
    key ``(steps or budget + 1, ratio)``."""
    big = np.iinfo(np.int64).max
    steps = np.where(result.steps >= 0, result.steps, big)
    order = np.lexsort((result.ratio, steps))
    i = int(order[0])
    return i, float(result.ratio[i]), int(steps[i])


def search_family(
    space: Space, lam: np.ndarray, xi0: np.ndarray, target: float, budget: int
) -> tuple[LinearRule, int]:
    """The family's rule with the fewest predicted steps to ``target`` (module docstring) and
    the number of rules evaluated."""
    found = _evaluate(space, space.grid, lam, xi0, target, budget)
    assert found is not None  # every family's grid has buildable points
    rules, coords, result = found
    i, ratio, steps = _best(result)
    best_rule, best_c, key = rules[i], coords[i], (steps, ratio)
    count = len(rules)
    spacing = space.spacing.copy()
    offsets = _product(*([np.arange(-2, 3)] * spacing.size))
    for _ in range(REFINE_ROUNDS):
        spacing = spacing / 2.0
        local = np.clip(best_c + offsets * spacing, space.low, space.high)
        local = np.unique(local, axis=0)
        # nothing slower than the best so far can win: it bounds the steps of the next round
        reach = min(budget, key[0])
        found = _evaluate(space, local, lam, xi0, target, reach)
        if found is None:
            continue
        rules, coords, result = found
        count += len(rules)
        i, ratio, steps = _best(result)
        if (steps, ratio) < key:
            best_rule, best_c, key = rules[i], coords[i], (steps, ratio)
    return best_rule, count


def function_space_grid(lam: np.ndarray, family: str) -> list[LinearRule]:
    """The few rules of ``family`` the function-space search predicts (module docstring)."""
    space = spaces(lam, coarse=True)[family]
    rules = [space.build(c) for c in space.grid]
    return [r for r in rules if r is not None]
