"""Every tolerance, band and window constant of the verdicts, named once.

Each value is fixed before any run and derived in docs/verdicts.md (the section is given per
constant); none is computed from, or widened by, a result it judges. Kernel drift, activation
flips and weight movement measured on a run are shown as explanations, never used as slack.
"""

from __future__ import annotations

__all__ = [
    "C6_SLOPE_BAND",
    "CROSSOVER_REACH",
    "DEPTH_BAND_PER_LAYER",
    "DEPTH_FLUCTUATION",
    "DEPTH_MAX_SLOPE",
    "DEPTH_MIN_DECADES",
    "DEPTH_WIDTH",
    "FLOOR_REL",
    "KERNEL_MODEL_RTOL",
    "MIN_DECADES",
    "MIN_SEEDS",
    "MIN_WIDTHS",
    "POINT_MAX_SENSITIVITY",
    "POINT_RTOL",
    "POWER_LAW_RTOL",
    "SMALL_STEP_FACTOR",
    "SMALL_STEP_WINDOW",
    "WIDTH_SLOPE_BAND",
    "WINDOW_FIRST",
]

#: Relative rounding floors of a loss curve per dtype: a window ends where the kernel model
#: reaches it (docs/verdicts.md §2; docs/mathematics.md §5: float64 rounds near 4e-32 L_0,
#: float32 near 7e-15 L_0, and the floors stay several decades above).
#: The reduced precisions round the products' operands (unit roundoff u = 2^-11 for TF32,
#: 2^-8 for bfloat16), so their residual rounds near 2 u^2 L_0 (5e-7, 3e-5); their floors keep
#: float32's margin of about 1400x above that (docs/verdicts.md §2).
FLOOR_REL = {"float64": 1e-20, "float32": 1e-11, "tf32": 1e-3, "bfloat16": 5e-2}
#: A window is ``[WINDOW_FIRST * K, K]``: the classifier's tail (docs/mathematics.md §5).
WINDOW_FIRST = 0.25

#: The accuracy a kernel-model claim resolves: the network's rate (or exponent) within 10% of
#: its H(0) kernel model's on the same window, at the widest width (docs/verdicts.md §3).
KERNEL_MODEL_RTOL = 0.10
#: Log-log slope of the median rate deviation against the width: first-order kernel drift
#: gives -1/2 where the rate is smooth in lambda_min and -1/4 at a critical-damping branch
#: point; the band keeps both with 0.05 of slack on the shallow side and stops at -1, twice
#: the smooth law (docs/verdicts.md §3).
WIDTH_SLOPE_BAND = (-1.0, -0.2)
#: A width limit needs this many widths, spanning this many decades, with this many seeds.
MIN_WIDTHS = 4
MIN_DECADES = 1.5
MIN_SEEDS = 3

#: Point tests (underdamped HB and NAG-SC, HOM with complex roots): the fitted rate within 5%
#: of the rule's asymptotic log q, whose sensitivity to lambda_min is below 0.1 there
#: (docs/verdicts.md §4).
POINT_RTOL = 0.05

#: Power laws (C3): the kernel model's window exponent within 5% of r of the envelope law, at
#: the run's step and at a step SMALL_STEP_FACTOR times smaller on the window
#: ``K = SMALL_STEP_WINDOW * r / h0`` (docs/verdicts.md §5).
POWER_LAW_RTOL = 0.05
SMALL_STEP_FACTOR = 0.01
SMALL_STEP_WINDOW = 0.05

#: C7: the curve must reach this multiple of the crossover step r/h0 above the floor, so that
#: the window ``[K/4, K]`` starts at the crossover or later (docs/verdicts.md §6).
CROSSOVER_REACH = 4.0

#: C6: log-log slope of the prediction error against the width: theory -1/2 (docs/mathematics.md
#: §1.3); the reference runs gave -0.50 ... -0.74 (docs/mathematics.md §6) (docs/verdicts.md §7).
C6_SLOPE_BAND = (-0.8, -0.3)
#: A point test applies only where the rule's asymptotic rate barely moves with lambda_min:
#: ``|d log|log q| / d log lambda_min| <= 0.1`` (docs/verdicts.md §4).
POINT_MAX_SENSITIVITY = 0.1

#: C8 (deep networks, docs/verdicts.md §9): the relative error of a network against the
#: envelope of its ``H(0)`` prediction down to 1e-2 L0 (``rel`` of docs/mathematics.md §6)
#: must stay within ``DEPTH_BAND_PER_LAYER * L`` for ``L`` hidden layers at width
#: ``DEPTH_WIDTH``: the two-layer reference at m = 4096 reaches 0.21 (scheduled NAG), rounded
#: to 0.2, and the drift of a deep kernel grows at most linearly with the layers it passes.
DEPTH_BAND_PER_LAYER = 0.2
#: Against the analytic deep NTK the band adds the kernel's fluctuation at initialisation:
#: ``ln(100) sqrt(5 L / m)`` (relative standard deviation sqrt(5 L / m), over the ln(100)
#: e-folds to 1e-2 L0) is 0.16 sqrt(L) at m = 4096, rounded up to 0.2 sqrt(L).
DEPTH_FLUCTUATION = 0.2
#: The width the band is stated at: a setting whose widest width is narrower is inconclusive.
DEPTH_WIDTH = 4096
#: The band's excess shrinks with width: the log-log slope of the median ``H(0)`` error
#: against the width must be at most -0.2 (WIDTH_SLOPE_BAND's shallow edge), judged over
#: widths spanning at least DEPTH_MIN_DECADES decades (m^-1/2 then moves it 3.5x).
DEPTH_MAX_SLOPE = -0.2
DEPTH_MIN_DECADES = 1.0
