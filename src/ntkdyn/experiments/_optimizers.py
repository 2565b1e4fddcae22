"""Optimizer entries of a config: spec strings, grids, and data-driven parameter values.

Validation goes through ``optim.parse`` (its message is prefixed with the field path). A
data-driven value (``beta = "critical"``, ``lr = "hmax=X"`` / ``"h0=X"``; see ``config``) is
replaced by a valid stand-in for that check and resolved later by :func:`resolve` from the
extreme eigenvalues of ``K = c H^inf``.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TypeGuard

from .._validate import integer
from ..optim import RULES, SPEC_EXAMPLE, Rule, parse
from ..specs import parse_spec
from . import _checks as check

#: Significant digits kept of a data-driven parameter value ("critical", "hmax=X", "h0=X").
RESOLVED_DIGITS = 12

_SPECIAL_LR = re.compile(r"^(hmax|h0)=(.+)$")
_GRID_OWN_KEYS = ("optimizer", "predict", "diagnostics_every")


@dataclass(frozen=True)
class OptimizerChoice:
    """One optimizer of an experiment: a rule name and its parameters (``lr`` first).

    A parameter value is a float or a data-driven string (``config`` module docstring).
    """

    name: str
    params: tuple[tuple[str, float | str], ...]
    predict: bool
    diagnostics_every: int | None
    where: str = field(default="", compare=False)  # field path, for messages

    @property
    def spec(self) -> str:
        """Spec string with data-driven values left symbolic (e.g. ``beta=critical``)."""
        items = (f"{k}={v}" if isinstance(v, str) else f"{k}={v!r}" for k, v in self.params)
        return f"{self.name}:" + ",".join(items)

    @property
    def rule_class(self) -> type[Rule]:
        return RULES[self.name]

    @property
    def data_driven(self) -> bool:
        return any(isinstance(v, str) for _, v in self.params)


def _stand_in(name: str, key: str) -> float:
    for f in fields(RULES[name]):
        if f.name == key and isinstance(f.default, (int, float)):
            return f.default
    return 0.1  # lr has no default


def _is_special(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and (value == "critical" or bool(_SPECIAL_LR.match(value)))


def _check_special(where: str, name: str, key: str, value: str) -> None:
    m = _SPECIAL_LR.match(value)
    if m:
        try:
            x = float(m.group(2))
        except ValueError:
            x = -1.0
        if key != "lr" or not (math.isfinite(x) and x > 0):
            raise ValueError(
                f"`{where}.{key}` = {value!r}: 'hmax=X' / 'h0=X' with X > 0 is allowed for "
                "`lr` only"
            )
    elif RULES[name].critical_key != key:
        allowed = ", ".join(
            f"{cls.name}.{cls.critical_key}" for cls in RULES.values() if cls.critical_key
        )
        raise ValueError(f"`{where}.{key}` = 'critical' is allowed only for {allowed}")


def _choice(
    where: str,
    name: object,
    params: Sequence[tuple[str, object]],  # validated here
    predict: bool,
    every: int | None,
) -> OptimizerChoice:
    """Validate one (name, [(key, value)]) through ``optim.parse``."""
    if not isinstance(name, str) or name.strip().lower() not in RULES:
        raise ValueError(
            f"`{where}` optimizer name {name!r} is unknown; choose one of {sorted(RULES)}"
        )
    name = name.strip().lower()
    probe = []
    given: dict[str, float | str] = {}  # the checked values, data-driven strings kept
    for key, value in params:
        if _is_special(value):
            _check_special(where, name, key, value)
            given[key], number = value, _stand_in(name, key)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`{where}.{key}` must be a number, got {value!r}")
        else:
            given[key] = number = value
        probe.append(f"{key}={float(number)!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. HOM's b1 + b2 >= 1 note; warned when run
            rule = parse(f"{name}:" + ",".join(probe))
    except ValueError as exc:
        raise ValueError(f"`{where}`: {exc}") from None
    ordered = [("lr", given["lr"])] + [(k, given.get(k, v)) for k, v in rule.params.items()]
    ordered = [(k, v if isinstance(v, str) else float(v)) for k, v in ordered]
    return OptimizerChoice(name, tuple(ordered), predict, every, where)


def _split_spec(where: str, spec: object) -> tuple[str, list[tuple[str, float | str]]]:
    """Name and items of a spec (the grammar of ``ntkdyn.specs``); values are numbers or
    data-driven strings (checked by ``_choice``)."""
    parsed = parse_spec(spec, field=where, example=SPEC_EXAMPLE)
    try:
        options = parsed.options()
    except ValueError as exc:
        raise ValueError(f"`{where}`: {exc}") from None
    params: list[tuple[str, float | str]] = []
    for key, value in options.items():
        try:
            params.append((key, float(value)))
        except ValueError:
            params.append((key, value))  # a data-driven value, or rejected by _choice
    if "lr" not in options:
        raise ValueError(f"`{where}`: `lr` is required in optimizer spec {spec!r}")
    return parsed.name, params


def _grid(
    where: str, g: Mapping[str, object], predict: bool, every: int | None
) -> list[OptimizerChoice]:
    if "optimizer" not in g:
        example = SPEC_EXAMPLE.partition(":")[0]
        raise ValueError(f"`{where}.optimizer` is required (a rule name such as {example!r})")
    name = check.string(f"{where}.optimizer", g["optimizer"]).strip().lower()
    if name not in RULES:
        raise ValueError(f"`{where}.optimizer` {name!r} is unknown; choose one of {sorted(RULES)}")
    params = [f.name for f in fields(RULES[name])]  # lr first
    check.unknown_keys(where, g, list(_GRID_OWN_KEYS) + params)
    if "lr" not in g:
        raise ValueError(f"`{where}.lr` is required")
    if "predict" in g:
        predict = check.boolean(f"{where}.predict", g["predict"])
    if g.get("diagnostics_every") is not None:
        every = integer(f"{where}.diagnostics_every", g["diagnostics_every"], minimum=1)
    axes = []
    for key in (p for p in params if p in g):
        value = g[key]
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ValueError(f"`{where}.{key}` is an empty list: the grid has no runs")
        axes.append([(key, v) for v in values])
    return [_choice(where, name, list(c), predict, every) for c in itertools.product(*axes)]


def optimizer_choices(
    where: str, t: Mapping[str, object], predict: bool, every: int | None
) -> tuple[OptimizerChoice, ...]:
    """The experiment's ``optimizers`` list, then its ``grid`` tables expanded (lr first)."""
    specs, grids = t.get("optimizers", []), t.get("grid", [])
    if not isinstance(specs, (list, tuple)):
        raise ValueError(f"`{where}.optimizers` must be a list of spec strings, got {specs!r}")
    if not isinstance(grids, (list, tuple)):
        raise ValueError(f"`{where}.grid` must be a list of [[experiment.grid]] tables")
    out = []
    for j, spec in enumerate(specs):
        name, params = _split_spec(f"{where}.optimizers[{j}]", spec)
        out.append(_choice(f"{where}.optimizers[{j}]", name, params, predict, every))
    for j, grid in enumerate(grids):
        g = check.table(f"{where}.grid[{j}]", grid)
        out.extend(_grid(f"{where}.grid[{j}]", g, predict, every))
    if not out:
        raise ValueError(
            f"`{where}.optimizers` and `{where}.grid` are both empty: the experiment has no runs"
        )
    return tuple(out)


def _round(x: float) -> float:
    return float(f"{x:.{RESOLVED_DIGITS}g}")


def resolve(choice: OptimizerChoice, lambda_min: float, lambda_max: float) -> Rule:
    """The rule with data-driven values computed from ``lambda_min/max`` of ``K = c H^inf``.

    ``lr = "hmax=X"``: ``X / lambda_max``; ``"h0=X"``: ``X / lambda_min``. ``"critical"``:
    the rule's ``critical_value`` (``beta = 1 - 2 sqrt(lambda_min lr)``; HOM: ``b1`` = that
    minus ``b2``), docs/mathematics.md §4, 6.
    """
    params = dict(choice.params)
    m = _SPECIAL_LR.match(str(params["lr"]))
    if m:
        scale = lambda_max if m.group(1) == "hmax" else lambda_min
        params["lr"] = _round(float(m.group(2)) / scale)
    cls = choice.rule_class
    # only the rule's critical_key can still be a string ("critical"; checked at load time)
    values = {k: v for k, v in params.items() if not isinstance(v, str)}
    for key, value in params.items():
        if value == "critical":
            values[key] = _round(cls.critical_value(lambda_min, values))
            if not 0.0 <= values[key] < 1.0:
                raise ValueError(
                    f"`{choice.where}.{key}` = 'critical' resolves to {values[key]:.6g} "
                    f"(lambda_min(K) = {lambda_min:.4g}, lr = {values['lr']:.4g}); it must lie "
                    "in [0, 1): lower lr"
                )
    try:
        return cls(**values)
    except ValueError as exc:
        raise ValueError(f"`{choice.where}` ({choice.spec}): {exc}") from None
