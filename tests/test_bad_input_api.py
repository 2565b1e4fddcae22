"""The bad-input matrix of the library (docs/design.md): every bad input is one ValueError (or
TypeError) whose message names the field in backticks. The command-line half is in
tests/test_bad_input_cli.py.

A case that fails today is marked ``xfail(strict=True)`` with the reason, so that the fix turns
it into a failure to remove the mark.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import ntkdyn
from ntkdyn.data import parse_data_spec

from config_cases import OK_TOML

K2 = np.array([[2.0, 1.0], [1.0, 2.0]])
E0 = np.array([1.0, 0.0])
ASYM = np.array([[1.0, 2.0], [0.0, 1.0]])
T2 = np.array([0.0, 1.0])


def names_field(exc: BaseException, field: str) -> bool:
    """The message names ``field`` in backticks (the contract of docs/guide.md)."""
    return re.search(rf"`{re.escape(field)}`", str(exc)) is not None


def _net(d: int = 3, width: int = 8) -> ntkdyn.TwoLayerReLU:
    return ntkdyn.TwoLayerReLU(d, width)


def _train(**kw):
    args = {"X": np.ones((4, 3)), "y": np.ones(4), "rules": "gd:lr=0.1", "steps": 2}
    args.update(kw)
    models = args.pop("models", _net())
    return ntkdyn.train(models, args.pop("X"), args.pop("y"), args.pop("rules"), **args)


def _zero_row_npz(tmp_path):
    np.savez(tmp_path / "zero.npz", X=np.zeros((0, 4)), y=np.zeros(0))
    return ntkdyn.load_dataset(f"mnist:{tmp_path / 'zero.npz'}")


def _non_utf8_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff\xfe"\n')
    return ntkdyn.load_config(path)


def _sweep(tmp_path, config=OK_TOML, **kw):
    return ntkdyn.run_sweep(config, tmp_path / "out", progress=False, **kw)


# id -> (call taking tmp_path, exception type, field named in backticks)
CASES: dict[str, tuple] = {
    # load_dataset and the data-spec parser
    "load_dataset-unknown-source": (lambda t: ntkdyn.load_dataset("nope"), ValueError, "data"),
    "load_dataset-spec-not-str": (lambda t: ntkdyn.load_dataset(5), ValueError, "data"),
    "load_dataset-n-zero": (lambda t: ntkdyn.load_dataset("gaussian", n=0), ValueError, "n"),
    "load_dataset-n-str": (lambda t: ntkdyn.load_dataset("gaussian", n="5"), ValueError, "n"),
    "load_dataset-n-too-many": (lambda t: ntkdyn.load_dataset("digits", n=5000), ValueError, "n"),
    "load_dataset-seed-negative": (
        lambda t: ntkdyn.load_dataset("gaussian", seed=-1),
        ValueError,
        "seed",
    ),
    "load_dataset-d-zero": (lambda t: ntkdyn.load_dataset("gaussian:d=0"), ValueError, "d"),
    "load_dataset-unknown-option": (lambda t: ntkdyn.load_dataset("gaussian:q=1"), ValueError, "q"),
    "load_dataset-one-class": (
        lambda t: ntkdyn.load_dataset("digits:classes=3"),
        ValueError,
        "classes",
    ),
    "load_dataset-csv-missing": (lambda t: ntkdyn.load_dataset("csv:/no/x.csv"), ValueError, "csv"),
    "load_dataset-mnist-missing": (
        lambda t: ntkdyn.load_dataset("mnist:/no/x"),
        ValueError,
        "mnist",
    ),
    "load_dataset-npz-zero-rows": pytest.param(
        _zero_row_npz,
        ValueError,
        "mnist",
    ),
    "parse_data_spec-empty": (lambda t: parse_data_spec(""), ValueError, "data"),
    # parse and the rule constructors
    "parse-empty": (lambda t: ntkdyn.parse(""), ValueError, "optimizer"),
    "parse-not-str": (lambda t: ntkdyn.parse(3), ValueError, "optimizer"),
    "parse-unknown-name": (lambda t: ntkdyn.parse("sgd:lr=0.1"), ValueError, "optimizer"),
    "parse-no-equals": (lambda t: ntkdyn.parse("gd:lr"), ValueError, "optimizer"),
    "parse-lr-negative": (lambda t: ntkdyn.parse("gd:lr=-1"), ValueError, "lr"),
    "parse-lr-nan": (lambda t: ntkdyn.parse("gd:lr=nan"), ValueError, "lr"),
    "parse-lr-twice": (lambda t: ntkdyn.parse("gd:lr=0.1,lr=0.2"), ValueError, "lr"),
    "parse-beta-above-1": (lambda t: ntkdyn.parse("hb:lr=0.1,beta=1.5"), ValueError, "beta"),
    "parse-r-zero": (lambda t: ntkdyn.parse("nesterov:lr=0.1,r=0"), ValueError, "r"),
    "parse-unknown-key": (lambda t: ntkdyn.parse("hb:lr=0.1,bta=0.9"), ValueError, "bta"),
    "HeavyBall-beta-2": (lambda t: ntkdyn.HeavyBall(0.1, beta=2.0), ValueError, "beta"),
    # TwoLayerReLU
    "TwoLayerReLU-d-zero": (lambda t: ntkdyn.TwoLayerReLU(0, 8), ValueError, "d"),
    "TwoLayerReLU-width-zero": (lambda t: ntkdyn.TwoLayerReLU(3, 0), ValueError, "width"),
    "TwoLayerReLU-width-float": (lambda t: ntkdyn.TwoLayerReLU(3, 2.5), ValueError, "width"),
    "TwoLayerReLU-parameterization": (
        lambda t: ntkdyn.TwoLayerReLU(3, 8, parameterization="x"),
        ValueError,
        "parameterization",
    ),
    "TwoLayerReLU-generator": (
        lambda t: ntkdyn.TwoLayerReLU(3, 8, generator=5),
        ValueError,
        "generator",
    ),
    # train
    "train-steps-negative": (lambda t: _train(steps=-1), ValueError, "steps"),
    "train-y-length": (lambda t: _train(y=np.ones(3)), ValueError, "y"),
    "train-X-nan": (lambda t: _train(X=np.full((4, 3), np.nan)), ValueError, "X"),
    "train-X-columns": (lambda t: _train(X=np.ones((4, 2))), ValueError, "X"),
    "train-loss": (lambda t: _train(loss="l1"), ValueError, "loss"),
    "train-rules-count": (
        lambda t: _train(models=[_net(), _net()], rules=["gd:lr=0.1"] * 3),
        ValueError,
        "rules",
    ),
    "train-rule-lr-zero": (lambda t: _train(rules="gd:lr=0"), ValueError, "lr"),
    "train-diagnostics-every": (
        lambda t: _train(diagnostics_every=0),
        ValueError,
        "diagnostics_every",
    ),
    "train-device": (lambda t: _train(device="tpu"), ValueError, "device"),
    # predict_discrete
    "predict_discrete-K-asymmetric": (
        lambda t: ntkdyn.predict_discrete(ASYM, E0, "gd:lr=0.1", 3),
        ValueError,
        "K",
    ),
    "predict_discrete-K-nan": (
        lambda t: ntkdyn.predict_discrete(np.diag([np.nan, 1.0]), E0, "gd:lr=0.1", 3),
        ValueError,
        "K",
    ),
    "predict_discrete-K-not-square": (
        lambda t: ntkdyn.predict_discrete(np.ones((2, 3)), E0, "gd:lr=0.1", 3),
        ValueError,
        "K",
    ),
    "predict_discrete-K-negative": (
        lambda t: ntkdyn.predict_discrete(np.diag([1.0, -1.0]), E0, "gd:lr=0.1", 3),
        ValueError,
        "K",
    ),
    "predict_discrete-K-str": (
        lambda t: ntkdyn.predict_discrete("K", E0, "gd:lr=0.1", 3),
        ValueError,
        "K",
    ),
    "predict_discrete-e0-length": (
        lambda t: ntkdyn.predict_discrete(K2, np.ones(3), "gd:lr=0.1", 3),
        ValueError,
        "e0",
    ),
    "predict_discrete-e0-nan": (
        lambda t: ntkdyn.predict_discrete(K2, np.array([np.nan, 0.0]), "gd:lr=0.1", 3),
        ValueError,
        "e0",
    ),
    "predict_discrete-adam": (
        lambda t: ntkdyn.predict_discrete(K2, E0, "adam:lr=0.1", 3),
        ValueError,
        "rule",
    ),
    "predict_discrete-steps-negative": (
        lambda t: ntkdyn.predict_discrete(K2, E0, "gd:lr=0.1", -1),
        ValueError,
        "steps",
    ),
    "predict_discrete-steps-float": (
        lambda t: ntkdyn.predict_discrete(K2, E0, "gd:lr=0.1", 2.5),
        ValueError,
        "steps",
    ),
    # predict_ode
    "predict_ode-times-negative": (
        lambda t: ntkdyn.predict_ode(K2, E0, "gd:lr=0.1", np.array([-1.0, 0.0])),
        ValueError,
        "times",
    ),
    "predict_ode-times-nan": (
        lambda t: ntkdyn.predict_ode(K2, E0, "gd:lr=0.1", np.array([0.0, np.nan])),
        ValueError,
        "times",
    ),
    "predict_ode-method": (
        lambda t: ntkdyn.predict_ode(K2, E0, "gd:lr=0.1", T2, method="x"),
        ValueError,
        "method",
    ),
    "predict_ode-adam": (
        lambda t: ntkdyn.predict_ode(K2, E0, "adam:lr=0.1", T2),
        ValueError,
        "rule",
    ),
    "predict_ode-e0-length": (
        lambda t: ntkdyn.predict_ode(K2, np.ones(3), "gd:lr=0.1", T2),
        ValueError,
        "e0",
    ),
    "predict_ode-K-none": (
        lambda t: ntkdyn.predict_ode(None, E0, "gd:lr=0.1", T2),
        ValueError,
        "K",
    ),
    "predict_ode-numeric-rtol": (
        lambda t: ntkdyn.predict_ode(K2, E0, "gd:lr=0.1", T2, method="numeric", rtol=-1),
        ValueError,
        "rtol",
    ),
    # stability, predicted_rate
    "stability-adam": (lambda t: ntkdyn.stability(K2, "adam:lr=0.1"), ValueError, "rule"),
    "stability-K-asymmetric": (lambda t: ntkdyn.stability(ASYM, "gd:lr=0.1"), ValueError, "K"),
    "stability-K-empty": (
        lambda t: ntkdyn.stability(np.zeros((0, 0)), "gd:lr=0.1"),
        ValueError,
        "K",
    ),
    "stability-beta-negative": (
        lambda t: ntkdyn.stability(K2, "hb:lr=0.1,beta=-0.5"),
        ValueError,
        "beta",
    ),
    "predicted_rate-K-inf": (
        lambda t: ntkdyn.predicted_rate(np.diag([np.inf, 1.0]), "gd:lr=0.1"),
        ValueError,
        "K",
    ),
    "predicted_rate-K-singular": (
        lambda t: ntkdyn.predicted_rate(np.zeros((2, 2)), "gd:lr=0.1"),
        ValueError,
        "K",
    ),
    "predicted_rate-rule": (lambda t: ntkdyn.predicted_rate(K2, "zz"), ValueError, "optimizer"),
    # fit_rate
    "fit_rate-negative-loss": (
        lambda t: ntkdyn.fit_rate(np.array([1.0, -1.0, 0.5, 0.2])),
        ValueError,
        "losses",
    ),
    "fit_rate-2d": (lambda t: ntkdyn.fit_rate(np.ones((3, 3))), ValueError, "losses"),
    "fit_rate-str": (lambda t: ntkdyn.fit_rate("abc"), ValueError, "losses"),
    "fit_rate-times-length": (
        lambda t: ntkdyn.fit_rate(np.ones(5), np.arange(4.0)),
        ValueError,
        "times",
    ),
    "fit_rate-times-decreasing": (
        lambda t: ntkdyn.fit_rate(np.exp(-np.arange(10.0)), -np.arange(10.0)),
        ValueError,
        "times",
    ),
    "fit_rate-floor": (
        lambda t: ntkdyn.fit_rate(np.ones(4), floor_rel=1.5),
        ValueError,
        "floor_rel",
    ),
    # spectrum, ntk_gram, empirical_ntk
    "spectrum-asymmetric": (lambda t: ntkdyn.spectrum(ASYM), ValueError, "K"),
    "spectrum-str": (lambda t: ntkdyn.spectrum("x"), ValueError, "K"),
    "spectrum-empty": (lambda t: ntkdyn.spectrum(np.zeros((0, 0))), ValueError, "K"),
    "ntk_gram-depth-zero": (
        lambda t: ntkdyn.ntk_gram(np.ones((3, 2)), depth=0),
        ValueError,
        "depth",
    ),
    "ntk_gram-X-nan": (lambda t: ntkdyn.ntk_gram(np.array([[np.nan, 1.0]])), ValueError, "X"),
    "ntk_gram-X-1d": (lambda t: ntkdyn.ntk_gram(np.ones(3)), ValueError, "X"),
    "ntk_gram-layer": (lambda t: ntkdyn.ntk_gram(np.ones((3, 2)), layer="x"), ValueError, "layer"),
    "empirical_ntk-method": (
        lambda t: ntkdyn.empirical_ntk(_net(), np.ones((4, 3)), method="x"),
        ValueError,
        "method",
    ),
    "empirical_ntk-params": (
        lambda t: ntkdyn.empirical_ntk(_net(), np.ones((4, 3)), params=["nope"]),
        ValueError,
        "params",
    ),
    "empirical_ntk-block-rows": (
        lambda t: ntkdyn.empirical_ntk(_net(), np.ones((4, 3)), method="autodiff", block_rows=0),
        ValueError,
        "block_rows",
    ),
    "empirical_ntk-model-str": (
        lambda t: ntkdyn.empirical_ntk("net", np.ones((4, 3))),
        ValueError,
        "model",
    ),
    "empirical_ntk-X-nan": (
        lambda t: ntkdyn.empirical_ntk(_net(), np.full((4, 3), np.nan)),
        ValueError,
        "X",
    ),
    "empirical_ntk-X-columns": pytest.param(
        lambda t: ntkdyn.empirical_ntk(_net(), np.ones((4, 2))),
        ValueError,
        "X",
    ),
    # load_config, expand_runs, run_sweep
    "load_config-bytes": (lambda t: ntkdyn.load_config(b"x"), ValueError, "config"),
    "load_config-int": (lambda t: ntkdyn.load_config(5), ValueError, "config"),
    "load_config-bad-toml": (lambda t: ntkdyn.load_config("name = \n"), ValueError, "config"),
    "load_config-missing-file": (
        lambda t: ntkdyn.load_config(t / "missing.toml"),
        ValueError,
        "config",
    ),
    "load_config-non-utf8": pytest.param(
        _non_utf8_config,
        ValueError,
        "config",
    ),
    "expand_runs-no-steps": (
        lambda t: ntkdyn.expand_runs(OK_TOML.replace("steps = 2", "")),
        ValueError,
        "experiment[0].steps",
    ),
    "run_sweep-no-experiment": (lambda t: _sweep(t, {"name": "x"}), ValueError, "experiment"),
    "run_sweep-resume-and-fresh": (
        lambda t: _sweep(t, resume=True, fresh=True),
        ValueError,
        "--resume",
    ),
    "run_sweep-bad-optimizer": (
        lambda t: _sweep(t, OK_TOML.replace("gd:lr=0.1", "gd:lr=-1")),
        ValueError,
        "lr",
    ),
}


@pytest.mark.parametrize("call,exc_type,field", list(CASES.values()), ids=list(CASES))
def test_bad_input_raises_one_error_naming_the_field(tmp_path, call, exc_type, field):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. IllConditionedKernelWarning before the refusal
        with pytest.raises((ValueError, TypeError)) as info:
            call(tmp_path)
    assert isinstance(info.value, exc_type), repr(info.value)
    assert names_field(info.value, field), str(info.value)
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "bad.toml"], [tmp_path / "zero.npz"])


def test_the_field_check_can_fail():
    assert names_field(ValueError("`n` must be >= 1"), "n")
    assert not names_field(ValueError("n must be >= 1"), "n")
    assert not names_field(ValueError("`nn` must be >= 1"), "n")
