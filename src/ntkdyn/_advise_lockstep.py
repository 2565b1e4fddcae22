"""Many rules on one kernel eigenbasis at once: the steps-to-target engine of the advisor.

Every eigenmode ``j`` of a rule with ``h_j = lr lam_j`` follows ``z_{j,k} = M_k(h_j) z_{j,k-1}``,
``M_k(h) = A_k - h b_k e_0^T`` (docs/mathematics.md §3), from ``z_{j,0} = (xi_{j,0}, 0, ...)``;
the loss relative to ``L_0`` is ``sum_j xi_{j,k}^2 / sum_j xi_{j,0}^2``. :func:`lockstep`
runs ``P`` rules of one register count together, as arrays over candidates x modes:

* rules with constant matrices (``constant_from == 1``) in blocks of ``B`` steps: the rows
  ``e_0^T M^i`` (``i = 1..B``) are formed once per mode, so a block's ``B`` losses are one
  contraction with the state and the state jumps by ``M^B`` (formed by squaring), with no
  Python work per step;
* the others (scheduled Nesterov) one step at a time, their ``(A_k, b_k)`` built in chunks.

The run stops at the first step at which any rule reaches the target (``until="first"``: no
rule can then beat it) or when every rule has reached it or diverged (``"all"``).

The parameter movement of the linearised model is tracked alongside: the registers are
``J^T alpha`` and ``e_k - e_0 = c H alpha_k``, so ``||theta_k - theta_0||^2 = alpha^T H alpha
= c sum_j (xi_{j,k} - xi_{j,0})^2 / lam_j`` with ``lam_j`` the eigenvalues of ``c H``; the
engine reports ``sum_j (xi_{j,k} - xi_{j,0})^2 / lam_j`` (the factor ``c`` cancels in every
ratio the advisor takes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .optim.rules import LinearRule

__all__ = ["DIVERGED_FACTOR", "Lockstep", "lockstep"]

#: A candidate whose loss exceeds ``L_0`` by this factor (or overflows) has diverged.
DIVERGED_FACTOR = 1e30
#: Work-array budget (float64 entries) of a block: sets ``B`` for ``P`` candidates.
_BLOCK_ENTRIES = 1 << 21
#: Largest block (a power of two).
_MAX_BLOCK = 256
#: Steps of a scheduled rule's matrices built at a time (each chunk is built from step 1).
_CHUNK = 4096


@dataclass(frozen=True)
class Lockstep:
    """What :func:`lockstep` found.

    Attributes:
        steps: ``(P,)`` steps to target, -1 where not reached (or diverged).
        ratio: ``(P,)`` ``L_k / L_0`` at the step the run stopped for that rule (its reach,
            the stop of the run, or inf once diverged).
        movement_max: ``(P,)`` the largest ``sum_j (xi_{j,k} - xi_{j,0})^2 / lam_j`` over the
            steps up to the rule's own stop (module docstring).
        movement_at: ``(P,)`` the same quantity at step ``at`` (NaN when not stepped to it).
    """

    steps: np.ndarray
    ratio: np.ndarray
    movement_max: np.ndarray
    movement_at: np.ndarray


class _State:
    """Per-candidate results, updated as blocks of steps come in."""

    def __init__(self, P: int, at: int):
        self.steps = np.full(P, -1, dtype=np.int64)
        self.ratio = np.ones(P)
        self.move_max = np.zeros(P)
        self.move_at = np.full(P, np.nan)
        self.at = at

    def record(
        self, live: np.ndarray, k0: int, loss: np.ndarray, moved: np.ndarray, target: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fold in the losses ``(p, B)`` and movements of steps ``k0 + 1 .. k0 + B`` of the
        ``live`` candidates; returns the masks (over ``live``) of those that reached the target
        and of those that diverged, each at its first such step in the block."""
        B = loss.shape[1]
        loss = np.where(np.isnan(loss), np.inf, loss)
        hit = loss <= target
        bad = ~(loss <= DIVERGED_FACTOR)
        stop = hit | bad
        any_stop = stop.any(axis=1)
        first = np.where(any_stop, np.argmax(stop, axis=1), B - 1)
        rows = np.arange(live.size)
        upto = np.arange(B)[None, :] <= first[:, None]
        moved = np.where(np.isnan(moved), np.inf, moved)
        self.move_max[live] = np.maximum(
            self.move_max[live], np.max(np.where(upto, moved, 0.0), axis=1)
        )
        if k0 < self.at <= k0 + B:
            i = self.at - k0 - 1
            self.move_at[live] = np.where(i <= first, moved[:, i], np.nan)
        reached = any_stop & hit[rows, first]
        diverged = any_stop & ~hit[rows, first]
        self.steps[live[reached]] = k0 + 1 + first[reached]
        self.ratio[live] = loss[rows, first]
        self.ratio[live[diverged]] = np.inf
        return reached, diverged

    def result(self) -> Lockstep:
        return Lockstep(self.steps, self.ratio, self.move_max, self.move_at)


def lockstep(
    lam: np.ndarray,
    xi0: np.ndarray,
    rules: Sequence[LinearRule],
    target: float,
    budget: int,
    *,
    until: str = "first",
    at: int = 0,
) -> Lockstep:
    """Steps to ``target`` (relative to ``L_0``) of each rule on eigenvalues ``lam`` (of the
    effective kernel) from modes ``xi0``, within ``budget`` steps (module docstring). All
    rules must have one register count."""
    lam = np.asarray(lam, dtype=np.float64)
    xi0 = np.asarray(xi0, dtype=np.float64)
    state = _State(len(rules), at)
    L0 = float(np.dot(xi0, xi0))
    if L0 <= 0 or budget < 1:
        return state.result()
    moving = lam > 0  # a mode of a zero eigenvalue never moves
    inv = np.where(moving, 1.0 / np.where(moving, lam, 1.0), 0.0)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        if all(r.constant_from == 1 for r in rules):
            _blocks(lam, xi0, inv, L0, rules, target, budget, until, state)
        else:
            _steps(lam, xi0, inv, L0, rules, target, budget, until, state)
    return state.result()


def _blocks(lam, xi0, inv, L0, rules, target, budget, until, state: _State) -> None:
    """Constant-matrix rules, ``B`` steps per contraction (module docstring)."""
    P, s, n = len(rules), rules[0].registers, lam.size
    mats = [r.step_matrices(1) for r in rules]
    A = np.stack([m[0] for m in mats])  # (P, s, s)
    b = np.stack([m[1] for m in mats])  # (P, s)
    h = np.array([r.lr for r in rules])[:, None] * lam[None, :]  # (P, n)
    M = np.broadcast_to(A[:, None], (P, n, s, s)).copy()  # per-mode M(h) = A - h b e_0^T
    M[..., :, 0] -= h[..., None] * b[:, None, :]
    B = _MAX_BLOCK
    while B > 1 and P * n * s * B > _BLOCK_ENTRIES:
        B //= 2
    B = min(B, 1 << max(0, (budget - 1).bit_length()))
    rows = np.empty((P, B, n, s))  # e_0^T M^i, i = 1..B
    row = M[..., 0, :]
    for i in range(B):
        rows[:, i] = row
        row = np.einsum("pns,pnst->pnt", row, M)
    jump = M.copy()  # M^B by squaring (B is a power of two)
    for _ in range(B.bit_length() - 1):
        jump = np.matmul(jump, jump)
    Z = np.zeros((P, n, s))
    Z[:, :, 0] = xi0
    live = np.arange(P)
    k0 = 0
    while k0 < budget and live.size:
        span = min(B, budget - k0)
        x = np.einsum("pins,pns->pin", rows[live, :span], Z)  # register 0 at k0 + 1 .. k0 + span
        loss = np.einsum("pin,pin->pi", x, x) / L0
        moved = np.einsum("pin,n->pi", (x - xi0) ** 2, inv)
        reached, diverged = state.record(live, k0, loss, moved, target)
        if until == "first" and reached.any():
            return
        keep = ~(reached | diverged)
        live, Z = live[keep], Z[keep]
        Z = np.einsum("pnst,pnt->pns", jump[live], Z)
        k0 += span


def _steps(lam, xi0, inv, L0, rules, target, budget, until, state: _State) -> None:
    """Scheduled rules, one step at a time (module docstring)."""
    P, s = len(rules), rules[0].registers
    h = np.array([r.lr for r in rules])[:, None] * lam[None, :]
    Z = np.zeros((P, s, lam.size))
    Z[:, 0] = xi0
    live = np.arange(P)
    # (A_k, b_k) do not depend on lr: one schedule per distinct set of other parameters
    keys = [tuple(sorted(r.params.items())) for r in rules]
    distinct = sorted(set(keys))
    which = np.array([distinct.index(key) for key in keys])
    first = {key: rules[keys.index(key)] for key in distinct}
    chunk_A = chunk_b = np.empty(0)
    for k in range(1, budget + 1):
        offset = (k - 1) % _CHUNK
        if offset == 0:  # the next chunk of every schedule, built from k = 1
            end = min(budget, k - 1 + _CHUNK)
            parts = [first[key].schedule(end) for key in distinct]
            chunk_A = np.stack([p[0][k - 1 :] for p in parts])[which]
            chunk_b = np.stack([p[1][k - 1 :] for p in parts])[which]
        A, b = chunk_A[live, offset], chunk_b[live, offset]
        Z = np.matmul(A, Z) - b[:, :, None] * (h[live] * Z[:, 0])[:, None, :]
        x = Z[:, 0]
        loss = (np.einsum("pj,pj->p", x, x) / L0)[:, None]
        moved = np.einsum("pj,j->p", (x - xi0) ** 2, inv)[:, None]
        reached, diverged = state.record(live, k - 1, loss, moved, target)
        if until == "first" and reached.any():
            return
        keep = ~(reached | diverged)
        if not keep.all():
            live, Z = live[keep], Z[keep]
            if not live.size:
                return
