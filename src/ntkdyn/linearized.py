"""``ntkdyn.linearized``: any model, any smooth loss, predicted outputs on train and test.

:func:`linearize` evaluates a model at its current (initial) weights on ``X`` (and ``X_test``),
computes its empirical NTK (``ntkdyn.kernels.empirical_ntk``, tiled to a memory budget) and
returns a :class:`Linearized`: the linearised model ``f(x; W0) + J(x)(W - W0)`` with the loss
and targets, which predicts, for any linear rule, the loss, the training outputs and the test
outputs at every step, exactly (``ntkdyn.function_space``), and the limiting ODE
(:meth:`Linearized.ode`). :meth:`Linearized.from_kernels` builds one from kernels given by hand
(a kernel computed elsewhere, an analytic one).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kernel_operator import STRUCTURES, KernelOperator
from ._validate import choice, integer, output_width
from .function_space import FunctionPrediction, output_steps, predict_function_space
from .losses import Loss, resolve_loss
from .optim.rules import LinearRule, Rule, parse

if TYPE_CHECKING:
    from torch import nn

    from ._function_ode import FunctionODE
    from .prediction import KernelModel
    from .validity import ValidityRecord

__all__ = ["Linearized", "linearize"]


class Linearized:
    """A linearised model: kernel, initial outputs, targets and loss (module docstring).

    Attributes:
        kernel: the training kernel as an operator (``.K`` the array, ``.structure``).
        kernel_test: the cross kernel ``K(X_test, X)`` (same structure) or None.
        F0, F0_test: initial outputs ``(n, C)`` and ``(n_test, C)`` (or None).
        targets: ``(n, C)`` float64 targets (one-hot for cross-entropy labels).
        loss: the :class:`~ntkdyn.losses.Loss`.
        model: the float64 copy of the network the kernel was taken from (None when built from
            kernels), used by the validity probe.
    """

    def __init__(
        self,
        kernel: KernelOperator,
        F0: np.ndarray,
        targets: np.ndarray,
        loss: Loss,
        *,
        kernel_test: np.ndarray | None = None,
        F0_test: np.ndarray | None = None,
        model: Any = None,
        inputs: tuple[Any, Any] | None = None,
    ):
        self.kernel = kernel
        self.F0 = F0
        self.targets = targets
        self.loss = loss
        self.kernel_test = kernel_test
        self.F0_test = F0_test
        self.model = model
        self.inputs = inputs
        self._eigenvalues: np.ndarray | None = None  # of the kernel, once asked for

    @classmethod
    def from_kernels(
        cls,
        kernel: object,
        initial_outputs: object,
        y: object,
        *,
        loss: str | Loss | Callable[..., Any] = "half-sum",
        structure: str = "full",
        kernel_test: object = None,
        initial_test_outputs: object = None,
    ) -> Linearized:
        """A linearised model from kernels given directly.

        Args:
            kernel: the NTK on the training inputs, in ``structure`` (``"full"``:
                ``(n C, n C)`` in row-major order ``i C + c``; ``"trace"``: ``(n, n)``;
                ``"block-diagonal"``: ``(C, n, n)``).
            initial_outputs: ``(n,)`` or ``(n, C)`` outputs at initialisation (zeros for the
                infinite-width convention).
            y: targets (``Loss.targets`` for the forms each loss accepts).
            kernel_test, initial_test_outputs: the cross kernel ``K(X_test, X)`` and the
                test outputs at initialisation, both or neither.
        """
        loss = resolve_loss(loss)
        structure = choice("structure", structure, STRUCTURES)
        F0 = _outputs("initial_outputs", initial_outputs)
        op = KernelOperator(np.asarray(kernel, dtype=np.float64), F0.shape[1], structure)
        if op.shape[0] != F0.shape[0]:
            raise ValueError(f"`initial_outputs` has {F0.shape[0]} rows, the kernel {op.shape[0]}")
        T = loss.targets(y, *F0.shape)
        if (kernel_test is None) != (initial_test_outputs is None):
            raise ValueError("`kernel_test` and `initial_test_outputs` go together")
        K_test = F0_test = None
        if initial_test_outputs is not None:
            F0_test = _outputs("initial_test_outputs", initial_test_outputs)
            if F0_test.shape[1] != F0.shape[1]:
                raise ValueError("`initial_test_outputs` must have as many outputs as the model")
            K_test = op.check_cross(kernel_test, F0_test.shape[0])
        return cls(op, F0, T, loss, kernel_test=K_test, F0_test=F0_test)

    # ----------------------------------------------------------------------------- shape

    @property
    def n(self) -> int:
        return self.kernel.shape[0]

    @property
    def outputs(self) -> int:
        """C, the number of outputs per row."""
        return self.kernel.shape[1]

    def kernel_model(self) -> KernelModel:
        """The kernel model of a squared loss (eigenvalues of ``c K``, residual modes), for the
        rate and stability tools of ntkdyn (``KernelModel.curve``, ``discrete_factor``)."""
        from .prediction import KernelModel

        n, C = self.kernel.shape
        c = self.loss.factor(n * C)
        basis = self.kernel.eigenbasis()
        return KernelModel(c * basis.eigenvalues, basis.to_modes(self.F0 - self.targets), c)

    def effective_eigenvalues(self) -> tuple[np.ndarray, float, str | None]:
        """Eigenvalues (ascending) of the effective kernel ``factor K`` of the loss's dynamics,
        the factor, and None for a squared loss (exact) or the formula of the curvature bound
        the factor is (:meth:`ntkdyn.losses.Loss.curvature`)."""
        from .kernels import spectrum

        op = self.kernel
        if self._eigenvalues is None:  # the kernel never changes: one eigendecomposition
            blocks = op.K if op.structure == "block-diagonal" else [op.K]
            self._eigenvalues = np.sort(np.concatenate([spectrum(K).eigenvalues for K in blocks]))
        factor, bound = self.loss.curvature(*op.shape)
        return factor * self._eigenvalues, factor, bound

    def max_stable_lr(self, rule: Rule | str) -> float:
        """The rule's largest stable step on the effective kernel (a bound for logistic and
        cross-entropy: :meth:`effective_eigenvalues`); only ``lambda_max`` sets it."""
        from .dynamics import stability

        rule = parse(rule)
        if not isinstance(rule, LinearRule):
            raise ValueError(f"`rule` {rule.spec!r} is not a linear rule: it has no stable step")
        lam_max = float(self.effective_eigenvalues()[0][-1])
        return float(stability(np.array([lam_max]), rule).max_stable_lr)

    # ----------------------------------------------------------------------------- predictions

    def predict(
        self,
        rule: Rule | str,
        steps: int,
        *,
        outputs_at: int | Sequence[int] | None = None,
        probe: int = 0,
    ) -> FunctionPrediction:
        """Loss, training and test outputs of the linearised model trained by ``rule``.

        Args:
            rule: a linear rule or spec string (``"hb:lr=0.1,beta=0.9"``).
            steps: optimizer steps (>= 0).
            outputs_at: steps at which to record outputs: None every step, an int N about N + 1
                evenly spaced steps, or a list of steps. The loss is recorded at every step.
            probe: with N > 0, first train the network itself for N steps
                (:meth:`validity`) and issue a ``KernelRegimeWarning`` with the numbers and a
                suggestion when it does not follow this prediction.
        """
        rule = parse(rule)
        steps = integer("steps", steps, minimum=0)
        at = output_steps(outputs_at, steps)
        if integer("probe", probe, minimum=0):
            self.validity(rule, probe)
        return predict_function_space(
            self.kernel,
            self.F0,
            self.targets,
            self.loss,
            rule,
            steps,
            at=at,
            kernel_test=self.kernel_test,
            F0_test=self.F0_test,
        )

    def ode(self, rule: Rule | str, times: object) -> FunctionODE:
        """The rule's limiting ODE at ODE ``times`` (``rule.ode().times(lr, k)`` maps steps to
        times): loss, training and test outputs."""
        from ._function_ode import solve_function_ode

        rule = parse(rule)
        spec = rule.ode()
        if spec is None:
            raise ValueError(f"`rule` {rule.spec!r} has no limiting ODE")
        return solve_function_ode(
            spec,
            self.kernel,
            self.F0,
            self.targets,
            self.loss,
            np.asarray(times, dtype=np.float64),
            kernel_test=self.kernel_test,
            F0_test=self.F0_test,
        )

    def validity(self, rule: Rule | str, steps: int = 30, *, warn: bool = True) -> ValidityRecord:
        """Whether the network stays in its kernel regime: trains it for ``steps`` steps of
        ``rule`` and compares with :meth:`predict` (:func:`ntkdyn.validity.probe`). With
        ``warn``, a :class:`~ntkdyn.validity.KernelRegimeWarning` carrying the record's
        summary is issued when the kernel model does not hold."""
        from .validity import check

        return check(self, rule, steps, warn=warn)


def linearize(
    model: nn.Module,
    X: object,
    y: object,
    *,
    loss: str | Loss | Callable[..., Any] = "half-sum",
    X_test: object = None,
    structure: str = "full",
    budget_bytes: int | None = None,
) -> Linearized:
    """Linearise ``model`` at its current weights on ``(X, y)`` (module docstring).

    Args:
        model: any ``nn.Module`` mapping ``(n, ...)`` inputs to ``(n,)`` or ``(n, C)``
            outputs, rows independently (no batch statistics). Evaluated on a float64 copy.
        X, y: training inputs and targets (``y`` in any form ``loss`` accepts, e.g. integer
            labels for cross-entropy).
        loss: ``"half-sum"``, ``"mse"``, ``"logistic"``, ``"cross-entropy"``, a
            :class:`~ntkdyn.losses.Loss` or a torch function ``fn(F, T) -> scalar``.
        X_test: optional test inputs; their outputs are predicted through ``K(X_test, X)``.
        structure: ``"full"`` (the ``n C x n C`` kernel), ``"block-diagonal"`` or ``"trace"``
            (approximations that drop the coupling between outputs).
        budget_bytes: memory for the Jacobian tiles of the kernel computation (None: the
            default of ``empirical_ntk``); a kernel that cannot fit fails before starting.

    Examples:
        >>> import torch
        >>> import ntkdyn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2))
        >>> X, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
        >>> lin = ntkdyn.linearize(net, X, y, loss="cross-entropy", X_test=torch.randn(4, 3))
        >>> p = lin.predict("hb:lr=0.5,beta=0.9", steps=100, outputs_at=[0, 100])
        >>> p.test_outputs.shape, bool(p.loss[-1] < p.loss[0])
        ((2, 4, 2), True)
    """
    import torch

    from .kernels import empirical_ntk

    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    loss = resolve_loss(loss)
    structure = choice("structure", structure, STRUCTURES)
    net = copy.deepcopy(model).to(torch.float64)
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    X_t = _tensor("X", X).to(device)  # the kernel is computed where the model lives
    F0 = _evaluate(net, X_t, "X")
    T = loss.targets(y, *F0.shape)
    options: dict[str, Any] = {"structure": structure}
    if budget_bytes is not None:
        options["budget_bytes"] = budget_bytes
    op = KernelOperator(empirical_ntk(net, X_t, **options), F0.shape[1], structure)
    K_test = F0_test = None
    X_test_t = None
    if X_test is not None:
        X_test_t = _tensor("X_test", X_test).to(device)
        F0_test = _evaluate(net, X_test_t, "X_test")
        K_test = op.check_cross(empirical_ntk(net, X_t, X_test_t, **options), F0_test.shape[0])
    return Linearized(
        op, F0, T, loss, kernel_test=K_test, F0_test=F0_test, model=net, inputs=(X_t, X_test_t)
    )


def _tensor(name: str, value: object):
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().to(torch.float64)
    else:
        try:
            t = torch.tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"`{name}` must be a numeric array") from None
    if t.ndim == 0 or t.shape[0] == 0:
        raise ValueError(f"`{name}` must have at least one row, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"`{name}` contains NaN or inf values")
    return t


def _evaluate(net, X_t, name: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = net(X_t)
    width = output_width(out, X_t.shape[0], "model", f"`{name}`")
    return out.reshape(X_t.shape[0], width).cpu().numpy().astype(np.float64)


def _outputs(name: str, value: object) -> np.ndarray:
    F = np.asarray(value, dtype=np.float64)
    if F.ndim == 1:
        F = F[:, None]
    if F.ndim != 2 or F.shape[0] == 0 or not np.all(np.isfinite(F)):
        raise ValueError(f"`{name}` must be a finite (n,) or (n, C) array, got shape {F.shape}")
    return F


def train_linearized(
    lin: Linearized, rule: Rule | str, steps: int, *, outputs_at: object = None
) -> FunctionPrediction:
    """Train the linearised network in parameter space: ``f(W0) + jvp(f, W0, W - W0)``,
    updated by ``rule.torch``; the slow, independent reference of :meth:`Linearized.predict`
    (one Jacobian-vector and one vector-Jacobian product through the network per step)."""
    import torch
    from torch.func import functional_call, grad, jvp

    if lin.model is None or lin.inputs is None:
        raise ValueError("`lin` has no network: it was built from kernels")
    rule = parse(rule)
    steps = integer("steps", steps, minimum=0)
    at = output_steps(outputs_at, steps)
    net = lin.model
    X, X_test = lin.inputs
    theta0 = {k: p.detach() for k, p in net.named_parameters() if p.requires_grad}
    delta = {k: torch.zeros_like(v, requires_grad=True) for k, v in theta0.items()}
    T = torch.tensor(lin.targets, device=X.device)
    n, C = lin.kernel.shape

    def outputs(d: dict, inputs) -> torch.Tensor:
        def f(p):
            return functional_call(net, p, (inputs,))

        primal_and_tangent = jvp(f, (theta0,), (d,))
        return (primal_and_tangent[0] + primal_and_tangent[1]).reshape(inputs.shape[0], -1)

    def loss_of(d: dict) -> torch.Tensor:
        return lin.loss.torch(outputs(d, X), T)

    optimizer = rule.torch(list(delta.values()))
    losses = np.empty(steps + 1)
    train_out, test_out = [], []
    for k in range(steps + 1):
        with torch.no_grad():
            current = {key: v.detach() for key, v in delta.items()}
            losses[k] = float(loss_of(current))
            if k in set(at.tolist()):
                train_out.append(outputs(current, X).cpu().numpy())
                if X_test is not None:
                    test_out.append(outputs(current, X_test).cpu().numpy())
        if k == steps:
            break
        grads = grad(loss_of)({key: v.detach() for key, v in delta.items()})
        for key, v in delta.items():
            v.grad = grads[key]
        optimizer.step()
    return FunctionPrediction(
        rule.spec,
        losses,
        at,
        np.stack(train_out).reshape(len(at), n, C),
        np.stack(test_out) if X_test is not None else None,
    )
