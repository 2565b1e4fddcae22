"""Requests that cannot fit in memory fail before anything is allocated or loaded, with the
estimate and the knob to turn (one line, exit code 2), and leave no file behind."""

from __future__ import annotations

import numpy as np
import pytest

from ntkdyn import predict_discrete
from ntkdyn._budget import MEMORY_SHARE, TooLarge, check_fits, curve_bytes, kernel_bytes
from ntkdyn.cli import EXIT_BAD_INPUT, main


def test_check_fits_refuses_only_past_the_share_of_available_memory():
    avail = 10 * 2**30
    check_fits("n", 1, "x", int(0.99 * MEMORY_SHARE * avail), "lower n", available=avail)
    with pytest.raises(TooLarge, match=r"`n` 7 needs about 8\.08 GiB for x, .* lower n"):
        check_fits("n", 7, "x", int(1.01 * MEMORY_SHARE * avail), "lower n", available=avail)


def test_estimates_count_the_arrays_alive_at_once():
    assert kernel_bytes(1000) == 6 * 8 * 1000**2
    assert curve_bytes(99, columns=3) == 3 * 8 * 100


def test_kernel_with_a_huge_n_fails_at_once(capsys):
    assert main(["kernel", "--data", "gaussian:d=5", "--n", "200000"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ntkdyn: error: `--n` 200000 needs about")
    assert "TiB" in err[0] and "lower --n" in err[0]


def test_predict_with_a_huge_step_count_fails_at_once_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "p.csv"
    args = ["predict", "--data", "gaussian:d=5", "--n", "20", "--optimizer", "gd:lr=0.1"]
    assert main([*args, "--steps", "10000000000", "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "`--steps` 10000000000 needs about" in err and "use fewer --steps" in err
    assert list(tmp_path.iterdir()) == []


def test_the_library_refuses_too_many_steps_naming_the_field():
    K = np.diag([1.0, 2.0])
    with pytest.raises(TooLarge, match="`steps` 10000000000000 needs about"):
        predict_discrete(K, np.ones(2), "gd:lr=0.1", 10**13)
    assert predict_discrete(K, np.ones(2), "gd:lr=0.1", 10).shape == (11,)  # a normal request


def test_a_sweep_with_a_network_too_wide_for_memory_fails_before_writing(tmp_path, capsys):
    cfg = tmp_path / "huge.toml"
    cfg.write_text(
        'name = "huge"\n[[experiment]]\nid = "H"\ndata = "gaussian:d=5"\nn = 10\n'
        'widths = [64, 1000000000]\nsteps = 10\noptimizers = ["gd:lr=0.1"]\n'
    )
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "`widths` 1000000000 needs about" in err and "use smaller widths" in err
    assert not out.exists()
    cfg.write_text(cfg.read_text().replace(", 1000000000", ""))  # the same config, sized to fit
    assert main(["sweep", str(cfg), "--out", str(out), "--no-report"]) == 0


def test_running_out_of_memory_mid_command_is_one_line(monkeypatch, capsys):
    """An allocation that fails after the plan (another process took the memory) ends in one
    line and exit 2; any other RuntimeError is a bug and keeps its traceback."""
    import ntkdyn.kernel_summary as ks

    def fail(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 1 TB")

    monkeypatch.setattr(ks, "kernel_summary", fail)
    assert main(["kernel", "--data", "gaussian:d=5", "--n", "10"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ntkdyn: error: out of memory (DefaultCPU")

    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(ks, "kernel_summary", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["kernel", "--data", "gaussian:d=5", "--n", "10"])


def test_the_kernel_functions_refuse_an_input_too_large_for_memory(monkeypatch):
    import ntkdyn
    import ntkdyn._budget as budget

    monkeypatch.setattr(budget, "available_bytes", lambda: 10 * 2**20)  # a 10 MiB machine
    X = np.random.default_rng(0).standard_normal((600, 5))  # 600^2 x 48 B = 16 MiB
    for kernel in (ntkdyn.ntk_gram, lambda X: ntkdyn.deep_relu_ntk(X, 2)):
        with pytest.raises(TooLarge, match=r"`X` with 600 rows needs about 16\.5 MiB"):
            kernel(X)
    net = ntkdyn.TwoLayerReLU(5, 8)
    with pytest.raises(TooLarge, match="`X` with 600 rows"):
        ntkdyn.empirical_ntk(net, X)
    assert ntkdyn.ntk_gram(X[:100]).shape == (100, 100)  # 0.46 MiB fits
