"""Configs through the CLI: a bad config, an unwritable out dir or a missing config file gives
exit code 2 with one line naming the field, and nothing written.
"""

from __future__ import annotations

import pytest

from ntkdyn.cli import main

# --------------------------------------------------------------------------------------------
# Through the CLI: exit code 2, one line naming the field, nothing written.

GOOD_EXPERIMENT = """
[[experiment]]
id = "A"
data = "gaussian:d=5"
n = 10
widths = [8]
seeds = [0]
steps = 5
optimizers = ["gd:lr=0.1"]
"""

CLI_BAD = {
    "unknown key": ("widht = [8]", r"`experiment\[0\]\.widht`"),
    "wrong type": ("dtype = 64", r"`experiment\[0\]\.dtype`"),
    "lr <= 0": ('grid = [{optimizer = "gd", lr = [0.0]}]', r"`experiment\[0\]\.grid\[0\]`: `lr`"),
    "empty grid": ("seeds_placeholder = 1", r"`experiment\[0\]\.seeds`"),
    "unknown dataset": ("data_placeholder = 1", r"`experiment\[0\]\.data`"),
    "unreadable mnist": ("mnist_placeholder = 1", r"`experiment\[0\]\.data` mnist path"),
    "critical out of range": (
        "optimizers_placeholder = 1",
        r"`experiment\[0\]\.optimizers\[0\]\.beta`",
    ),
}


def _cli_config(case: str) -> str:
    text = GOOD_EXPERIMENT
    extra, _ = CLI_BAD[case]
    if case == "empty grid":
        return text.replace("seeds = [0]", "seeds = []")
    if case == "unknown dataset":
        return text.replace('"gaussian:d=5"', '"cifar10"')
    if case == "unreadable mnist":
        return text.replace('"gaussian:d=5"', '"mnist:/nonexistent/train-images-idx3-ubyte"')
    if case == "critical out of range":
        return text.replace('"gd:lr=0.1"', '"hb:lr=1000,beta=critical"')
    return text + extra + "\n"


def _run_cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("case", list(CLI_BAD), ids=list(CLI_BAD))
def test_cli_bad_config_exit_2_one_line_nothing_written(case, tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('name = "bad"\n' + _cli_config(case))
    out = tmp_path / "out"
    rc, _, err = _run_cli(["sweep", str(cfg), "--out", str(out)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkdyn: error:"), err
    assert __import__("re").search(CLI_BAD[case][1], lines[0]), lines[0]
    assert not out.exists()  # nothing half-written
    # an existing, empty out dir stays empty
    out.mkdir()
    assert _run_cli(["sweep", str(cfg), "--out", str(out)], capsys)[0] == 2
    assert list(out.iterdir()) == []


def test_cli_out_dir_not_writable(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('name = "ok"\n' + GOOD_EXPERIMENT)
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a directory")
    for out in (blocker / "out", blocker):  # parent is a file; the out path itself is a file
        rc, _, err = _run_cli(["sweep", str(cfg), "--out", str(out)], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert "`--out`" in err and str(blocker) in err
    assert blocker.read_text() == "a regular file, not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml", "file"]


def test_cli_missing_config_file(tmp_path, capsys):
    rc, _, err = _run_cli(
        ["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")], capsys
    )
    assert rc == 2 and "`CONFIG`" in err and not (tmp_path / "o").exists()
