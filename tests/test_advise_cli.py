"""``ntkdyn advise`` on the command line and ``--verify`` (``ntkdyn._advise_verify``).

Fast: bad input names its option (exit 2, nothing written); a tiny end-to-end run with
``--verify --out``; the verification's numbers against their one definition; and the checks of
``verify`` failing where they must (a deliberately wrong predicted step count, a wrongly
advised fastest candidate).
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from ntkdyn._advise_verify import Verification, compare, relative_error, verify_advice
from ntkdyn.advisor import advise, steps_to_target
from ntkdyn.cli import main

#: The tiny setting: few rows and a wide network, where the kernel model is close (fast).
TINY = ("--data", "digits:classes=3/8", "--n", "20", "--width", "256")
#: A relative steps error this large cannot come from a kernel model that is merely off: the
#: tiny runs below measure at most ~1.0 (a network at most twice as slow as predicted at width
#: 256 on 20 rows, printed by the end-to-end test); a prediction 10x too slow is +900%.
WRONG_PREDICTION_ERROR = 3.0


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------
# Bad input: one line naming the option, exit 2, nothing written.


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (("--target", "0"), "--target"),
        (("--target", "1.5"), "--target"),
        (("--target", "x"), "--target"),
        (("--budget", "0"), "--budget"),
        (("--probe", "-1"), "--probe"),
        (("--families", ","), "--families"),
        (("--families", "gd,adam"), "--families"),
        (("--width", "0"), "--width"),
        (("--model", "nowhere_module:make"), "--model"),
        (("--loss", "cross-entropy"), "--loss"),
        (("--depth", "2"), "--depth"),
        (("--device", "cpu"), "--device"),
        (("--verify",), "--verify"),
        (("--data", "nosuchdata"), "--data"),
        (("--n", "0"), "--n"),
    ],
)
def test_bad_input_names_the_option(capsys, tmp_path, extra, option):
    out = tmp_path / "out"
    argv = ["advise", "--data", "gaussian:d=5", "--n", "8", "--out", str(out), *extra]
    if option == "--data":
        argv = ["advise", "--n", "8", "--out", str(out), *extra]
    code, stdout, err = _run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkdyn: error: ")
    assert f"`{option}`" in lines[0]
    assert not out.exists()


def test_model_and_width_together_is_refused(capsys, tmp_path):
    code, _, err = _run(
        capsys, "advise", *TINY, "--model", "tests/advise_models.py:small_mlp", "--probe", "0"
    )
    assert code == 2 and "`--width`" in err


def test_out_under_a_file_is_refused_before_any_work(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, stdout, err = _run(
        capsys, "advise", "--data", "gaussian:d=5", "--out", str(blocker / "dir")
    )
    assert code == 2 and "`--out`" in err and stdout == ""


def test_good_input_passes(capsys):
    """The counterpart of the refusals: the same command with good values answers (exit 0)."""
    code, out, err = _run(
        capsys, "advise", "--data", "gaussian:d=5", "--n", "8", "--families", "gd,hb"
    )
    assert code == 0, err
    assert "gd" in out and "hb" in out


# --------------------------------------------------------------------------------------------
# End to end.


def test_verify_end_to_end_writes_and_prints(capsys, tmp_path):
    out = tmp_path / "advice"
    code, stdout, err = _run(
        capsys, "advise", *TINY, "--families", "hb,nesterov", "--budget", "200", "--probe", "10",
        "--verify", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "predicted against measured steps" in stdout
    payload = json.loads((out / "advice.json").read_text())
    runs = payload["verification"]["runs"]
    assert sorted(r["family"] for r in runs) == ["hb", "nesterov"]
    for run in runs:  # every candidate: its row and its validity line
        assert run["optimizer"] in stdout
        assert run["validity"].splitlines()[0] in stdout
    rows = list(csv.DictReader((out / "advice.csv").open()))
    assert sorted(r["family"] for r in rows) == ["hb", "nesterov"]
    assert {"predicted_steps", "measured_steps", "relative_error", "run_holds"} <= set(rows[0])
    assert (out / "advice.png").stat().st_size > 0
    note = payload["verification"]["note"]
    assert note.split(":")[0] in {"advice confirmed", "advice refuted", "not judged"}
    assert note in stdout


# --------------------------------------------------------------------------------------------
# verify() and its table.


@pytest.fixture(scope="module")
def tiny():
    """A tiny advice and its verification (two families, short runs)."""
    advice = advise(
        "digits:classes=3/8",
        n=20,
        width=256,
        families=("hb", "nesterov"),
        budget=200,
        probe_steps=0,
    )
    return advice, verify_advice(advice)


def test_verification_numbers_follow_their_definitions(tiny):
    advice, v = tiny
    assert isinstance(v, Verification)
    assert [r.candidate for r in v.runs] == list(advice.candidates)
    for r in v.runs:
        assert r.losses.shape == (v.steps + 1,)
        assert r.measured_steps == steps_to_target(r.losses, advice.target)
        p, m = r.candidate.predicted_steps, r.measured_steps
        if p is not None and m is not None:
            assert r.relative_error == pytest.approx(p / m - 1.0, rel=0, abs=0)
            assert r.horizon == max(p, m)
            assert r.validity.steps == r.horizon
    text = v.table()
    for r in v.runs:
        assert r.candidate.rule.spec in text
    assert v.note in text


def test_relative_error_edge_cases():
    assert relative_error(None, 5) is None and relative_error(5, None) is None
    assert relative_error(0, 0) == 0.0
    assert relative_error(3, 0) == np.inf
    assert relative_error(150, 100) == pytest.approx(0.5)


def test_a_wrong_predicted_step_count_is_detected(tiny):
    """Must fail: a candidate whose prediction is 10x its true value shows a relative error
    far above anything the kernel model's own error gives; must pass: the true ones do not."""
    advice, v = tiny
    honest = [abs(r.relative_error) for r in v.runs if r.relative_error is not None]
    assert honest and max(honest) < WRONG_PREDICTION_ERROR
    run = next(r for r in v.runs if r.measured_steps)
    wrong = replace(run.candidate, predicted_steps=10 * run.measured_steps)
    error = relative_error(wrong.predicted_steps, run.measured_steps)
    assert error is not None and error > WRONG_PREDICTION_ERROR


def test_a_wrongly_advised_fastest_is_refuted(tiny):
    """The comparison of the fastest: with the runs marked as holding, the measured fastest
    ranked first confirms the advice; ranking the slower first refutes it (must fail)."""
    advice, v = tiny
    runs = [r for r in v.runs if r.measured_steps is not None]
    assert len(runs) == 2 and runs[0].measured_steps != runs[1].measured_steps
    fast, slow = sorted(runs, key=lambda r: r.measured_steps or 0)
    holding = replace(fast.validity, departure_step=None, warning_step=None)

    def judged(first, second):
        a = replace(first.candidate, holds=True, rank=1)
        b = replace(second.candidate, holds=True, rank=2)
        new = replace(advice, candidates=(a, b))
        rows = [replace(first, candidate=a, validity=holding),
                replace(second, candidate=b, validity=holding)]  # fmt: skip
        return compare(new, rows, v.steps)

    right, wrong = judged(fast, slow), judged(slow, fast)
    assert right.agrees is True and right.note.startswith("advice confirmed")
    assert wrong.agrees is False and wrong.note.startswith("advice refuted")
    assert wrong.measured_fastest is not None and wrong.measured_fastest.family == fast.family
