"""How accurate ``ntkdyn advise`` is, measured by training (issue 13, "Must hold"). Slow.

1. The relative steps-to-target error of each family shrinks with width at the pre-registered
   rate (digits 3/8, n = 200, unit rows, theory parameterisation, float64).
2. The family advised as fastest is the fastest measured, wherever the validity records say
   the kernel model holds.
3. A user's MLP (biases, depth 3, width 4096) with cross-entropy: ``advise --verify`` prints
   predicted against measured steps for every candidate with each run's validity record.

Every measured number is printed (``pytest -m slow -s``); docs/advise.md records them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ntkdyn._advise_verify import VERIFY_HEADROOM, verify_advice
from ntkdyn.advisor import FAMILIES, advise
from ntkdyn.cli import main

pytestmark = pytest.mark.slow

DIGITS = "digits:classes=3/8"
#: Rows of the slope measurement. The issue's n = 200 does not fit this shared 2-core CPU: the
#: first cell (m = 256, seed 0) took 7 minutes, and there 3 of the 4 fast families had not
#: reached 1e-6 L0 in 3x their predicted steps (the networks are far from their kernel model
#: at widths that fit; m >= 1024 at n = 200 costs hours here). With 20 rows every cell trains
#: in seconds: the same data, parameterisation and precision, fewer rows (docs/advise.md
#: records both).
ROWS = 20
#: Widths and seeds, chosen by cost before measuring: a few ms per step per network at n = 20
#: up to m = 4096 on this CPU, each family trained VERIFY_HEADROOM x its predicted steps
#: (~40-300), about 2,000 steps per width and seed. A doubling ladder spans a factor 16.
WIDTHS = (256, 512, 1024, 2048, 4096)
SEEDS = (0, 1, 2)
SLOPE_FAMILIES = FAMILIES
#: Pre-registered band of the slope of log(mean |relative steps error|) against log(width).
#: First order: in the theory parameterisation the kernel drifts by delta ~ m^(-1/2) over a
#: run (docs/mathematics.md §1.3), and a kernel off by a relative delta moves every mode's
#: rate, hence the steps to a target, by a relative ~delta: slope -1/2. The band spans one
#: factor of 2 in the exponent on either side: -1 if the first-order term cancels and the
#: second order (delta^2 ~ 1/m) is what is left; -1/4 for an error that shrinks at half the
#: first-order rate (the drift's constant growing with the run's length as the steps fall).
#: An error that does not shrink (slope >= 0) lies outside it.
SLOPE_BAND = (-1.0, -0.25)


def _slope(widths, errors) -> float:
    return float(np.polyfit(np.log(widths), np.log(errors), 1)[0])


def _in_band(slope: float) -> bool:
    return SLOPE_BAND[0] <= slope <= SLOPE_BAND[1]


def _measure(width: int, seed: int) -> dict[str, tuple[int | None, int | None, float | None]]:
    """Per family: predicted and measured steps and the relative error, each family trained
    alone for VERIFY_HEADROOM x its predicted steps (one engine call each)."""
    advice = advise(DIGITS, n=ROWS, width=width, seed=seed, families=SLOPE_FAMILIES, probe_steps=0)
    out = {}
    for c in advice.candidates:
        steps = max(1, math.ceil(VERIFY_HEADROOM * (c.predicted_steps or advice.budget)))
        (run,) = verify_advice(replace(advice, candidates=(c,)), steps=steps).runs
        out[c.family] = (c.predicted_steps, run.measured_steps, run.relative_error)
    print(f"  m = {width}, seed {seed}: {out}", flush=True)  # as it goes: a long measurement
    return out


@pytest.mark.xfail(
    strict=True,
    reason=(
        "measured refuted (docs/advise.md, Measured accuracy): HB, NAG-SC and HOM each had a "
        "run at m = 256-512 that did not reach 1e-6 L0 within 3x its predicted steps; GD "
        "(-0.34) and scheduled Nesterov (-0.43) slopes lie in the band"
    ),
)
def test_steps_error_shrinks_with_width_at_the_registered_rate():
    table = {(w, s): _measure(w, s) for w in WIDTHS for s in SEEDS}
    print(f"\n{DIGITS}, n = {ROWS}, float64: predicted / measured steps to 1e-6 L0 (rel. error)")
    failures = []
    for family in SLOPE_FAMILIES:
        means = []
        for w in WIDTHS:
            cells = [table[w, s][family] for s in SEEDS]
            shown = "  ".join(f"{p}/{m} ({'-' if e is None else f'{e:+.0%}'})" for p, m, e in cells)
            errors = [abs(e) for _, _, e in cells if e is not None]
            mean = float(np.mean(errors)) if len(errors) == len(SEEDS) else math.nan
            means.append(mean)
            print(f"  {family:<7} m = {w:>5}: {shown}   mean |error| {mean:.3g}")
        if not np.all(np.isfinite(means)) or min(means) <= 0:
            failures.append(f"{family}: a run did not reach the target ({means})")
            continue
        slope = _slope(WIDTHS, means)
        reversed_slope = _slope(WIDTHS[::-1], means)
        print(f"  {family:<7} slope {slope:+.3f} (band {SLOPE_BAND}); widths reversed "
              f"{reversed_slope:+.3f}")  # fmt: skip
        # must fail: the same errors against the widths in reverse order (any shrinking
        # error then grows with width) lie outside the band
        assert slope >= 0 or not _in_band(reversed_slope)
        if not _in_band(slope):
            failures.append(f"{family}: slope {slope:+.3f} outside {SLOPE_BAND}")
    assert not failures, "; ".join(failures)


# --------------------------------------------------------------------------------------------
# The advised fastest against the measured fastest.

#: Settings where the validity records hold for several families, found with the advisor's own
#: probe before measuring. On digits 3/8 the kernel model held for no family but GD at the
#: widths that fit this CPU (n = 200 up to m = 4096; n = 10 and 20 at m = 32768), and for none
#: at n = 5, m = 32768: reaching 1e-6 L0 within the 10% band needs a kernel within ~0.7%
#: (|ln(L_net / L_pred)| ~ delta ln 1e6). So the rows are fewer and the networks wider here,
#: on two data sets: gaussian d = 20, and digits of another pair (0/1).
FASTEST_SETTINGS = [
    pytest.param("gaussian:d=20", 20, 32768, id="gaussian-d20-n20-m32768"),
    pytest.param("digits:classes=0/1", 10, 32768, id="digits01-n10-m32768"),
]


@pytest.mark.parametrize(("data", "n", "width"), FASTEST_SETTINGS)
def test_advised_fastest_is_measured_fastest_where_the_model_holds(data, n, width):
    advice = advise(data, n=n, width=width, seed=0)
    print(f"\n{data}, n = {n}, width {width}\n{advice.table()}")
    v = verify_advice(advice)
    print(v.table())
    judged = [r for r in v.runs if r.candidate.rank is not None and r.holds]
    assert v.agrees is not False, v.note
    assert len(judged) >= 2, f"fewer than two judged candidates: {v.note}"
    assert v.agrees is True, v.note


# --------------------------------------------------------------------------------------------
# A user's network with cross-entropy.

#: A cross-entropy loss decays like 1/k late; 1e-6 of L0 is beyond any budget here, so the
#: target is a tenth of L0 (the user's choice on the command line).
CE_TARGET = "0.1"
#: The user's factory, as a user names it (a file path and the factory in it).
MLP = f"{Path(__file__).parent / 'advise_models.py'}:mlp"


def test_user_mlp_cross_entropy_verify_prints_every_candidate(capsys):
    code = main([
        "advise", "--data", "gaussian:d=8", "--n", "10", "--loss", "cross-entropy",
        "--model", MLP, "--target", CE_TARGET, "--budget", "200",
        "--verify",
    ])  # fmt: skip
    out, err = capsys.readouterr()
    print(out)
    assert code == 0, err
    table = out.split("predicted against measured steps")[1]
    rows = [
        line for line in table.splitlines() if line[:6].strip() in {"-", "1", "2", "3", "4", "5"}
    ]
    families = {line.split()[1] for line in rows}
    assert families == set(FAMILIES)
    assert table.count("validity:") >= len(rows)
