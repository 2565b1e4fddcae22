"""The register machine's interpreters against a plain single-tensor reference.

The reference below is the definition of docs/mathematics.md §2 written out with numpy,
``z_k = A_k z_{k-1} - lr b_k g(z_{k-1, 0})`` on one flat float64 vector; the torch optimizer
(``rule.torch``) and the batched training update (``training.updates``) are both interpreters
of ``optim.program``'s update program and must follow it for every rule of ``helpers``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from ntkdyn.optim import GRADIENT, Family, HeavyBall, NesterovTorch, Rule, update_program
from ntkdyn.training.updates import AdamUpdate, LinearUpdate, make_update

from helpers import ALL_RULES, LINEAR_RULES, rule_params

#: Agreement with the reference (float64): the interpreters add the increment to register 0
#: where the reference multiplies by A_k, so only rounding differs.
REFERENCE_RTOL = 1e-12
STEPS = 200
LR = 0.02  # stable for every rule here (h_max = LR * 4 <= 0.08)
DIM = 6


def _gradient() -> Callable[[np.ndarray], np.ndarray]:
    """A smooth nonlinear gradient: ``Q x + 0.1 tanh(x) - c`` with Q SPD, ||Q|| <= 4."""
    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    Q = U @ np.diag(np.linspace(0.5, 4.0, DIM)) @ U.T
    c = rng.standard_normal(DIM)
    return lambda x: Q @ x + 0.1 * np.tanh(x) - c


def reference_iterates(rule: Rule, x0: np.ndarray, grad, steps: int) -> np.ndarray:
    """``(steps + 1, n)`` iterates of register 0 by the definition (module docstring)."""
    z = np.zeros((rule.registers, x0.size))
    z[0] = x0
    out = [x0.copy()]
    for k in range(1, steps + 1):
        A, b = rule.step_matrices(k)
        z = A @ z - rule.lr * np.outer(b, grad(z[0]))
        out.append(z[0].copy())
    return np.array(out)


def _x0(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM)


def _deviation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("rule", rule_params(LINEAR_RULES))
def test_torch_optimizer_follows_the_reference(rule):
    rule, grad = rule.with_lr(LR), _gradient()
    p = torch.nn.Parameter(torch.as_tensor(_x0(), dtype=torch.float64))
    opt = rule.torch([p])
    traj = [p.detach().numpy().copy()]
    for _ in range(STEPS):
        p.grad = torch.as_tensor(grad(p.detach().numpy()))
        opt.step()
        traj.append(p.detach().numpy().copy())
    reference = reference_iterates(rule, _x0(), grad, STEPS)
    assert _deviation(np.array(traj), reference) <= REFERENCE_RTOL


@pytest.mark.parametrize("rows_per_network", [1, 3])
def test_batched_update_follows_the_reference_for_every_rule_at_once(rows_per_network):
    """Every linear rule in one padded batch; a network owns ``rows_per_network`` rows of the
    leading axis (``index`` maps rows to networks, as in the width-concatenated ensemble)."""
    rules = [rule.with_lr(LR) for rule in LINEAR_RULES.values()]
    grad, n = _gradient(), len(rules)
    update = make_update(rules, STEPS, torch.float64, torch.device("cpu"))
    assert isinstance(update, LinearUpdate)
    x0 = np.stack([_x0(j) for j in range(n) for _ in range(rows_per_network)])
    index = torch.repeat_interleave(torch.arange(n), rows_per_network)
    reg = update.registers_for(torch.as_tensor(x0.copy()))
    frozen = torch.zeros(n, dtype=torch.bool)
    traj = [x0.copy()]
    for k in range(1, STEPS + 1):
        g = torch.as_tensor(np.stack([grad(row) for row in reg.param.numpy()]))
        update.apply(k, [reg], [g], index if rows_per_network > 1 else None, frozen)
        traj.append(reg.param.numpy().copy())
    traj = np.array(traj)
    for j, rule in enumerate(rules):
        ref = reference_iterates(rule, _x0(j), grad, STEPS)
        for row in range(j * rows_per_network, (j + 1) * rows_per_network):
            assert _deviation(traj[:, row], ref) <= REFERENCE_RTOL, rule.spec


def test_batched_adam_is_torch_adam():
    rule = ALL_RULES["adam"]
    grad = _gradient()
    p = torch.nn.Parameter(torch.as_tensor(_x0(), dtype=torch.float64))
    opt = rule.torch([p])
    update = make_update([rule], STEPS, torch.float64, torch.device("cpu"))
    assert isinstance(update, AdamUpdate) and isinstance(opt, torch.optim.Adam)
    reg = update.registers_for(torch.as_tensor(_x0())[None].clone())
    for k in range(1, STEPS + 1):
        p.grad = torch.as_tensor(grad(p.detach().numpy()))
        opt.step()
        update.apply(
            k,
            [reg],
            [torch.as_tensor(grad(reg.param[0].numpy()))[None]],
            None,
            torch.zeros(1, dtype=torch.bool),
        )
    assert _deviation(reg.param[0].numpy(), p.detach().numpy()) <= REFERENCE_RTOL


# --------------------------------------------------------------------------------------------
# The update program itself.


def test_program_lists_the_non_zero_terms_in_evaluation_order():
    A, b = HeavyBall(0.1, beta=0.9).step_matrices(1)
    program = update_program(A, b, 0.1)
    # inc = -lr g + beta d ; d' = beta d - lr g
    assert [(t.source, t.column) for t in program.increment.terms] == [(GRADIENT, 0), (1, 1)]
    (aux,) = program.auxiliary
    assert aux.target == 1 and [t.source for t in aux.terms] == [1, GRADIENT]
    np.testing.assert_array_equal(program.coefficients, [-0.1 * 1.0, 0.9, 0.9, -0.1 * 1.0])
    # torch-style scheduled Nesterov at k = 1 (mu = 0): the buffer is kept, no gradient term
    program = update_program(*NesterovTorch(0.1, r=3).step_matrices(1), 0.1)
    assert [t.source for t in program.auxiliary[0].terms] == [1]
    assert [t.source for t in program.increment.terms] == [GRADIENT]


def test_program_over_a_batch_keeps_terms_used_anywhere_and_checks_register_zero():
    rules = [LINEAR_RULES["gd"], LINEAR_RULES["hb-0.9"]]
    A = np.zeros((3, 2, 2, 2))
    b = np.zeros((3, 2, 2))
    for j, rule in enumerate(rules):
        s = rule.registers
        A[:, j, :s, :s], b[:, j, :s] = rule.schedule(3)
    program = update_program(A, b, np.array([r.lr for r in rules]))
    assert program.coefficients.shape == (3, 2, program.columns)
    assert program.coefficients[0, 0, 1] == 0.0  # GD's padded momentum column
    assert len(program.structure) == 2
    with pytest.raises(ValueError, match="register 0"):
        update_program(np.eye(2) * 2.0, np.ones(2), 0.1)


def test_every_rule_declares_what_the_package_asks_of_it():
    for rule in ALL_RULES.values():
        cls = type(rule)
        assert isinstance(cls.family, Family)
        assert cls.critical_key is None or cls.critical_key in rule.params
        assert cls.momentum_key is None or cls.momentum_key in rule.params
        assert (rule.max_stable_h() is None) == (cls.stable_limit_formula is None)
        assert rule.is_linear == (cls.family is not Family.ADAM)
