"""``ntkdyn.advisor``: which optimizer reaches a target loss fastest, before any training.

:func:`advise` linearises the network at initialisation (or takes the infinite-width kernel),
and for each optimizer family (GD, heavy ball, constant-momentum Nesterov, scheduled Nesterov
by ``r``, higher-order momentum) searches the hyperparameters that reach ``target * L_0`` in the
fewest predicted steps, on the exact prediction, inside the stable region
``lr <= (1 - STEP_SAFETY) lr_max``. A short validity probe of the real network then says how
far each prediction is expected to be off; a candidate whose kernel model is not expected to
hold is marked, not ranked. What is computed and why: docs/advise.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from ._advice import Advice, Candidate
from ._advise_search import FAMILIES, STEP_SAFETY, steps_to_target
from ._validate import integer
from .conventions import LOSSES

if TYPE_CHECKING:
    from torch import nn

    from .data import Dataset
    from .linearized import Linearized
    from .prediction import KernelModel

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_FUNCTION_SPACE_BUDGET",
    "FAMILIES",
    "STEP_SAFETY",
    "Advice",
    "Candidate",
    "advise",
    "steps_to_target",
]

#: Steps searched by default for squared losses (the search stops at the fastest candidate,
#: so a large budget costs only where a family never reaches the target).
DEFAULT_BUDGET = 100_000
#: Steps predicted by default for the other losses, each candidate predicted in function
#: space to the end of the budget (``O((n C)^2)`` per step).
DEFAULT_FUNCTION_SPACE_BUDGET = 2_000


def advise(
    data: Dataset | str,
    *,
    model: nn.Module | str | None = None,
    width: int | None = None,
    depth: int | None = None,
    seed: int = 0,
    loss: str = "half-sum",
    target: float = 1e-6,
    budget: int | None = None,
    families: Iterable[str] | None = None,
    probe_steps: int = 30,
    n: int | None = None,
    data_seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Advice:
    """Advise an optimizer and its hyperparameters for reaching ``target * L_0`` (module
    docstring; docs/advise.md).

    Args:
        data: a :class:`~ntkdyn.data.Dataset` or a data spec (``"digits:classes=3/8"``).
        model: an ``nn.Module`` or a ``"module:factory"`` string (``ntkdyn predict --model``);
            exclusive with ``width``.
        width, depth: a seeded theory-mode ``TwoLayerReLU`` of this width (a ``DeepReLU`` with
            ``depth`` hidden layers). Without ``model`` and ``width``: the infinite-width kernel
            (``H^inf``, or the deep NTK with ``depth``) with zero initial outputs, and no probe.
        seed: the seed of the network (``model`` factories are called under it).
        loss: ``"half-sum"``, ``"mse"``, ``"logistic"`` or ``"cross-entropy"``.
        target: the loss to reach, relative to ``L_0``, in ``(0, 1)``.
        budget: the most steps considered (default :data:`DEFAULT_BUDGET`, or
            :data:`DEFAULT_FUNCTION_SPACE_BUDGET` for logistic and cross-entropy).
        families: a subset of :data:`FAMILIES` (default all).
        probe_steps: steps of each candidate's validity probe (0: no probe).
        n, data_seed: rows of a data spec and the seed of their draw (``load_dataset``).
        progress: called with one line per finished stage (its name and seconds).

    Raises:
        ValueError: naming the field in backticks.
    """
    from ._advise_build import build_kernel, resolve_data
    from ._advise_rank import assess, choose, order

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        if progress is not None:
            progress(f"{name}: {now - since:.2f} s")
        return now

    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {list(LOSSES)}, got {loss!r}")
    target = _target(target)
    chosen = _families(families)
    probe_steps = integer("probe_steps", probe_steps, minimum=0)
    seed = integer("seed", seed, minimum=0)
    dataset = resolve_data(data, n=n, data_seed=data_seed)
    built = build_kernel(dataset, loss, model=model, width=width, depth=depth, seed=seed)
    squared = built.kernel_model is not None
    default = DEFAULT_BUDGET if squared else DEFAULT_FUNCTION_SPACE_BUDGET
    budget = default if budget is None else integer("budget", budget, minimum=1)
    now = stage("kernel", started)
    drafts = []
    for family in chosen:
        drafts.append(choose(built, family, target, budget))
        now = stage(f"search {family}", now)
    candidates = []
    for draft in drafts:
        candidates.append(assess(built, draft, target, budget, probe_steps))
        if built.network is not None and probe_steps:
            now = stage(f"probe {draft.family}", now)
    ordered = order(candidates)
    timings["total"] = time.perf_counter() - started
    if progress is not None:
        progress(f"total: {timings['total']:.2f} s")
    kernel: KernelModel | Linearized = (
        built.kernel_model if built.kernel_model is not None else built.lin
    )
    return Advice(
        candidates=ordered,
        target=target,
        budget=budget,
        loss=loss,
        kernel=kernel,
        model=built.network,
        data=dataset,
        linearized=built.lin,
        timings=timings,
    )


def _target(value: object) -> float:
    try:
        if isinstance(value, (bool, str)):
            raise TypeError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"`target` must be a number in (0, 1), got {value!r}") from None
    if not (np.isfinite(number) and 0.0 < number < 1.0):
        raise ValueError(f"`target` must be a number in (0, 1) (a share of L0), got {value!r}")
    return number


def _families(value: Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return FAMILIES
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    chosen = list(value)
    unknown = [f for f in chosen if f not in FAMILIES]
    if not chosen or unknown:
        raise ValueError(
            f"`families` must be a non-empty subset of {list(FAMILIES)}, got {chosen!r}"
        )
    return tuple(f for f in FAMILIES if f in chosen)  # the advisor's order, each once
