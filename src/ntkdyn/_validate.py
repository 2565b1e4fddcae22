"""The generic boundary checks: one wording per kind of value, each naming the field.

Every check raises ``ValueError`` with the field name in backticks (the boundary convention of
docs/design.md; the CLI turns it into one line and exit code 2) and returns the value in its
canonical type. Import-light (no torch, numpy only inside ``finite_vector``), so that every
module may use it, the CLI parser included; checks that are genuinely about one module's
objects (a torch dtype, a kernel path, a loss curve) stay in that module.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

__all__ = ["choice", "finite_number", "finite_vector", "integer", "unit_interval"]

T = TypeVar("T")


def integer(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; numpy ints are ints, bools and floats are not."""
    # bool is an int subclass; True as a width is a bug, not a width of 1. numpy's integer
    # types register as numbers.Integral.
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def choice(name: str, value: T, allowed: Collection[object]) -> T:
    """``value`` itself if it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}")
    return value


def finite_number(name: str, value: object, *, above: float = 0.0) -> float:
    """``value`` as a finite float > ``above``; bools and strings are not numbers here."""
    try:
        if isinstance(value, (bool, str)):
            raise TypeError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number > {above:g}, got {value!r}") from None
    if not (math.isfinite(number) and number > above):
        raise ValueError(f"`{name}` must be a finite number > {above:g}, got {value!r}")
    return number


def unit_interval(name: str, value: object, *, low: float = 0.0, closed_low: bool = True) -> float:
    """``value`` as a float in ``[low, 1)`` (``(low, 1)`` when not ``closed_low``)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number in [{low:g}, 1), got {value!r}") from None
    above_low = number >= low if closed_low else number > low
    if not (math.isfinite(number) and above_low and number < 1):
        bracket = "[" if closed_low else "("
        raise ValueError(f"`{name}` must lie in {bracket}{low:g}, 1), got {value!r}")
    return number


def finite_vector(name: str, value: object, n: int, *, against: str) -> np.ndarray:
    """``value`` as a finite float64 vector of length ``n``, the size of ``against``."""
    import numpy as np  # here, not at the top: the module stays import-light

    try:
        vector = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a numeric vector, got {type(value).__name__}") from None
    if vector.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},) to match {against}, got {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"`{name}` must be finite, found NaN or inf")
    return vector


def output_width(outputs: object, n: int, field: str, inputs: str) -> int:
    """C of a model's ``outputs`` for ``n`` rows of ``inputs``: ``(n,)`` is 1, ``(n, C)`` is C.

    Any array with ``.shape`` (a tensor); anything else, or another shape, raises a ValueError
    naming ``field`` (the model) and ``inputs`` (what it was evaluated on).
    """
    shape = getattr(outputs, "shape", None)
    if shape is None or len(shape) not in (1, 2) or shape[0] != n:
        got = tuple(shape) if shape is not None else type(outputs).__name__
        raise ValueError(
            f"`{field}` must map {inputs} ({n} rows) to outputs of shape ({n},), ({n}, 1) or "
            f"({n}, C), got {got}"
        )
    return 1 if len(shape) == 1 else int(shape[1])
