"""Sweeps: batch planning (grouping and the size bound), the progress reporter, and the CLI
(sweep/export/report errors, and the wiring of ``reproduce``).
"""

from __future__ import annotations

import io
import itertools
import json
import sys

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

    def build_report(out_dir):
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
