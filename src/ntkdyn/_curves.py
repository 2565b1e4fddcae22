"""Statistics of a loss curve shared by the rate classifier (``ntkdyn.rates``) and the
verdicts (``ntkdyn.verdicts``): the envelope, the least-squares line, the floor cut-off and
the input check (docs/mathematics.md §5)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_curve", "envelope", "lstsq_line", "truncate_at_floor"]


def envelope(curve: np.ndarray) -> np.ndarray:
    """``E_k = max_{j >= k} L_j``: removes momentum oscillations, keeps the decay."""
    return np.maximum.accumulate(curve[::-1])[::-1]


def lstsq_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope of the least-squares line ``y = a + s x`` and its RMS residual (centred sums)."""
    xc, yc = x - x.mean(), y - y.mean()
    sxx = float(xc @ xc)
    s = float(xc @ yc) / sxx if sxx > 0 else 0.0
    resid = yc - s * xc
    return s, float(math.sqrt(resid @ resid / x.size))


def truncate_at_floor(L: np.ndarray, floor_rel: float) -> tuple[int, int | None]:
    """Number of leading points kept, and the index of the first dropped one (or None)."""
    # written as "not (L > floor)" so that nan also ends the curve
    stop = ~(L[1:] > floor_rel * L[0]) | ~np.isfinite(L[1:])
    if not stop.any():
        return L.size, None
    first = int(np.argmax(stop)) + 1
    return first, first


def check_curve(losses: object, times: object) -> tuple[np.ndarray, np.ndarray]:
    """``(L, t)`` as float64 arrays; ValueError naming ``losses`` or ``times``."""
    try:
        L = np.asarray(losses, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`losses` must be a 1-D array of numbers, got {losses!r:.80}") from None
    if L.ndim != 1:
        raise ValueError(f"`losses` must be 1-D (one curve), got shape {L.shape}")
    negative = L < 0
    if negative.any():
        i = int(np.argmax(negative))
        raise ValueError(f"`losses` must be >= 0 (a loss), got losses[{i}] = {float(L[i])!r}")
    if times is None:
        return L, np.arange(L.size, dtype=np.float64)
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`times` must be a 1-D array of numbers, got {times!r:.80}") from None
    if t.shape != L.shape:
        raise ValueError(f"`times` must have the shape of `losses` {L.shape}, got {t.shape}")
    if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
        raise ValueError("`times` must be finite and strictly increasing")
    return L, t
