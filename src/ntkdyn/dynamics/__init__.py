"""Kernel-regime dynamics: exact discrete recurrences, limiting ODEs, stability (docs/mathematics.md 3-4)."""

from .discrete import DiscretePrediction, predict_discrete
from .ode import ODEModes, ode_envelope, ode_modes, predict_ode
from .stability import (
    StabilityReport,
    StabilityRow,
    max_stable_h_numeric,
    spectral_radius,
    stability,
    stability_table,
)

__all__ = [
    "DiscretePrediction",
    "ODEModes",
    "StabilityReport",
    "StabilityRow",
    "max_stable_h_numeric",
    "ode_envelope",
    "ode_modes",
    "predict_discrete",
    "predict_ode",
    "spectral_radius",
    "stability",
    "stability_table",
]
