"""A checkpointed RuleOptimizer resumes exactly: the state dict carries every auxiliary
register and the step counter, which scheduled rules (Nesterov's beta_k) need."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers import LINEAR_RULES, rule_params

STEPS, CHECKPOINT = 12, 5


def _problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(16, generator=gen, dtype=torch.float64)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8, dtype=torch.float64),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 1, dtype=torch.float64),
    )
    return X, y, model


def _run(model, opt, X, y, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((model(X).squeeze(1) - y) ** 2).sum()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("rule", rule_params(LINEAR_RULES))
def test_resume_from_a_state_dict_is_exact(rule):
    rule = rule.with_lr(0.01)
    X, y, model = _problem()
    opt = rule.torch(model.parameters())
    _run(model, opt, X, y, CHECKPOINT)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _run(model, opt, X, y, STEPS - CHECKPOINT)

    _, _, resumed = _problem(seed=1)  # other initial weights: everything must come from the dict
    resumed.load_state_dict(saved_model)
    opt2 = rule.torch(resumed.parameters())
    opt2.load_state_dict(saved_opt)
    assert opt2.k == CHECKPOINT
    _run(resumed, opt2, X, y, STEPS - CHECKPOINT)
    # the same operations on the same numbers in one process: equal to the last bit
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_without_the_step_counter_a_scheduled_rule_would_resume_wrong():
    """The check can fail: dropping the counter changes a scheduled rule's trajectory, and
    loading a dict without it is refused."""
    rule = LINEAR_RULES["nesterov-r3"].with_lr(0.01)
    X, y, model = _problem()
    opt = rule.torch(model.parameters())
    _run(model, opt, X, y, CHECKPOINT)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _run(model, opt, X, y, STEPS - CHECKPOINT)

    _, _, restarted = _problem()
    restarted.load_state_dict(saved_model)
    opt2 = rule.torch(restarted.parameters())
    stripped = {k: v for k, v in saved_opt.items() if k != "ntkdyn_step"}
    with pytest.raises(ValueError, match="no 'ntkdyn_step'"):
        opt2.load_state_dict(stripped)
    torch.optim.Optimizer.load_state_dict(opt2, stripped)  # what torch alone would restore
    _run(restarted, opt2, X, y, STEPS - CHECKPOINT)
    assert not all(
        torch.equal(a, b) for a, b in zip(model.parameters(), restarted.parameters(), strict=True)
    )


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_a_bad_step_counter_is_refused(bad):
    X, y, model = _problem()
    opt = LINEAR_RULES["gd"].torch(model.parameters())
    state = opt.state_dict()
    state["ntkdyn_step"] = bad
    with pytest.raises(ValueError, match="ntkdyn_step"):
        opt.load_state_dict(state)
