"""Kernel-regime dynamics: exact discrete recurrences, limiting ODEs, stability (docs/mathematics.md §3-4)."""

from .discrete import DiscretePrediction, discrete_modes, predict_discrete
from .ode import ODEModes, ode_envelope, ode_modes, predict_ode
from .stability import (
    OptimalParameters,
    StabilityReport,
    StabilityRow,
    max_stable_h_numeric,
    optimal_parameters,
    spectral_radius,
    stability,
    stability_table,
)

__all__ = [
    "DiscretePrediction",
    "ODEModes",
    "OptimalParameters",
    "StabilityReport",
    "StabilityRow",
    "discrete_modes",
    "max_stable_h_numeric",
    "ode_envelope",
    "ode_modes",
    "optimal_parameters",
    "predict_discrete",
    "predict_ode",
    "spectral_radius",
    "stability",
    "stability_table",
]
