"""The example gallery (docs/examples) runs, and prints what its docstrings say it shows.

Every script is loaded from its file and its ``main`` run with the fast settings
(``quick=True``: narrower networks, fewer rows and steps). Each check is a statement about the
mathematics that a broken example, or a broken library underneath, would fail: the network
trains (its loss falls by a named factor), the linearised prediction tracks the wide networks
within a named tolerance, momentum beats gradient descent on the same kernel, the discrete
prediction agrees with its limiting ODE, and, for the width study, the narrow network's kernel
drifts far more than the wide one's and the validity record flags it.

Tolerances (measured values in parentheses, with the fast settings):

* ``TRACK_RTOL = 0.05``: relative gap between the predicted and the trained loss of the
  kernel-regime examples (MLP 0.94%, CNN 0.3%): five times the measured gap, far below the
  gap of a network that is not in its kernel regime (the cookbook's width-128 net: 17%).
* ``ODE_RTOL = 0.01``: discrete prediction against the limiting ODE at the same time; the
  two differ by ``O(lr lambda)`` per unit of time (0.13% for GD, 0.015% for HB here).
* ``DRIFT_RATIO = 4``: the kernel drift of a network shrinks like ``1/sqrt(m)``
  (docs/mathematics.md §1.3); widths 16 and 1024 should differ by ``sqrt(64) = 8``; half of
  that leaves room for the constant (measured 14 for GD, 31 for HB).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"

TRACK_RTOL = 0.05
ODE_RTOL = 0.01
DRIFT_RATIO = 4.0


def _load(name: str) -> ModuleType:
    """Import ``docs/examples/<name>.py`` as a module (registered, so dataclasses work)."""
    module_name = f"ntkdyn_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _scripts() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.py"))


def test_every_script_is_indexed_and_documented():
    index = (EXAMPLES / "README.md").read_text("utf-8")
    scripts = _scripts()
    assert len(scripts) >= 4
    for name in scripts:
        source = (EXAMPLES / f"{name}.py").read_text("utf-8")
        assert f"]({name}.py)" in index, f"{name}.py is missing from docs/examples/README.md"
        assert source.lstrip().startswith('"""'), f"{name}.py has no module docstring"
        assert "\ndef main(" in source, f"{name}.py has no main()"


def test_mlp_csv_tracks_its_prediction():
    r = _load("mlp_csv").main(quick=True)
    assert r["final_loss_network"] < r["initial_loss"] / 10  # it trains
    gap = abs(r["final_loss_network"] / r["final_loss_predicted"] - 1)
    assert gap < TRACK_RTOL
    # the test outputs agree to a small fraction of their error
    assert r["test_output_gap"] < TRACK_RTOL * r["test_rmse_predicted"]
    assert r["test_rmse_network"] == pytest.approx(r["test_rmse_predicted"], rel=TRACK_RTOL)


def test_cnn_digits_tracks_its_prediction_early():
    r = _load("cnn_digits").main(quick=True)
    assert r["initial_loss"] == pytest.approx(np.log(10), rel=0.1)  # near-uniform softmax
    assert r["final_loss_network"] < r["initial_loss"]
    gap = abs(r["final_loss_network"] / r["final_loss_predicted"] - 1)
    assert gap < TRACK_RTOL
    for key in ("test_accuracy_predicted", "test_accuracy_network"):
        assert 0.0 <= r[key] <= 1.0


def test_cookbook_momentum_and_ode():
    r = _load("cookbook_momentum").main(quick=True)
    gd, hb = r["gd"], r["hb"]
    for run in (gd, hb):
        assert run["final_loss_network"] < run["initial_loss"] / 10
        assert run["final_loss_ode"] == pytest.approx(run["final_loss_predicted"], rel=ODE_RTOL)
    # on the same kernel and lr, beta = 0.9 runs ~10x further per step: momentum must win
    assert hb["final_loss_predicted"] < gd["final_loss_predicted"] / 5
    assert hb["final_loss_network"] < gd["final_loss_network"]


def test_width_study_tiny():
    study = _load("width_study")
    rows = study.main([], quick=True)  # widths 16 and 1024, n = 20, 40 steps, probe 20
    assert [(r.width, r.rule) for r in rows] == [
        (16, "gd"),
        (16, "hb"),
        (1024, "gd"),
        (1024, "hb"),
    ]
    for r in rows:
        assert r.departure_step is None or 0 < r.departure_step <= 40
        assert r.warning_step is None or 0 < r.warning_step <= 40
        assert r.probe_warning_step in (None, r.warning_step)
        assert np.isfinite(r.drift_at_probe) and np.isfinite(r.flips_at_probe)
        assert r.engine_vs_probe < 1e-9  # ntkdyn.train and the probe train the same network
    table = study.table(rows)
    assert table.count("\n") == 1 + len(rows)
    by = {(r.width, r.rule): r for r in rows}
    for rule in ("gd", "hb"):
        narrow, wide = by[16, rule], by[1024, rule]
        # physics: the narrow network's kernel moves ~sqrt(64) times more, and is flagged
        assert narrow.drift_at_probe > DRIFT_RATIO * wide.drift_at_probe
        assert narrow.probe_warning_step is not None
        assert "kernel drift 5%" in narrow.exceeded
    # the validity record warns before every departure it is asked about (here: HB's, early)
    departed = [r for r in rows if r.departure_step is not None]
    assert departed and all(r.flagged_first for r in departed)


def test_flagged_first_needs_a_warning_strictly_before_the_departure():
    study = _load("width_study")

    def row(departure: int | None, warning: int | None):
        return study.Row(
            width=64,
            rule="gd",
            seed=0,
            departure_step=departure,
            warning_step=warning,
            probe_warning_step=warning,
            drift_at_probe=0.1,
            flips_at_probe=0.1,
            drift_at_end=0.2,
            flips_at_end=0.2,
            exceeded=("kernel drift 5%",),
            ratio_at_end=1.5,
            engine_vs_probe=0.0,
        )

    assert row(10, 5).flagged_first is True
    for late in (None, 10, 12):  # no warning, a warning at the departure, one after it
        assert row(10, late).flagged_first is False
    assert row(None, 5).flagged_first is None
    lines = study.table([row(10, None), row(None, None)]).splitlines()
    assert "| **no** |" in lines[2] and "| never | never | never |" in lines[3]
