"""Memory planning before allocation: estimate what a request needs and refuse, naming the
field and the knob to turn, when it cannot fit (docs/design.md, "Reliability rules").

The estimates count the float64 arrays that are alive at once; they are deliberately
rough (within a small factor) and only ever refuse what could not fit by a wide margin.
"""

from __future__ import annotations

import os

__all__ = [
    "CURVE_COLUMNS",
    "KERNEL_WORK_ARRAYS",
    "MEMORY_SHARE",
    "NETWORK_WORK_ARRAYS",
    "TooLarge",
    "array_bytes",
    "available_bytes",
    "check_budget",
    "check_fits",
    "curve_bytes",
    "format_bytes",
    "kernel_bytes",
    "network_bytes",
]

#: A request may plan for at most this share of the memory the machine reports available.
MEMORY_SHARE = 0.8
#: n x n float64 arrays alive while a Gram is built and decomposed: X X^T, the row-norm
#: products, two half-angle tables, the Gram itself and the eigensolver's copy.
KERNEL_WORK_ARRAYS = 6
#: (width x max(n, d)) arrays a trained network needs besides its optimizer registers: the
#: weights, the pre-activations and their mask, the gradient, and the engine's work copies.
NETWORK_WORK_ARRAYS = 6
#: Per-step float64 values of a predicted curve as the CLI writes it: step, loss, time, ODE
#: loss, plus the same again while the CSV text is assembled.
CURVE_COLUMNS = 8


class TooLarge(ValueError):
    """A request that cannot fit in memory (a ValueError: the CLI exits 2 with one line)."""


def available_bytes() -> int | None:
    """Memory the OS reports available (MemAvailable on Linux), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def kernel_bytes(n: int, m: int | None = None, *, blocks: int = 1) -> int:
    """Bytes to build and decompose an ``n x n`` float64 kernel (``n x m`` for a cross kernel,
    ``blocks`` of them for a block-diagonal one)."""
    return KERNEL_WORK_ARRAYS * 8 * n * (n if m is None else m) * blocks


def network_bytes(width: int, rows: int, registers: int, itemsize: int = 8) -> int:
    """Bytes to train one network of ``width`` hidden units on ``rows = max(n, d)``."""
    return (NETWORK_WORK_ARRAYS + registers) * itemsize * width * rows


def curve_bytes(steps: int, columns: int = CURVE_COLUMNS) -> int:
    """Bytes of ``columns`` float64 values per step over ``steps + 1`` steps."""
    return columns * 8 * (steps + 1)


def array_bytes(*shape: int, itemsize: int = 8) -> int:
    """Bytes of one dense array of ``shape`` (``itemsize`` bytes per element, float64 default)."""
    count = 1
    for extent in shape:
        count *= extent
    return count * itemsize


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in binary units, three significant digits (``"275 MiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def check_fits(
    field: str, value: object, what: str, nbytes: int, knob: str, *, available: int | None = None
) -> None:
    """Raise :class:`TooLarge` if ``nbytes`` exceeds ``MEMORY_SHARE`` of the available memory
    (``available``: override, for tests). Unknown available memory never refuses."""
    avail = available_bytes() if available is None else available
    if avail is not None and nbytes > MEMORY_SHARE * avail:
        raise TooLarge(
            f"`{field}` {value} needs about {format_bytes(nbytes)} for {what}, more than "
            f"{MEMORY_SHARE:.0%} of the {format_bytes(avail)} available; {knob}"
        )


def check_budget(field: str, budget: int, what: str, nbytes: int, knob: str) -> None:
    """Raise :class:`TooLarge` if ``nbytes`` (needed for ``what``) exceeds a caller's
    ``budget`` given as ``field``: the refusal of a user-set memory limit, before allocating."""
    if nbytes > budget:
        raise TooLarge(
            f"`{field}` {format_bytes(budget)} cannot hold {what} ({format_bytes(nbytes)}); {knob}"
        )
