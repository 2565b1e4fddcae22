"""``ntkdyn predict`` / ``ntkdyn kernel`` with ``--model MODULE:FACTORY`` and every loss, the
unstable-step warning (``--strict``: an error) and the float64 floor of a written curve.

All in-process (``ntkdyn.cli.main``), on tiny tanh networks written to ``tmp_path``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sys

import numpy as np
import pytest
import torch

from ntkdyn import load_dataset
from ntkdyn._factory import loss_labels
from ntkdyn.cli import main
from ntkdyn.cli.parser import STRUCTURES
from ntkdyn.dynamics import stability
from ntkdyn.function_space import loss_floor
from ntkdyn.kernels import spectrum, two_layer_gram
from ntkdyn.linearized import linearize

#: Two runs of the same prediction in one process take the same BLAS paths; the CSV holds
#: ``repr`` floats (exact), so agreement is to rounding of a few reductions at most.
SAME_PATH_RTOL = 1e-12
#: The initial loss from the network's own outputs against the loss the CLI writes: one
#: float64 forward pass on each side, summed in different orders.
LOSS0_RTOL = 1e-12

NETS = """
import torch


def make_net(input_dim, outputs):
    return torch.nn.Sequential(
        torch.nn.Linear(input_dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, outputs)
    )


def no_args():
    return make_net(5, 1)


def by_kwargs(**kwargs):
    return make_net(kwargs["input_dim"], kwargs["outputs"])
"""

GAUSSIAN = ("--data", "gaussian:d=5", "--n", "12")


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """``nets.py`` in a fresh working directory; returns the factory module, loaded apart."""
    (tmp_path / "nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("_test_nets", tmp_path / "nets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("nets", None)  # imported by name by a case: the next one has its own


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _read(path):
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _losses(path):
    header, body = _read(path)
    table = np.array(body, dtype=float)
    return {h: table[:, i] for i, h in enumerate(header)}


def _net(module, seed, d=5, outputs=1):
    torch.manual_seed(seed)
    return module.make_net(d, outputs)


def _lin(module, data_spec, n, loss, seed=0, rows=None, test=None, structure="full"):
    """``linearize`` of the factory's network, as the CLI builds it (the reference)."""
    data = load_dataset(data_spec, n=n)
    labels, C = loss_labels(loss, data.y, data.name)
    rows = np.arange(data.n) if rows is None else rows
    net = _net(module, seed, data.d, C)
    X_test = None if test is None else np.array(data.X[test])
    return linearize(
        net, np.array(data.X[rows]), labels[rows], loss=loss, X_test=X_test, structure=structure
    )


def test_parser_structures_are_the_library_ones():
    from ntkdyn._kernel_operator import STRUCTURES as LIBRARY

    assert STRUCTURES == LIBRARY


# --------------------------------------------------------------------------------------------
# predict --model: the loss and the outputs are linearize's.


def test_predict_writes_linearize_loss_and_outputs(nets, tmp_path, capsys):
    code, out, err = _run(
        capsys,
        "predict",
        *GAUSSIAN,
        "--model",
        "nets.py:make_net",
        "--seed",
        "3",
        "--optimizer",
        "hb:lr=0.02,beta=0.5",
        "--steps",
        "40",
        "--outputs-at",
        "4",
        "--test-fraction",
        "0.25",
        "--out",
        "p.csv",
    )
    assert code == 0, err
    assert "p.outputs.csv" in out
    header, body = _read(tmp_path / "p.outputs.csv")
    assert header == ["split", "step", "row", "output", "value"]
    train_rows = sorted({int(r[2]) for r in body if r[0] == "train"})
    test_rows = sorted({int(r[2]) for r in body if r[0] == "test"})
    assert len(test_rows) == 3 and sorted(train_rows + test_rows) == list(range(12))
    lin = _lin(nets, "gaussian:d=5", 12, "half-sum", 3, np.array(train_rows), np.array(test_rows))
    p = lin.predict("hb:lr=0.02,beta=0.5", 40, outputs_at=4)
    np.testing.assert_allclose(_losses(tmp_path / "p.csv")["loss"], p.loss, rtol=SAME_PATH_RTOL)
    # 5 recorded steps x (9 train + 3 test rows) x 1 output, in (step, row, output) order
    assert len(body) == 5 * 12
    steps = sorted({int(r[1]) for r in body})
    assert steps == p.output_steps.tolist() == [0, 10, 20, 30, 40]
    for split, rows, values in (("train", train_rows, p.outputs), ("test", test_rows, None)):
        got = np.array([float(r[4]) for r in body if r[0] == split]).reshape(5, len(rows), 1)
        want = values if values is not None else p.test_outputs
        np.testing.assert_allclose(got, want, rtol=SAME_PATH_RTOL, atol=0)
    # and the prediction did something: the outputs moved
    assert np.abs(p.outputs[-1] - p.outputs[0]).max() > 1e-3


def test_predict_cross_entropy_on_digit_classes(nets, tmp_path, capsys):
    argv = ["predict", "--data", "digits:classes=0/1/2", "--n", "15", "--model"]
    argv += ["nets.py:make_net", "--loss", "cross-entropy", "--optimizer", "gd:lr=1"]
    code, _, err = _run(capsys, *argv, "--steps", "20", "--outputs-at", "1", "--out", "ce.csv")
    assert code == 0, err
    data = load_dataset("digits:classes=0/1/2", n=15)
    net = _net(nets, 0, 64, 3)
    with torch.no_grad():
        F0 = net.double()(torch.tensor(np.array(data.X)))
    # digits 0/1/2 keep their digit values as classes
    L0 = torch.nn.functional.cross_entropy(F0, torch.tensor(data.y).long()).item()
    loss = _losses(tmp_path / "ce.csv")["loss"]
    assert loss[0] == pytest.approx(L0, rel=LOSS0_RTOL)
    assert loss[-1] < loss[0]
    _, body = _read(tmp_path / "ce.outputs.csv")
    assert len(body) == 2 * 15 * 3  # steps 0 and 20, 15 rows, 3 classes
    assert {int(r[3]) for r in body} == {0, 1, 2}


def test_predict_logistic_and_the_ode(nets, tmp_path, capsys):
    argv = ["predict", *GAUSSIAN, "--model", "nets.py:make_net", "--loss", "logistic"]
    code, _, err = _run(
        capsys, *argv, "--optimizer", "gd:lr=2", "--steps", "10", "--ode", "--out", "l.csv"
    )
    assert code == 0, err
    data = load_dataset("gaussian:d=5", n=12)
    with torch.no_grad():
        f0 = _net(nets, 0).double()(torch.tensor(np.array(data.X)))[:, 0].numpy()
    table = _losses(tmp_path / "l.csv")
    assert table["loss"][0] == pytest.approx(np.mean(np.log1p(np.exp(-data.y * f0))), rel=1e-12)
    assert table["ode_loss"][0] == pytest.approx(table["loss"][0], rel=1e-12)
    np.testing.assert_allclose(table["time"], 2.0 * np.arange(11), rtol=1e-15)


def test_cross_entropy_numbers_labels_in_ascending_order():
    labels, C = loss_labels("cross-entropy", np.array([8.0, 3.0, 8.0, 5.0]), "d")
    assert C == 3 and labels.tolist() == [2, 0, 2, 1]
    labels, C = loss_labels("cross-entropy", np.array([-1.0, 1.0, 1.0]), "d")
    assert C == 2 and labels.tolist() == [0, 1, 1]


@pytest.mark.parametrize("factory", ["nets.py:make_net", "nets.py:no_args", "nets:by_kwargs"])
def test_every_factory_form_gives_the_seeded_network(nets, tmp_path, capsys, factory):
    """A .py path or an importable module; keywords, none, or **kwargs: the same network."""
    argv = ["predict", *GAUSSIAN, "--model", factory, "--optimizer", "gd:lr=0.01"]
    code, _, err = _run(capsys, *argv, "--steps", "0", "--seed", "5", "--out", "f.csv")
    assert code == 0, err
    _, body = _read(tmp_path / "f.outputs.csv")
    data = load_dataset("gaussian:d=5", n=12)
    with torch.no_grad():
        want = _net(nets, 5).double()(torch.tensor(np.array(data.X)))[:, 0].numpy()
    np.testing.assert_allclose([float(r[4]) for r in body], want, rtol=1e-12)
    with torch.no_grad():  # and a different seed is a different network
        other = _net(nets, 6).double()(torch.tensor(np.array(data.X)))[:, 0].numpy()
    assert np.abs(other - want).max() > 1e-3


def test_the_factory_call_leaves_torch_global_generator_alone(nets, capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    argv = ["predict", *GAUSSIAN, "--model", "nets.py:make_net", "--optimizer", "gd:lr=0.01"]
    assert _run(capsys, *argv, "--steps", "1", "--out", "g.csv")[0] == 0
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------------
# kernel --model


@pytest.mark.parametrize("structure", STRUCTURES)
def test_kernel_reports_the_empirical_ntk(nets, capsys, structure):
    argv = ["kernel", "--data", "digits:classes=0/1/2", "--n", "10", "--model", "nets.py:make_net"]
    code, out, err = _run(
        capsys, *argv, "--loss", "cross-entropy", "--structure", structure, "--json"
    )
    assert code == 0, err
    payload = json.loads(out)
    lin = _lin(nets, "digits:classes=0/1/2", 10, "cross-entropy", structure=structure)
    K = lin.kernel.K
    eigs = np.concatenate([spectrum(k).eigenvalues for k in (K if K.ndim == 3 else [K])])
    assert payload["outputs"] == 3 and payload["structure"] == structure
    assert payload["lambda_max"] == pytest.approx(eigs.max(), rel=1e-10)
    # cross-entropy: the curvature bound 1/(2n), so GD's limit is 2 / (lambda_max / (2n))
    assert payload["loss_factor"] == pytest.approx(1 / 20, rel=1e-15)
    gd = next(r for r in payload["stability"] if r["optimizer"] == "gd")
    assert gd["max_stable_lr"] == pytest.approx(2 / (eigs.max() / 20), rel=1e-10)
    assert "optimal" not in payload  # no optimal pair for a bound


def test_kernel_text_for_a_squared_loss(nets, capsys):
    argv = ["kernel", *GAUSSIAN, "--model", "nets.py:make_net", "--loss", "mse", "--lr", "0.1"]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert "empirical NTK of nets.py:make_net" in out
    assert "K_eff = 0.166667 K" in out  # mse: c = 2/n, n = 12
    assert "optimal HB" in out and "linear after step" in out


# --------------------------------------------------------------------------------------------
# Stability: a warning with the numbers, an error with --strict.

_WARNING = re.compile(
    r"^ntkdyn: warning: `--optimizer` gd:lr=(\S+): lr (\S+) is (\S+)x the largest stable lr "
    r"(\S+) of gd on this kernel"
)


def _gd_limit(nets) -> float:
    lin = _lin(nets, "gaussian:d=5", 12, "half-sum")
    return stability(lin.kernel_model().eigenvalues, "gd:lr=1").max_stable_lr


@pytest.mark.parametrize("model", [True, False])
def test_an_unstable_step_warns_with_the_numbers(nets, tmp_path, capsys, model):
    if model:
        limit, extra = _gd_limit(nets), ["--model", "nets.py:make_net"]
    else:  # H^inf of the paper's network: gd is stable below 2 / lambda_max
        lam = spectrum(two_layer_gram(load_dataset("gaussian:d=5", n=12).X)).lambda_max
        limit, extra = 2 / lam, []
    lr = 1.5 * limit
    argv = ["predict", *GAUSSIAN, *extra, "--optimizer", f"gd:lr={lr!r}", "--steps", "5"]
    code, _, err = _run(capsys, *argv, "--out", "u.csv")
    assert code == 0
    lines = [line for line in err.splitlines() if "--optimizer" in line]
    assert len(lines) == 1, err
    match = _WARNING.match(lines[0])
    assert match, lines[0]
    assert float(match.group(2)) == pytest.approx(lr, rel=1e-5)
    assert float(match.group(3)) == pytest.approx(1.5, rel=1e-3)
    assert float(match.group(4)) == pytest.approx(limit, rel=1e-5)
    (tmp_path / "u.csv").unlink()
    code, _, err = _run(capsys, *argv, "--strict", "--out", "u.csv")
    assert code == 2 and err.startswith("ntkdyn: error: `--optimizer`") and "1.5x" in err
    assert not (tmp_path / "u.csv").exists()
    # below the limit: no warning, even with --strict
    argv[argv.index(f"gd:lr={lr!r}")] = f"gd:lr={0.9 * limit!r}"
    code, _, err = _run(capsys, *argv, "--strict", "--out", "u.csv")
    assert code == 0 and "--optimizer" not in err


def test_a_non_squared_loss_warns_against_its_curvature_bound(nets, capsys):
    argv = ["predict", *GAUSSIAN, "--model", "nets.py:make_net", "--loss", "logistic"]
    lin = _lin(nets, "gaussian:d=5", 12, "logistic")
    limit = 2 / float(lin.kernel.eigenbasis().eigenvalues.max() / (4 * 12))
    code, _, err = _run(
        capsys, *argv, "--optimizer", f"gd:lr={2 * limit!r}", "--steps", "3", "--out", "b.csv"
    )
    assert code == 0, err
    assert "loss's bound 1/(4nC)" in err and "2x" in err and f"{limit:.6g}" in err


# --------------------------------------------------------------------------------------------
# The floor.


def test_a_long_gd_curve_stops_at_the_float64_floor(tmp_path, monkeypatch, capsys):
    """docs/mathematics.md §9.4: gd at lr 0.5 on gaussian:d=5 (n = 20, h0 = 0.022) falls by
    ~e^-0.045 per step and would reach 1e-60 by step 3000; the curve stops at the floor."""
    monkeypatch.chdir(tmp_path)
    argv = ["predict", "--data", "gaussian:d=5", "--n", "20", "--optimizer", "gd:lr=0.5"]
    code, out, _ = _run(capsys, *argv, "--steps", "3000", "--ode", "--out", "f.csv")
    assert code == 0
    table = _losses(tmp_path / "f.csv")
    floor = loss_floor(1.0, 20, 1.0)  # half-sum, labels +-1, zero initial outputs
    assert floor == pytest.approx(0.5 * 20 * np.finfo(float).eps ** 2)
    k = int(table["step"][-1])
    assert table["loss"][-1] <= floor < table["loss"][-2]
    assert 1000 < k < 3000 and table["ode_loss"].size == k + 1
    assert f"curve stops at step {k}: below the float64 floor" in out
    # a curve that stays above the floor is written in full, with no note
    code, out, _ = _run(capsys, *argv, "--steps", "300", "--out", "g.csv")
    assert _losses(tmp_path / "g.csv")["step"][-1] == 300 and "floor" not in out


def test_a_model_curve_stops_at_the_float64_floor(nets, tmp_path, capsys):
    lin = _lin(nets, "gaussian:d=5", 4, "half-sum")
    best = 2 / (lin.kernel_model().lambda_max + lin.kernel_model().lambda_min)
    argv = ["predict", "--data", "gaussian:d=5", "--n", "4", "--model", "nets.py:make_net"]
    argv += ["--optimizer", f"gd:lr={best!r}", "--steps", "20000", "--outputs-at", "1"]
    code, out, err = _run(capsys, *argv, "--out", "m.csv")
    assert code == 0, err
    p = lin.predict(f"gd:lr={best!r}", 20000, outputs_at=1)
    assert p.floor_step is not None
    assert _losses(tmp_path / "m.csv")["step"][-1] == p.floor_step
    assert f"curve stops at step {p.floor_step}" in out
