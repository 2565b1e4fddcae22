"""The `ntkdyn` command: kernel, predict and rates; one-line errors with exit code 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from ntkdyn import load_dataset, predict_discrete, spectrum, two_layer_gram
from ntkdyn.cli import main
from ntkdyn.optim import parse


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


GAUSSIAN = ("--data", "gaussian:d=5", "--n", "20")  # docs/mathematics.md §6's data set


def _predict(capsys, out, optimizer, steps, *extra):
    """``ntkdyn predict`` on the docs/mathematics.md §6 data set; returns the exit code."""
    argv = ["predict", *GAUSSIAN, "--optimizer", optimizer, "--steps", str(steps)]
    return _run(capsys, *argv, *extra, "--out", str(out))[0]


def _read(path):
    with open(path) as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], np.array(rows[1:], dtype=float)
    return {h: body[:, i] for i, h in enumerate(header)}


def test_kernel_json_matches_library(capsys):
    code, out, err = _run(capsys, "kernel", "--data", "gaussian:d=5", "--n", "20", "--json")
    assert code == 0, err
    payload = json.loads(out)
    s = spectrum(two_layer_gram(load_dataset("gaussian:d=5", n=20).X))
    assert payload["lambda_min"] == pytest.approx(s.lambda_min, rel=1e-12)
    assert payload["lambda_max"] == pytest.approx(s.lambda_max, rel=1e-12)
    # docs/mathematics.md §6's data set: lambda_0 = 0.04473, lambda_max = 1.956
    assert payload["lambda_min"] == pytest.approx(0.04473, abs=1e-5)
    rows = {r["optimizer"]: r for r in payload["stability"]}
    assert rows["gd"]["max_stable_lr"] == pytest.approx(2 / s.lambda_max, rel=1e-12)
    assert rows["hb beta=0.9"]["max_stable_lr"] == pytest.approx(3.8 / s.lambda_max, rel=1e-12)
    kappa = s.lambda_max / s.lambda_min
    hb = payload["optimal"]["hb"]
    assert hb["rate"] == pytest.approx((kappa**0.5 - 1) / (kappa**0.5 + 1), rel=1e-12)


def test_kernel_mse_scales_the_stable_lr(capsys):
    """docs/mathematics.md §7.1: with MSELoss the kernel is (2/n) H, so every stable lr grows by n/2."""
    base = json.loads(_run(capsys, "kernel", "--data", "gaussian:d=5", "--n", "20", "--json")[1])
    mse = json.loads(
        _run(capsys, "kernel", "--data", "gaussian:d=5", "--n", "20", "--loss", "mse", "--json")[1]
    )
    for a, b in zip(base["stability"], mse["stability"], strict=True):
        assert b["max_stable_lr"] == pytest.approx(a["max_stable_lr"] * 10, rel=1e-12)


def test_kernel_with_width_reports_empirical_gram(capsys):
    code, out, _ = _run(
        capsys, "kernel", "--data", "gaussian:d=5", "--n", "20", "--width", "1024", "--json"
    )
    assert code == 0
    emp = json.loads(out)["empirical"]
    # docs/mathematics.md §1.3: ||H(0) - H^inf||_F ~ sqrt(V/m) with V = 18.16 for this set
    assert emp["distance_fro"] == pytest.approx((18.16 / 1024) ** 0.5, rel=0.5)


def test_kernel_text_output(capsys):
    code, out, _ = _run(capsys, "kernel", "--data", "digits", "--n", "200", "--lr", "0.01")
    assert code == 0
    assert "lambda_min" in out and "optimal HB" in out and "linear after step" in out


@pytest.mark.parametrize("loss", ["half-sum", "mse"])
def test_predict_writes_the_library_prediction(tmp_path, capsys, loss):
    out = tmp_path / "curve.csv"
    code = _predict(capsys, out, "hb:lr=0.1,beta=0.8", 200, "--loss", loss, "--ode")
    assert code == 0
    table = _read(out)
    data = load_dataset("gaussian:d=5", n=20)
    c = 1.0 if loss == "half-sum" else 2.0 / 20
    expected = predict_discrete(
        c * two_layer_gram(data.X), -data.y, parse("hb:lr=0.1,beta=0.8"), 200
    )
    np.testing.assert_allclose(table["loss"], c * expected, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(table["step"], np.arange(201))
    assert table["ode_loss"][0] == pytest.approx(table["loss"][0], rel=1e-14)
    np.testing.assert_allclose(table["time"], np.arange(201) * 0.1**0.5, rtol=1e-14)


def test_predict_then_rates_classifies(tmp_path, capsys):
    out = tmp_path / "gd.csv"
    code = _predict(capsys, out, "gd:lr=0.5", 2000)
    assert code == 0
    code, text, _ = _run(capsys, "rates", str(out), "--json")
    assert code == 0
    fit = json.loads(text)
    assert fit["kind"] == "linear"
    h0 = 0.5 * 0.0447332
    assert fit["rate"] == pytest.approx(2 * np.log(1 - h0), rel=1e-3)


def test_predict_with_width_uses_network_init(tmp_path, capsys):
    out = tmp_path / "w.csv"
    code = _predict(capsys, out, "gd:lr=0.1", 5, "--width", "256", "--seed", "3")
    assert code == 0
    table = _read(out)
    # e0 = u(W0) - y differs from -y, so L0 differs from 1/2 ||y||^2 = 10
    assert table["loss"][0] != pytest.approx(10.0, rel=1e-6)


@pytest.mark.parametrize(
    "argv,field",
    [
        (["kernel", "--data", "nope"], "data"),
        (["kernel", "--data", "digits", "--n", "0"], "--n"),
        (["kernel", "--data", "digits", "--n", "5000"], "n"),
        (["kernel"], "--data"),
        (["kernel", "--data", "digits", "--lr", "-1"], "--lr"),
        (
            [
                "predict",
                "--data",
                "digits",
                "--optimizer",
                "adam:lr=0.1",
                "--steps",
                "3",
                "--out",
                "x.csv",
            ],
            "--optimizer",
        ),
        (
            [
                "predict",
                "--data",
                "digits",
                "--optimizer",
                "hb:lr=0.1,beta=1.2",
                "--steps",
                "3",
                "--out",
                "x.csv",
            ],
            "beta",
        ),
        (
            [
                "predict",
                "--data",
                "digits",
                "--optimizer",
                "gd:lr=0.1",
                "--steps",
                "-3",
                "--out",
                "x.csv",
            ],
            "--steps",
        ),
        (["rates", "/no/such/curve.csv"], "CURVE"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, field):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ntkdyn: error:")
    assert field in lines[0]


def test_rates_rejects_malformed_curve(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("step,value\n0,1\n1,0.5\n2,0.25\n")
    code, _, err = _run(capsys, "rates", str(bad))
    assert code == 2 and "loss" in err
    bad.write_text("step,loss\n0,1\n1,abc\n2,0.25\n")
    code, _, err = _run(capsys, "rates", str(bad))
    assert code == 2 and "non-numeric" in err


# --------------------------------------------------------------------------------------------
# Startup: the parser is cheap and every subcommand is registered.

_HEAVY = ("torch", "scipy", "matplotlib")


@pytest.mark.parametrize(
    "statement",
    [
        "import ntkdyn",
        "from ntkdyn.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass",
        "from ntkdyn.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ],
)
def test_startup_imports_nothing_heavy(statement):
    code = f"import sys\n{statement}\nprint(sorted(m for m in {_HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_module_entry_point_prints_the_version():
    import ntkdyn

    done = subprocess.run(
        [sys.executable, "-m", "ntkdyn.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == f"ntkdyn {ntkdyn.__version__}"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("kernel", "predict", "rates", "reproduce", "sweep", "report", "export"):
        assert command in out


def test_lazy_public_names_resolve():
    import ntkdyn

    assert set(ntkdyn.__all__) <= set(dir(ntkdyn))
    for name in ntkdyn.__all__:
        assert getattr(ntkdyn, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        ntkdyn.no_such_name  # noqa: B018


def test_kernel_json_is_the_library_summary(capsys):
    from ntkdyn.kernel_summary import kernel_summary

    code, out, _ = _run(capsys, "kernel", *GAUSSIAN, "--width", "64", "--lr", "0.1", "--json")
    assert code == 0
    summary = kernel_summary(load_dataset("gaussian:d=5", n=20), width=64, nesterov_lr=0.1)
    assert json.loads(out) == json.loads(json.dumps(summary.to_dict()))
