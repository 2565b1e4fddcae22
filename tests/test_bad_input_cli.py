"""The bad-input matrix of the ``ntkdyn`` command (docs/guide.md): every bad input prints one
line ``ntkdyn: error: ...`` naming the option in backticks on stderr, exits 2, prints no
traceback and leaves no file behind. The library half is in tests/test_bad_input_api.py.

Cases run in-process (``ntkdyn.cli.main``) in a fresh working directory; one runs the real
command in a subprocess.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from ntkdyn.cli import main

from config_cases import OK_TOML


def _inputs(root):
    """The input files every case may refer to, by relative name."""
    (root / "ok.toml").write_text(OK_TOML)
    (root / "bad.toml").write_bytes(b'name = "\xff\xfe"\n')
    (root / "broken.toml").write_text("name = \n[[experiment]]")
    (root / "unknown-key.toml").write_text(OK_TOML.replace("widths", "widht"))
    (root / "bad-optimizer.toml").write_text(OK_TOML.replace("gd:lr=0.1", "gd:lr=-1"))
    np.savez(root / "zero.npz", X=np.zeros((0, 4)), y=np.zeros(0))
    (root / "one.csv").write_text("step,loss\n0,1.0\n")
    (root / "two.csv").write_text("step,loss\n0,1.0\n1,0.5\n")
    (root / "noloss.csv").write_text("step,value\n0,1\n1,0.5\n2,0.25\n")
    (root / "text.csv").write_text("step,loss\n0,1\n1,abc\n2,0.25\n")
    (root / "nan.csv").write_text("step,loss\n0,nan\n1,nan\n2,nan\n3,nan\n")
    (root / "empty.csv").write_text("")
    (root / "afile").write_text("x")
    (root / "existing").mkdir()


def listing(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_line_error(code, err: str, field: str) -> str | None:
    """Why ``(code, err)`` breaks the contract for ``field``, or None if it keeps it."""
    lines = err.splitlines()
    if code != 2:
        return f"exit code {code}, not 2"
    if "Traceback" in err or len(lines) != 1:
        return f"stderr is not one line: {err!r}"
    if not lines[0].startswith("ntkdyn: error: "):
        return f"not an error line: {lines[0]!r}"
    if not re.search(rf"`{re.escape(field)}`", lines[0]):
        return f"`{field}` is not named: {lines[0]!r}"
    return None


G = ["--data", "gaussian:d=5", "--n", "5"]
P = ["predict", *G, "--optimizer", "gd:lr=0.1", "--steps", "3"]


def _predict(optimizer: str = "gd:lr=0.1", steps: str = "3") -> list[str]:
    return ["predict", *G, "--optimizer", optimizer, "--steps", steps, "--out", "p.csv"]


CASES = {
    # kernel
    "kernel-unknown-data": (["kernel", "--data", "nope"], "data"),
    "kernel-n-zero": (["kernel", "--data", "digits", "--n", "0"], "--n"),
    "kernel-n-too-many": (["kernel", "--data", "digits", "--n", "5000"], "n"),
    "kernel-n-beyond-memory": (["kernel", "--data", "gaussian", "--n", "100000000"], "--n"),
    "kernel-depth-zero": (["kernel", *G, "--depth", "0"], "--depth"),
    "kernel-width-zero": (["kernel", *G, "--width", "0"], "--width"),
    "kernel-lr-negative": (["kernel", *G, "--lr", "-1"], "--lr"),
    "kernel-r-nan": (["kernel", *G, "--r", "nan"], "--r"),
    "kernel-d-zero": (["kernel", "--data", "gaussian:d=0"], "d"),
    "kernel-csv-missing": (["kernel", "--data", "csv:missing.csv"], "csv"),
    "kernel-csv-nan-labels": (["kernel", "--data", "csv:nan.csv"], "y"),
    "kernel-npz-zero-rows": (["kernel", "--data", "mnist:zero.npz"], "mnist"),
    "kernel-data-seed-negative": (["kernel", *G, "--data-seed", "-1"], "--data-seed"),
    "kernel-loss-unknown": (["kernel", *G, "--loss", "l1"], "--loss"),
    "kernel-no-data": (["kernel"], "--data"),
    # predict
    "predict-adam": (_predict("adam:lr=0.1"), "--optimizer"),
    "predict-unknown-optimizer": (_predict("x"), "optimizer"),
    "predict-no-lr": (_predict("hb:beta=0.9"), "lr"),
    "predict-beta-above-1": (_predict("hb:lr=0.1,beta=1.2"), "beta"),
    "predict-steps-negative": (_predict(steps="-3"), "--steps"),
    "predict-steps-beyond-memory": (_predict(steps="10000000000"), "--steps"),
    "predict-width-zero": ([*P, "--width", "0", "--out", "p.csv"], "--width"),
    "predict-out-existing-dir": ([*P, "--out", "existing"], "--out"),
    "predict-out-under-a-file": ([*P, "--out", "afile/p.csv"], "--out"),
    "predict-no-out": (P, "--out"),
    # rates
    "rates-missing-file": (["rates", "missing.csv"], "CURVE"),
    "rates-one-point": (["rates", "one.csv"], "CURVE"),
    "rates-two-points": (["rates", "two.csv"], "CURVE"),
    "rates-no-loss-column": (["rates", "noloss.csv"], "CURVE"),
    "rates-non-numeric": (["rates", "text.csv"], "CURVE"),
    "rates-empty": (["rates", "empty.csv"], "CURVE"),
    "rates-directory": (["rates", "existing"], "CURVE"),
    "rates-floor-2": (["rates", "nan.csv", "--floor", "2"], "--floor"),
    # reproduce
    "reproduce-unknown-data": (["reproduce", "--data", "nope", "--out", "o"], "data"),
    "reproduce-resume-and-fresh": (["reproduce", "--out", "o", "--resume", "--fresh"], "--resume"),
    "reproduce-out-is-a-file": (["reproduce", "--out", "afile"], "--out"),
    "reproduce-unknown-preset": (["reproduce", "--preset", "nope", "--out", "o"], "--preset"),
    "reproduce-dtype-float16": (["reproduce", "--dtype", "float16", "--out", "o"], "--dtype"),
    # sweep
    "sweep-missing-config": (["sweep", "missing.toml", "--out", "o"], "CONFIG"),
    "sweep-config-is-a-dir": (["sweep", "existing", "--out", "o"], "CONFIG"),
    "sweep-invalid-toml": (["sweep", "broken.toml", "--out", "o"], "config"),
    "sweep-unknown-key": (["sweep", "unknown-key.toml", "--out", "o"], "experiment[0].widht"),
    "sweep-bad-optimizer": (["sweep", "bad-optimizer.toml", "--out", "o"], "lr"),
    "sweep-resume-and-fresh": (
        ["sweep", "ok.toml", "--out", "o", "--resume", "--fresh"],
        "--resume",
    ),
    "sweep-out-is-a-file": (["sweep", "ok.toml", "--out", "afile"], "--out"),
    "sweep-non-utf8-config": (["sweep", "bad.toml", "--out", "o"], "config"),
    # report, export
    "report-missing-dir": (["report", "missing"], "DIR"),
    "report-dir-without-store": (["report", "existing"], "DIR"),
    "report-a-file": (["report", "afile"], "DIR"),
    "export-missing-dir": (["export", "missing"], "DIR"),
    "export-dir-without-store": (["export", "existing", "--to", "x"], "DIR"),
    "export-unknown-format": (["export", "existing", "--format", "xls"], "--format"),
    "unknown-command": (["frobnicate"], "frobnicate"),
}


@pytest.mark.parametrize("argv,field", list(CASES.values()), ids=list(CASES))
def test_bad_command_line_is_one_error_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, argv, field
):
    _inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits only for --help / --version
        code = exc.code
    # any other exception propagates: the command would have printed a traceback
    out, err = capsys.readouterr()
    assert listing(tmp_path) == before, "a file was left behind"
    assert out == ""
    problem = one_line_error(code, err, field)
    assert problem is None, problem


def test_predict_into_an_existing_directory_leaves_it_untouched(tmp_path, monkeypatch, capsys):
    """The write is atomic: no half-written file, no temporary file, the directory unchanged."""
    _inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing" / "keep.txt").write_text("keep")
    before = listing(tmp_path)
    assert main([*P, "--out", "existing"]) == 2
    assert listing(tmp_path) == before
    assert (tmp_path / "existing" / "keep.txt").read_text() == "keep"
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_nan_curve_is_classified_undetermined(tmp_path, monkeypatch, capsys):
    _inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["rates", "nan.csv", "--json"]) == 0
    assert '"kind": "undetermined"' in capsys.readouterr().out


def test_the_real_command_prints_one_line_and_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ntkdyn.cli", "report", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert one_line_error(done.returncode, done.stderr, "DIR") is None, done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "code,err,ok",
    [
        (2, "ntkdyn: error: `--n` must be >= 1\n", True),
        (1, "ntkdyn: error: `--n` must be >= 1\n", False),
        (2, "ntkdyn: error: --n must be >= 1\n", False),
        (2, "ntkdyn: error: `--n` bad\nTraceback (most recent call last):\n", False),
        (2, "error: `--n` must be >= 1\n", False),
    ],
    ids=["keeps", "exit-1", "no-backticks", "traceback", "no-prefix"],
)
def test_the_contract_check_can_fail(code, err, ok):
    assert (one_line_error(code, err, "--n") is None) is ok


# --------------------------------------------------------------------------------------------
# `--model MODULE:FACTORY` (tests/test_cli_model.py has the forms that work): every bad form
# is one line naming the option, exit 2, and leaves nothing behind (no __pycache__ either).

_MODELS = """
import torch

NUMBER = 3


def make(input_dim, outputs):
    return torch.nn.Sequential(torch.nn.Linear(input_dim, 8), torch.nn.Linear(8, outputs))


def needs_width(input_dim, width):
    return make(input_dim, 1)


def raises():
    raise RuntimeError("boom\\nsecond line")


def a_list():
    return [1, 2]


def seven_inputs():
    return make(7, 1)


def three_outputs(input_dim):
    return make(input_dim, 3)


class Pair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 1)

    def forward(self, x):
        return self.lin(x), x


def pair():
    return Pair()
"""


def _model_inputs(root):
    _inputs(root)
    (root / "models.py").write_text(_MODELS)
    (root / "broken.py").write_text("def make(:\n")
    (root / "raising.py").write_text("raise ImportError('needs a GPU')\n")


_M = ["predict", *G, "--optimizer", "gd:lr=0.1", "--steps", "3", "--out", "p.csv", "--model"]
_K = ["kernel", *G, "--model", "models.py:make"]

MODEL_CASES = {
    "no-factory": ([*_M, "models.py"], "--model"),
    "empty-factory": ([*_M, "models.py:"], "--model"),
    "missing-file": ([*_M, "missing.py:make"], "--model"),
    "a-directory": ([*_M, "existing/x.py:make"], "--model"),
    "missing-module": ([*_M, "no_such_module_for_ntkdyn:make"], "--model"),
    "syntax-error": ([*_M, "broken.py:make"], "--model"),
    "import-raises": ([*_M, "raising.py:make"], "--model"),
    "no-attribute": ([*_M, "models.py:nope"], "--model"),
    "module-no-attribute": ([*_M, "models:nope"], "--model"),
    "not-callable": ([*_M, "models.py:NUMBER"], "--model"),
    "other-arguments": ([*_M, "models.py:needs_width"], "--model"),
    "factory-raises": ([*_M, "models.py:raises"], "--model"),
    "not-a-module": ([*_M, "models.py:a_list"], "--model"),
    "wrong-input-dim": ([*_M, "models.py:seven_inputs"], "--model"),
    "wrong-outputs": ([*_M, "models.py:three_outputs"], "--model"),
    "tuple-outputs": ([*_M, "models.py:pair"], "--model"),
    "seed-beyond-64-bits": ([*_M, "models.py:make", "--seed", str(2**70)], "--seed"),
    "with-width": ([*_M, "models.py:make", "--width", "8"], "--width"),
    "test-fraction-1": ([*_M, "models.py:make", "--test-fraction", "1"], "--test-fraction"),
    "test-fraction-no-row": ([*_M, "models.py:make", "--test-fraction", "0.01"], "--test-fraction"),
    "outputs-at-zero": ([*_M, "models.py:make", "--outputs-at", "0"], "--outputs-at"),
    "logistic-on-digits": (
        [
            "kernel",
            "--data",
            "digits",
            "--n",
            "20",
            "--model",
            "models.py:make",
            "--loss",
            "logistic",
        ],
        "--loss",
    ),
    "cross-entropy-on-real-labels": (
        [
            "kernel",
            "--data",
            "synthetic",
            "--n",
            "5",
            "--model",
            "models.py:make",
            "--loss",
            "cross-entropy",
        ],
        "--loss",
    ),
    "kernel-depth": ([*_K, "--depth", "2"], "--depth"),
    "kernel-lr-non-squared": ([*_K, "--loss", "logistic", "--lr", "0.1"], "--lr"),
    "kernel-unknown-structure": ([*_K, "--structure", "diag"], "--structure"),
    "structure-without-model": (["kernel", *G, "--structure", "trace"], "--structure"),
    "outputs-at-without-model": ([*P, "--outputs-at", "3", "--out", "p.csv"], "--outputs-at"),
    "test-fraction-without-model": (
        [*P, "--test-fraction", "0.5", "--out", "p.csv"],
        "--test-fraction",
    ),
    "logistic-without-model": ([*P, "--loss", "logistic", "--out", "p.csv"], "--loss"),
    "unstable-with-strict": (
        [*_M, "models.py:make", "--optimizer", "gd:lr=100", "--strict"],
        "--optimizer",
    ),
}


@pytest.mark.parametrize("argv,field", list(MODEL_CASES.values()), ids=list(MODEL_CASES))
def test_bad_model_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch, capsys, argv, field):
    _model_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    code = main(argv)  # any exception propagates: the command would have printed a traceback
    out, err = capsys.readouterr()
    assert listing(tmp_path) == before, "a file was left behind"
    assert out == ""
    err = "\n".join(line for line in err.splitlines() if "IllConditioned" not in line)
    problem = one_line_error(code, err, field)
    assert problem is None, problem
