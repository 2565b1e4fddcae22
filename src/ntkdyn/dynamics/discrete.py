"""Exact discrete loss curves of a linear rule on the kernel quadratic (docs/mathematics.md §3).

In the kernel regime the prediction error ``e = u - y`` follows the optimizer run on
``F(e) = 1/2 e^T K e`` with the *effective* kernel ``K = c H`` (loss ``c/2 sum e_i^2``:
half-sum ``c = 1``, ``MSELoss(mean)`` ``c = 2/n``; docs/mathematics.md §0). ``K`` must already hold ``c``.
With ``K = sum_j lambda_j q_j q_j^T`` every eigenmode evolves on its own: the rule's register
machine ``z_k = A_k z_{k-1} - lr b_k g`` becomes, for mode ``j`` with ``h_j = lr lambda_j``,

    z_{j,k} = M_k(h_j) z_{j,k-1},      M_k(h) = A_k - h b_k e_0^T,
    z_{j,0} = (xi_{j,0}, 0, ..., 0),   xi_{j,0} = q_j^T e_0,

and the reported loss is ``L_k = 1/2 ||e_k||^2 = 1/2 sum_j z_{j,k,0}^2`` (multiply by ``c`` to
get the value of the loss actually minimised, e.g. ``2/n`` for MSELoss). Everything is derived
from the rule's ``(A_k, b_k)``; no optimizer family is special-cased.

Two exact schemes, derived from ``(A_k, b_k)`` alone (no eigendecomposition of ``M``, so
critical damping needs no care): a block-power scheme with one GEMM for all losses once the
matrices are constant (from ``rule.constant_from``), and a vectorised step loop for scheduled
rules; their rounding (relative to the loss envelope, so ``discrete_modes`` forms ``xi``
explicitly) is in docs/mathematics.md §3, "How predict_discrete computes it".

A diverging rule is a valid input: overflowed losses are reported as ``+inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._budget import check_fits, curve_bytes
from .._validate import finite_vector, integer
from ..kernels import Spectrum, spectrum
from ..optim.rules import LinearRule, Rule, parse

__all__ = ["DiscretePrediction", "discrete_modes", "predict_discrete"]

#: Memory cap (float64 elements) of the block-power work arrays; larger problems are processed
#: in chunks of modes.
_BLOCK_ELEMS = 1 << 22
#: States below this magnitude are flushed to zero in the step loop (their squares, < 1e-500,
#: vanish from the loss in float64; subnormal numbers would slow every step down).
_FLUSH = 1e-250
_FLUSH_EVERY = 16


@dataclass(frozen=True)
class DiscretePrediction:
    """Per-mode trajectories of :func:`discrete_modes`.

    Attributes:
        loss: ``(steps + 1,)`` losses ``L_k = 1/2 sum_j xi_{j,k}^2``.
        xi: ``(steps + 1, n)`` register 0 of every eigenmode, ``xi_{j,k} = q_j^T e_k``, in the
            order of ``eigenvalues`` (ascending).
        eigenvalues: ``(n,)`` eigenvalues ``lambda_j`` of ``K`` (ascending, clipped at 0).
        h: ``(n,)`` per-mode steps ``h_j = lr lambda_j``.
        rule: the rule's spec string.
    """

    loss: np.ndarray
    xi: np.ndarray
    eigenvalues: np.ndarray
    h: np.ndarray
    rule: str

    @property
    def steps(self) -> int:
        return self.loss.shape[0] - 1


# --------------------------------------------------------------------------------------------
# Boundary checks.


def _check_rule(rule: Rule | str) -> LinearRule:
    if isinstance(rule, str):
        rule = parse(rule)
    if not isinstance(rule, Rule):
        raise ValueError(f"`rule` must be an optimizer rule or spec string, got {rule!r}")
    if not rule.is_linear or not isinstance(rule, LinearRule):
        raise ValueError(
            f"`rule` {rule.name!r} is not linear: {rule.name} has no linear prediction "
            "(no per-mode recurrence); train it instead"
        )
    return rule


# --------------------------------------------------------------------------------------------
# The two schemes. States are register-major (s, n) when stepping, mode-major (n, s) in blocks.


def _step_modes(A, b, h, Z, loss_out, xi_out=None):
    """Run ``z_k = A_k z_{k-1} - b_k (h * z_{k-1,0})`` for stacked ``A (T,s,s)``, ``b (T,s)``.

    ``Z`` is the ``(s, n)`` start state. Writes losses into ``loss_out (T,)`` and register 0
    into ``xi_out (T, n)`` if given; returns the final state. One fused GEMM per step,
    ``[A_k | -b_k] @ [z; h z_0]``. Entries below ``_FLUSH`` are zeroed every ``_FLUSH_EVERY``
    steps: their squares underflow in the loss anyway, and subnormal arithmetic is ~10x slower.
    """
    T, s = b.shape
    n = Z.shape[1]
    C = np.ascontiguousarray(np.concatenate([A, -b[:, :, None]], axis=2))
    cur = np.empty((s + 1, n))
    cur[:s] = Z
    np.multiply(h, Z[0], out=cur[s])
    nxt = np.empty_like(cur)
    for k in range(T):
        np.matmul(C[k], cur, out=nxt[:s])
        x0 = nxt[0]
        np.multiply(h, x0, out=nxt[s])
        loss_out[k] = 0.5 * np.dot(x0, x0)
        if xi_out is not None:
            xi_out[k] = x0
        if k % _FLUSH_EVERY == 0:
            nxt[np.abs(nxt) < _FLUSH] = 0.0
        cur, nxt = nxt, cur
    return cur[:s].copy()


def _block_power(A, b, h, z, loss, xi=None):
    """Losses (and register 0) of ``z_m = M^m z``, ``m = 0..count-1``, ``M = A - h b e_0^T``.

    ``z`` is mode-major ``(n, s)``; results go to ``loss (count,)`` and ``xi (count, n)``
    if given (offset 0 is ``z`` itself). Block size ``B = ceil(sqrt(count))``: ``B`` row steps plus
    ``ceil(count / B)`` block steps, then one GEMM over the symmetric register pairs.
    """
    n, s = z.shape
    count = loss.shape[0]
    B = math.isqrt(count - 1) + 1
    nb = -(-count // B)
    pairs = [(a, c) for a in range(s) for c in range(a, s)]
    loss[:] = 0.0
    chunk = max(1, _BLOCK_ELEMS // ((B + nb) * len(pairs)))
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        hc, m = h[sl], min(n, lo + chunk) - lo
        P = np.broadcast_to(np.eye(s), (m, s, s)).copy()  # M^i per mode, (m, s, s)
        rows = np.empty((B, s, m))  # e_0^T M^i, register-major for contiguous pair products
        for i in range(B):
            rows[i] = P[:, 0, :].T
            flat = P.reshape(m * s, s)
            Pb = (flat @ b).reshape(m, s)
            P = (flat @ A).reshape(m, s, s)
            P[:, :, 0] -= hc[:, None] * Pb
        states = np.empty((nb, s, m))  # M^{bB} z
        v = z[sl]
        for blk in range(nb):
            states[blk] = v.T
            v = np.einsum("jst,jt->js", P, v)
        if xi is not None:
            xc = np.zeros((nb, B, m))
            for a in range(s):
                xc += states[:, None, a, :] * rows[None, :, a, :]
            xc = xc.reshape(nb * B, m)[:count]
            xi[:, sl] = xc
            loss += 0.5 * np.einsum("kj,kj->k", xc, xc)
        else:
            R = np.empty((B, len(pairs), m))
            V = np.empty((nb, len(pairs), m))
            for p, (a, c) in enumerate(pairs):
                np.multiply(rows[:, a], rows[:, c], out=R[:, p])
                if a != c:
                    R[:, p] *= 2.0
                np.multiply(states[:, a], states[:, c], out=V[:, p])
            loss += 0.5 * (R.reshape(B, -1) @ V.reshape(nb, -1).T).T.reshape(-1)[:count]


# --------------------------------------------------------------------------------------------
# Entry point.


def predict_discrete(
    K: np.ndarray | Spectrum, e0: np.ndarray, rule: Rule | str, steps: int
) -> np.ndarray:
    """Exact loss curve ``L_k = 1/2 ||e_k||^2``, ``k = 0..steps``, of ``rule`` on the quadratic.

    Runs the per-eigenmode recurrences ``z_{j,k} = (A_k - h_j b_k e_0^T) z_{j,k-1}`` from
    ``z_{j,0} = (q_j^T e0, 0, ..., 0)`` with ``h_j = rule.lr * lambda_j(K)`` (docs/mathematics.md §3; module
    docstring). This equals training the linearised model ``u = u_0 + J (w - w_0)`` with
    ``rule.torch`` on the loss ``c/2 ||u - y||^2`` when ``K = c J J^T`` and ``e0 = u_0 - y``.

    Args:
        K: effective kernel ``c H`` as a symmetric PSD ``(n, n)`` array, or a
            :class:`~ntkdyn.kernels.Spectrum` with eigenvectors (build once, query many: pass
            ``spectrum(K, vectors=True)`` to avoid repeating the eigendecomposition). Validated
            by :func:`ntkdyn.kernels.spectrum`.
        e0: ``(n,)`` initial residual ``u_0 - y``.
        rule: a linear optimizer rule (or its spec string); Adam raises ValueError.
        steps: number of optimizer steps (>= 0).

    Returns:
        ``(steps + 1,)`` float64 losses (``+inf`` once a diverging rule overflows).

    Examples:
        Gradient descent on a 2 x 2 kernel (eigenvalues 1 and 3): each mode shrinks by
        ``1 - lr lambda_j`` per step, 0.75 and 0.25 here.

        >>> import numpy as np
        >>> from ntkdyn import predict_discrete
        >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
        >>> predict_discrete(K, np.array([1.0, 0.0]), "gd:lr=0.25", steps=3).round(6).tolist()
        [0.5, 0.15625, 0.080078, 0.044556]
    """
    return _run(K, e0, rule, steps, modes=False)[0]


def discrete_modes(
    K: np.ndarray | Spectrum, e0: np.ndarray, rule: Rule | str, steps: int
) -> DiscretePrediction:
    """:func:`predict_discrete` with every mode's trajectory ``xi (steps + 1, n)`` in the
    eigenbasis of ``K``; same arguments. ``discrete_modes(...).loss`` equals
    ``predict_discrete(...)`` up to the rounding of the two loss sums (module docstring)."""
    loss, xi, lam, h, spec = _run(K, e0, rule, steps, modes=True)
    assert xi is not None  # modes=True always records them
    return DiscretePrediction(loss=loss, xi=xi, eigenvalues=lam, h=h, rule=spec)


def _run(
    K: np.ndarray | Spectrum, e0: np.ndarray, rule: Rule | str, steps: int, *, modes: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, str]:
    """``(loss, xi or None, eigenvalues, h, rule spec)`` of the per-mode recurrences."""
    rule = _check_rule(rule)
    steps = integer("steps", steps, minimum=0)
    spec = spectrum(K, vectors=True)
    lam, Q = spec.eigenvalues, spec.eigenvectors
    assert Q is not None  # vectors=True
    e0 = finite_vector("e0", e0, lam.size, against="the kernel")
    per_step = rule.registers + 1 + (lam.size if modes else 0)
    check_fits(
        "steps", steps, "the predicted curve", curve_bytes(steps, per_step), "use fewer steps"
    )
    h = rule.lr * lam
    xi0 = Q.T @ e0
    s, n = rule.registers, lam.size
    Z = np.zeros((s, n))
    Z[0] = xi0

    loss = np.empty(steps + 1)
    xi = np.empty((steps + 1, n)) if modes else None
    loss[0] = 0.5 * np.dot(xi0, xi0)
    if xi is not None:
        xi[0] = xi0
    constant_from = rule.constant_from
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        first = steps if constant_from is None else min(steps, constant_from - 1)
        if first > 0:
            A, b = rule.schedule(first)
            xi_out = None if xi is None else xi[1 : first + 1]
            Z = _step_modes(A, b, h, Z, loss[1 : first + 1], xi_out)
        if constant_from is not None and steps > first:  # steps > first implies not None
            A, b = rule.step_matrices(constant_from)
            done = loss[first]  # the block scheme's offset 0 is step `first`, already written
            _block_power(
                A, b, h, np.ascontiguousarray(Z.T), loss[first:], None if xi is None else xi[first:]
            )
            loss[first] = done
        loss[~np.isfinite(loss)] = np.inf  # overflow of a diverging rule (inf - inf -> nan)
        np.maximum(loss, 0.0, out=loss)  # the pair GEMM can round a trough to -eps * envelope
    return loss, xi, lam, h, rule.spec
