"""Sweeps: batch planning (grouping and the size bound), the progress reporter, and the CLI
(sweep/export/report errors, and the wiring of ``reproduce``).
"""

from __future__ import annotations

import io
import itertools
import json
import sys

import pytest

from ntkdyn.cli import main
from ntkdyn.experiments.config import load_config
from ntkdyn.experiments.progress import Progress, format_eta
from ntkdyn.experiments.runs import DataCache, expand_runs
from ntkdyn.experiments.sweep import plan_batches

from sweep_cases import TINY


def test_batches_group_by_key_and_respect_the_size_bound():
    text = (
        TINY
        + """
[[experiment]]
id = "U"
data = "gaussian:d=5"
n = 10
widths = [64]
steps = 100
optimizers = ["gd:lr=0.5"]
"""
    )
    cache = DataCache()
    runs = expand_runs(text, cache=cache)
    batches = plan_batches(runs, cache)
    assert [len(b) for b in batches] == [4, 4, 4, 1]  # one optimizer family per batch; steps differ
    bound = 200  # total width; max(n, d) = 10
    small = plan_batches(runs, cache, max_elements=10 * bound)
    sizes = [sum(r.width for r in b) for b in small]
    assert all(size <= bound for size in sizes) and len(small) > 2
    assert [r.id for b in small for r in b] == [r.id for r in runs]  # order kept, none lost
    for b, nxt in itertools.pairwise(small):  # greedy: the next run of its group would not fit
        if (nxt[0].rule.name, nxt[0].config["steps"]) == (b[0].rule.name, b[0].config["steps"]):
            assert sum(r.width for r in b) + nxt[0].width > bound
    assert all(len({(r.rule.name, r.config["steps"]) for r in b}) == 1 for b in small)
    # the default bound depends on the resolved device (no model is built here)
    wide = expand_runs(TINY.replace("widths = [64, 128]", "widths = [1000000, 2000000]"))
    cpu = plan_batches(wide, cache, devices={"auto": "cpu"})
    gpu = plan_batches(wide, cache, devices={"auto": "cuda"})
    # per family: total width 6e6 x max(n, d) = 6e7 < 2^28 (one cuda batch), > the cpu bound
    assert len(cpu) > 3 and len(gpu) == 3


# --------------------------------------------------------------------------------------------
# Progress reporter.


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_lines_without_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    p = Progress(39, work=39, stream=stream, tty=False, interval=10.0, clock=clock)
    clock.t = 56 / 3  # 12 of 39 units in 18.67 s: 27 left at the same rate = 42 s
    p.update(12, 12)
    clock.t = 20.0
    p.update(13, 13)  # within the interval: no line
    clock.t = 30.0
    p.update(39, 39)
    p.close()
    assert stream.getvalue().splitlines() == [
        "[sweep] 12/39 runs, 30%, eta 0:42",
        "[sweep] 39/39 runs, 100%, eta 0:00",
    ]
    assert format_eta(None) == "?" and format_eta(3725) == "1:02:05"


def test_progress_bar_on_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    p = Progress(4, work=100.0, stream=stream, tty=True, clock=clock)
    clock.t = 10.0
    p.update(1, 25.0)
    p.update(2, 50.0)
    p.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "2/4 runs  50%  eta 0:10" in text and "#" * 12 + "-" * 12 in text


def test_progress_moves_inside_a_batch_and_the_eta_counts_partial_work():
    stream, clock = io.StringIO(), FakeClock()
    p = Progress(8, work=800.0, batches=2, stream=stream, tty=False, interval=10.0, clock=clock)
    p.update(0, 0.0, force=True)
    clock.t = 10.0
    p.step(0, 250, 1000, 400.0)  # a quarter of the first batch: 100 of 800 units in 10 s
    assert p.eta() == pytest.approx(70.0)
    clock.t = 20.0
    p.step(0, 500, 1000, 400.0)  # due: a line with the batch and step
    clock.t = 25.0
    p.step(0, 600, 1000, 400.0)  # within the interval: no line
    clock.t = 40.0
    p.update(4, 400.0, batch=0)
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[sweep] 0/8 runs, 0%, eta ?",
        "[sweep] 0/8 runs, 12%, batch 1/2 step 250/1000, eta 1:10",
        "[sweep] 0/8 runs, 25%, batch 1/2 step 500/1000, eta 1:00",
        "[sweep] 4/8 runs, 50%, eta 0:40",
    ]


def test_the_progress_detail_shows_several_running_batches():
    stream, clock = io.StringIO(), FakeClock()
    p = Progress(8, work=800.0, batches=4, stream=stream, tty=True, clock=clock)
    p.step(0, 100, 1000, 200.0)
    clock.t = 1.0
    p.step(2, 900, 1000, 200.0)
    assert "batch 3/4 step 900/1000 (+1 running)" in p.text()
    p.update(2, 200.0, batch=2)
    assert "batch 1/4 step 100/1000" in p.text() and "running" not in p.text()


# --------------------------------------------------------------------------------------------
# CLI.


def test_cli_sweep_export_and_report_errors(tiny, tmp_path, capsys):
    cfg, out, _ = tiny
    assert main(["sweep", str(cfg), "--out", str(out), "--resume", "--no-report"]) == 0
    assert "12 already finished" in capsys.readouterr().out
    assert main(["export", str(out), "--to", str(tmp_path / "x")]) == 0
    with (tmp_path / "x" / "runs.csv").open() as fh:
        assert len(fh.read().strip().splitlines()) == 1 + 12
    with (tmp_path / "x" / "curves.csv").open() as fh:
        assert sum(1 for _ in fh) == 1 + 12 * 201
    capsys.readouterr()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "`DIR`" in capsys.readouterr().err
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert main(["export", str(out), "--format", "parquet", "--to", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err
        assert "pyarrow" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "p" / "runs.parquet").exists()


def test_cli_reproduce_wiring(tmp_path, monkeypatch, capsys):
    """reproduce = presets.get_preset -> run_sweep -> report.build_report -> print the report
    path and the claims (stand-ins for the preset and the report, so only the wiring is
    tested here; tests/test_reproduce.py runs the real ones)."""
    import types

    calls = {}

    def get_preset(name, *, data=None, dtype=None, device=None):
        calls["preset"] = (name, data, dtype, device)
        return load_config(
            TINY.replace("steps = 200", "steps = 5").replace("widths = [64, 128]", "widths = [16]")
        )

    def build_report(out_dir, say=None):
        calls["report"] = out_dir
        (out_dir / "report.html").write_text("<html></html>")
        claims = [
            {
                "id": "C1",
                "statement": "GD converges linearly",
                "verdict": "supported",
                "evidence": "rate",
            }
        ]
        (out_dir / "summary.json").write_text(json.dumps({"claims": claims}))

    monkeypatch.setitem(
        sys.modules, "ntkdyn.experiments.presets", types.SimpleNamespace(get_preset=get_preset)
    )
    report = types.SimpleNamespace(build_report=build_report)
    monkeypatch.setitem(sys.modules, "ntkdyn.report", report)
    out = tmp_path / "repro"
    argv = ["reproduce", "--out", str(out), "--dtype", "float64", "--device", "cpu"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert calls["preset"] == ("quick", None, "float64", "cpu") and calls["report"] == out
    assert f"report: {(out / 'report.html').resolve()}" in stdout
    assert "C1  supported" in stdout and "6 runs trained" in stdout
    assert main(["report", str(out)]) == 0 and "C1  supported" in capsys.readouterr().out
    assert main(["reproduce", "--preset", "nope"]) == 2
    assert "--preset" in capsys.readouterr().err


def test_a_sweep_reports_steps_inside_its_batches(tmp_path, capsys, monkeypatch):
    """The engine's steps reach the display: lines name the batch and its step."""
    import ntkdyn.experiments.progress as progress

    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)  # every update prints a line
    from ntkdyn.experiments.sweep import run_sweep

    run_sweep(TINY, tmp_path / "out", progress=True)
    lines = capsys.readouterr().err.splitlines()
    steps = [line for line in lines if "step" in line]
    assert any("batch 1/3 step 0/200" in line for line in steps), lines
    assert any("batch 3/3 step 200/200" in line for line in steps), lines
    assert lines[-1].startswith("[sweep] 12/12 runs, 100%")


def test_under_jupyter_the_display_is_a_tqdm_bar(monkeypatch):
    """tqdm's auto bar when a kernel runs and tqdm is installed (a stand-in for both here)."""
    import types

    made = []

    class Bar:
        def __init__(self, **kwargs):
            self.kwargs, self.n, self.postfix, self.closed = kwargs, 0, "", False
            made.append(self)

        def set_postfix_str(self, text):
            self.postfix = text

        def close(self):
            self.closed = True

    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = Bar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    stream = io.StringIO()
    p = Progress(4, work=100.0, batches=2, stream=stream)
    assert not made  # no kernel: plain lines
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    p = Progress(4, work=100.0, batches=2, stream=stream)
    p.step(0, 50, 100, 50.0)
    p.update(2, 50.0, batch=0)
    p.close()
    (bar,) = made
    assert bar.n == 500 and bar.closed and "2/4 runs" in bar.postfix
    assert stream.getvalue() == "[sweep] 0/4 runs, 0%, eta ?\n" or stream.getvalue() == ""
