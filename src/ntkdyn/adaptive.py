"""``ntkdyn.adaptive``: Adam's late phase, predicted on the window where it applies.

Adam and RMSprop have no kernel prediction: their curves are measured and their rates fitted
(:data:`ntkdyn.optim.NO_KERNEL_PREDICTION`). One theory does exist (docs/adaptive.md): once
Adam's second-moment estimate no longer takes in new gradients, a step with the denominator
``D_k = sqrt(v_hat_k) + eps`` known is

    ``d_k = a_k d_{k-1} - lr_k (1 - beta1) P_k g_k``,  ``P_k = diag(1 / D_k)``,

with ``lr_k = lr / (1 - beta1^k)`` and ``a_k = beta1 lr_k / lr_{k-1}`` (-> ``lr``, ``beta1``):
heavy ball with momentum ``beta1`` and step ``lr (1 - beta1)`` on the preconditioned gradient.
Linearised at step ``s``, the residual follows the heavy-ball register machine on the
preconditioned kernel ``K_P = c J P_s J^T`` (``J`` the Jacobian at ``s``, ``c`` the loss
factor), started from the residual ``e_s`` and the velocity ``u_s = J d_s``, ``d_s = -lr_s P_s
m_s`` the last step (Adam's first moment seen in function space). Two models of ``D_k``:

* ``"frozen"``: ``D_k = D_s``, a fixed preconditioner. Early in a run ``v_hat`` is a running
  mean of all past ``g^2`` and moves by ``~ 1/(2k)`` per step, so this holds for about
  ``2 threshold s`` steps (10% of ``s``).
* ``"decaying"`` (default): no new gradient enters ``v`` (``g_k^2 << v``, the late phase), so
  ``v_k = beta2^(k-s) v_s`` and ``D_k = r_k D_s`` up to ``eps``: the same kernel with the step
  scaled by ``1 / r_k`` (:func:`adam_late_phase`).

:func:`adam_late_phase` trains the network with Adam for ``start`` steps, builds ``K_P`` there
(``ntkdyn.linearize`` of the re-parametrised network, ``_preconditioned``), predicts the loss
from ``start`` on with the exact per-mode recurrences of ``ntkdyn.dynamics``, keeps training
to measure, and returns both with the *window* on which the prediction applies: from ``start``
until the measured denominators leave the assumed ones by more than
:data:`PRECONDITIONER_DRIFT_THRESHOLD`, or the network's loss leaves the validity band
(:data:`ntkdyn.validity.VALIDITY_BAND`) around the prediction, whichever comes first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import choice, finite_number, integer
from .dynamics.discrete import _step_modes
from .linearized import _tensor, linearize
from .losses import Loss, resolve_loss
from .optim.rules import Adam, HeavyBall, Rule, parse
from .validity import KERNEL_DRIFT_THRESHOLD, VALIDITY_BAND
from .verdicts.tolerances import FLOOR_REL

__all__ = ["PRECONDITIONER_DRIFT_THRESHOLD", "SECOND_MOMENTS", "LatePhase", "adam_late_phase"]

#: ``second_moment`` choices of :func:`adam_late_phase`.
SECOND_MOMENTS = ("frozen", "decaying")

#: Largest trace-weighted relative movement of the preconditioner ``P = 1/(sqrt(v_hat)+eps)``
#: since ``start`` on the prediction's window. If every entry of ``P`` moves by a relative
#: ``delta`` at most, ``(1 - delta) K_P <= K_P' <= (1 + delta) K_P``: every eigenvalue of the
#: kernel is off by ``delta`` at most, the kernel-drift case of ``ntkdyn.validity``, whose
#: threshold (band / 2 = 0.05) this is: a 5% kernel error leaves the 10% band only once a mode
#: has decayed by ``e^2``. The drift is weighted by each entry's share of ``trace K_P``
#: (``P_p ||J_p||^2``), so that entries the outputs do not depend on do not count.
PRECONDITIONER_DRIFT_THRESHOLD = KERNEL_DRIFT_THRESHOLD


@dataclass(frozen=True, eq=False)
class LatePhase:
    """Adam's late phase: the prediction from ``start``, the measurement, and the window.

    Attributes:
        rule: the Adam rule's spec.
        start: the step at which ``P`` is taken and the network linearised.
        measured: ``(start + steps + 1,)`` the network's loss from step 0.
        predicted: ``(steps + 1,)`` the predicted loss at steps ``start .. start + steps``.
        drift: ``(steps + 1,)`` the measured preconditioner drift at those steps (0 at
            ``start``; :data:`PRECONDITIONER_DRIFT_THRESHOLD`).
        window: ``(first, last)`` steps on which the prediction applies (``first = start``).
        reason: what ends the window: ``"preconditioner"`` (the second moment moved),
            ``"band"`` (the loss left the band around the prediction) or ``"horizon"``
            (neither, within the steps run).
        preconditioner_exit, band_exit: the first step past each criterion, or None.
        eigenvalues: ascending eigenvalues of ``K_P = c J P J^T`` at ``start``.
        heavy_ball: the heavy-ball rule Adam's late phase tends to on ``K_P`` (``lr (1 -
            beta1)``, ``beta1``); its ``max_stable_h()`` against :attr:`h_max` says whether the
            frozen-preconditioner dynamics are stable.
        threshold, band: the two criteria used.
        second_moment: the model of ``v_hat`` after ``start`` (:data:`SECOND_MOMENTS`).
    """

    rule: str
    start: int
    measured: np.ndarray
    predicted: np.ndarray
    drift: np.ndarray
    window: tuple[int, int]
    reason: str
    preconditioner_exit: int | None
    band_exit: int | None
    eigenvalues: np.ndarray
    heavy_ball: HeavyBall
    threshold: float
    band: float
    second_moment: str

    @property
    def steps(self) -> np.ndarray:
        """The steps of :attr:`predicted` and :attr:`drift`."""
        return np.arange(self.start, self.start + self.predicted.size)

    @property
    def ratio(self) -> np.ndarray:
        """``L_net / L_pred`` at :attr:`steps`."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.measured[self.start :] / self.predicted

    @property
    def window_error(self) -> float:
        """``max |L_net / L_pred - 1|`` over the window."""
        first, last = self.window
        return float(np.max(np.abs(self.ratio[: last - first + 1] - 1.0)))

    @property
    def window_decades(self) -> float:
        """Decades the measured loss falls over the window (how much the window tests)."""
        first, last = self.window
        return float(math.log10(self.measured[first] / max(self.measured[last], 1e-300)))

    @property
    def h_max(self) -> float:
        """``lr (1 - beta1) lambda_max(K_P)``: the largest per-mode step of the late phase at
        ``start`` (with a decaying second moment it grows as ``1 / r_k``)."""
        return float(self.heavy_ball.lr * self.eigenvalues[-1])

    def summary(self) -> str:
        """One line: what was predicted and on which window."""
        first, last = self.window
        limit = self.heavy_ball.max_stable_h() or math.inf
        return (
            f"{self.rule}: late phase from step {first} = {self.heavy_ball.spec} on K_P "
            f"({self.second_moment} second moment; "
            f"h_max = {self.h_max:.3g}, stable below {limit:.3g}); "
            f"applies on steps {first}..{last} ({self.window_decades:.2f} decades, worst "
            f"|L_net/L_pred - 1| = {self.window_error:.3g}), ended by {self.reason}"
        )


def adam_late_phase(
    model: Any,
    X: object,
    y: object,
    rule: Rule | str,
    *,
    start: int,
    steps: int,
    loss: str | Loss | Callable[..., Any] = "half-sum",
    threshold: float = PRECONDITIONER_DRIFT_THRESHOLD,
    band: float = VALIDITY_BAND,
    second_moment: str = "decaying",
) -> LatePhase:
    """Predict Adam's late phase from step ``start`` and measure where it applies.

    The network (a float64 copy of ``model``; ``model`` is left unchanged) is trained on
    ``(X, y)`` with ``rule.torch`` (``torch.optim.Adam``) for ``start + steps`` steps; at step
    ``start`` its preconditioned kernel, residual and velocity give the prediction (module
    docstring, docs/adaptive.md). Cost: one kernel through ``empirical_ntk``'s autodiff path
    and ``n C`` vector-Jacobian products at ``start``, plus the training.

    Args:
        model: an ``nn.Module`` mapping ``X (n, ...)`` to ``(n,)`` or ``(n, C)`` outputs.
        X, y: inputs and targets (any form the loss accepts).
        rule: an Adam rule or spec (``"adam:lr=1e-3,beta1=0.9,beta2=0.999"``).
        start: steps of Adam before the network is linearised and ``P`` taken (>= 1).
        steps: steps predicted and measured from ``start`` (>= 1).
        loss: a squared loss, ``"half-sum"`` or ``"mse"`` (the prediction is exact for the
            linearised network on a squared loss only).
        threshold: the preconditioner drift that ends the window.
        band: the band ``|L_net / L_pred - 1| <= band`` that ends the window.
        second_moment: ``"frozen"``: ``v_hat`` stays at its value at ``start``;
            ``"decaying"``: ``v`` decays as ``beta2^(k - start) v_start`` (no new gradient
            enters it, the late-phase limit when ``g_k^2 << v``), so ``P`` keeps its shape and
            scales by ``1 / r_k`` with ``r_k = sqrt(beta2^(k - s) (1 - beta2^s) / (1 -
            beta2^k))``: a step-size schedule on the same kernel (docs/adaptive.md). The drift
            is measured against the moment assumed.

    Raises:
        ValueError: naming the argument (a rule other than Adam, a loss that is not squared).
    """
    import torch

    rule = parse(rule)
    if not isinstance(rule, Adam):
        raise ValueError(
            f"`rule` must be an Adam rule (the late phase is Adam's), got {rule.spec!r}"
        )
    loss = resolve_loss(loss)
    if not loss.is_squared:
        raise ValueError(
            f"`loss` must be a squared loss for the late-phase prediction, got {loss.name!r}"
        )
    start = integer("start", start, minimum=1)
    steps = integer("steps", steps, minimum=1)
    threshold = finite_number("threshold", threshold)
    band = finite_number("band", band)
    second_moment = choice("second_moment", second_moment, SECOND_MOMENTS)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")

    net = copy.deepcopy(model).to(torch.float64)
    X_t = _tensor("X", X)
    with torch.no_grad():
        F = net(X_t)
    n = X_t.shape[0]
    if F.numel() % n or F.shape[0] != n:
        raise ValueError(
            f"`model` must return one row of outputs per row of `X`, got {tuple(F.shape)}"
        )
    C = F.numel() // n
    T = torch.tensor(loss.targets(y, n, C))
    named = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
    opt = rule.torch([p for _, p in named])

    measured = np.empty(start + steps + 1)
    drift = np.zeros(steps + 1)
    at_start: dict[str, Any] = {}
    for k in range(start + steps + 1):
        value = loss.torch(net(X_t).reshape(n, C), T)
        measured[k] = float(value.detach())
        if k >= start:
            denom = _denominators(opt, named, rule, k)
            if k == start:
                at_start = _freeze(net, named, opt, rule, k, denom, X_t, T, loss)
            else:
                r = _scale(rule, start, k) if second_moment == "decaying" else 1.0
                drift[k - start] = _drift(at_start["denom"], denom, at_start["weights"], r)
        if k == start + steps:
            break
        opt.zero_grad()
        value.backward()
        opt.step()

    r = _scale(rule, start, np.arange(start, start + steps + 1, dtype=np.float64))
    if second_moment == "frozen":
        r = np.ones(steps + 1)
    predicted = _predict(
        at_start["lam"], at_start["xi"], at_start["eta"], rule, start, steps, np.asarray(r)
    )
    predicted *= at_start["c"]
    return _window(
        rule, start, measured, predicted, drift, at_start["lam"], (threshold, band, second_moment)
    )


def _denominators(opt, named, rule: Adam, k: int) -> dict[str, Any]:
    """``sqrt(v_hat) + eps`` per parameter after ``k`` steps, as torch.optim.Adam forms it."""
    bc2_sqrt = (1 - rule.beta2**k) ** 0.5
    return {
        name: (opt.state[p]["exp_avg_sq"].sqrt() / bc2_sqrt).add_(rule.eps) for name, p in named
    }


def _freeze(net, named, opt, rule: Adam, k: int, denom, X, T, loss: Loss) -> dict[str, Any]:
    """Everything the prediction needs at step ``k = start``: the eigenvalues of ``K_P`` and
    the residual and velocity in its eigenbasis, the loss factor and the drift weights."""
    from ._preconditioned import Preconditioned, column_energies, function_displacement

    theta = {name: p.detach().clone() for name, p in named}
    lr_k = rule.lr / (1 - rule.beta1**k)
    # d_s = -lr_s m_s / (sqrt(v_hat_s) + eps): the last step's displacement, seen as J d_s
    d = {name: -lr_k * opt.state[p]["exp_avg"] / denom[name] for name, p in named}
    u0 = function_displacement(net, theta, d, X).cpu().numpy()
    lin = linearize(
        Preconditioned(net, theta, {k_: denom[k_].rsqrt() for k_ in theta}),
        X,
        T.cpu().numpy(),
        loss=loss,
    )
    basis = lin.kernel.eigenbasis()
    n, C = lin.kernel.shape
    c = loss.factor(n * C)
    energy = column_energies(net, theta, X)
    weights = {name: energy[name] / denom[name] for name in theta}  # P_p ||J_p||^2
    total = sum(float(w.sum()) for w in weights.values())
    return {
        "lam": c * basis.eigenvalues,
        "xi": basis.to_modes(lin.F0 - lin.targets),
        "eta": basis.to_modes(u0.reshape(n, C)),
        "c": c,
        "denom": {name: t.clone() for name, t in denom.items()},
        "weights": {name: w / total for name, w in weights.items()},
    }


def _scale(rule: Adam, start: int, k: Any) -> Any:
    """``r_k = sqrt(beta2^(k - s) (1 - beta2^s) / (1 - beta2^k))``: ``sqrt(v_hat_k / v_hat_s)``
    when no new gradient enters ``v`` after step ``s = start``."""
    b2 = rule.beta2
    return np.sqrt(b2 ** (k - start) * (1 - b2**start) / (1 - b2**k))


def _drift(first, now, weights, r: float = 1.0) -> float:
    """``sum_p w_p |P_now / P_assumed - 1|`` with ``P = 1 / denominator`` and the assumed
    ``P_first / r``."""
    return float(
        sum(float((w * (r * first[k] / now[k] - 1.0).abs()).sum()) for k, w in weights.items())
    )


def _predict(
    lam: np.ndarray,
    xi: np.ndarray,
    eta: np.ndarray,
    rule: Adam,
    start: int,
    steps: int,
    r: np.ndarray,
) -> np.ndarray:
    """``1/2 ||e_k||^2`` at steps ``start .. start + steps`` of the frozen-``v_hat`` Adam on
    the kernel with eigenvalues ``lam`` (of ``c K_P``), from residual modes ``xi`` and velocity
    modes ``eta``: the two-register heavy-ball machine with Adam's bias-corrected steps,
    divided by the preconditioner's scale ``r (steps + 1,)`` at steps ``start ..``."""
    k = np.arange(start + 1, start + steps + 1, dtype=np.float64)
    lr_k = rule.lr / (1 - rule.beta1**k) / r[1:]
    lr_prev = rule.lr / (1 - rule.beta1 ** (k - 1)) / r[:-1]
    a = rule.beta1 * lr_k / lr_prev
    b = (1 - rule.beta1) * lr_k / rule.lr
    A = np.zeros((steps, 2, 2))
    A[:, 0, 0] = 1.0
    A[:, 0, 1] = A[:, 1, 1] = a
    B = np.stack([b, b], axis=1)
    out = np.empty(steps + 1)
    out[0] = 0.5 * float(xi @ xi)
    with np.errstate(over="ignore", invalid="ignore"):
        _step_modes(A, B, rule.lr * lam, np.stack([xi, eta]), out[1:])
    out[~np.isfinite(out)] = np.inf
    return out


def _window(rule, start, measured, predicted, drift, lam, options) -> LatePhase:
    """The window (module docstring): the first step past either criterion ends it.
    ``options``: threshold, band, second moment."""
    threshold, band, second_moment = options
    floor = FLOOR_REL["float64"] * predicted[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.abs(measured[start:] / predicted - 1.0)
    judged = predicted > floor
    outside_band = np.flatnonzero(judged & ~(off <= band))
    moved = np.flatnonzero(drift > threshold)
    band_exit = start + int(outside_band[0]) if outside_band.size else None
    pre_exit = start + int(moved[0]) if moved.size else None
    exits = [
        (e, why) for e, why in ((pre_exit, "preconditioner"), (band_exit, "band")) if e is not None
    ]
    last, reason = start + predicted.size - 1, "horizon"
    if exits:
        first_exit, reason = min(exits, key=lambda t: t[0])
        last = max(start, first_exit - 1)
    return LatePhase(
        rule=rule.spec,
        start=start,
        measured=measured,
        predicted=predicted,
        drift=drift,
        window=(start, last),
        reason=reason,
        preconditioner_exit=pre_exit,
        band_exit=band_exit,
        eigenvalues=lam,
        heavy_ball=HeavyBall(rule.lr * (1 - rule.beta1), beta=rule.beta1),
        threshold=threshold,
        band=band,
        second_moment=second_moment,
    )
