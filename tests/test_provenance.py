"""Provenance of a sweep's data and the size guard (ntkdyn.experiments.runs, sweep):

* every data key's content hash is stored in the meta ``data_hashes``; ``--resume`` on a
  ``csv:`` file that changed since is refused naming the file, and nothing is deleted; the
  same data (even a rewritten file) resume; an older store without hashes is accepted;
* a config past MAX_RUNS runs or MAX_WORK work is refused before anything is written unless
  confirmed (``confirm_large`` / ``--yes``);
* repeated identical warnings of the expansion come out as one line with a count.
"""

from __future__ import annotations

import json
import sqlite3
import warnings

import numpy as np
import pytest

from ntkdyn import load_dataset
from ntkdyn.cli import main
from ntkdyn.data import Dataset
from ntkdyn.experiments import runs as runs_module
from ntkdyn.experiments._existing import check_data_hashes
from ntkdyn.experiments.config import load_config
from ntkdyn.experiments.runs import expand_runs, sweep_size
from ntkdyn.experiments.store import STORE_NAME, Store
from ntkdyn.experiments.sweep import run_sweep

CONFIG = """
name = "prov"
[[experiment]]
id = "P"
data = "csv:{path}"
widths = [16]
seeds = [0, 1]
steps = 10
optimizers = ["gd:lr=0.5"]
"""


def _write_csv(path, bump: float = 0.0) -> None:
    table = np.random.default_rng(3).standard_normal((8, 4))
    table[0, 0] += bump
    np.savetxt(path, table, delimiter=",", fmt="%.17g")


@pytest.fixture()
def swept(tmp_path):
    """A finished 2-run sweep on a csv file: (config path, csv path, out dir)."""
    data = tmp_path / "d.csv"
    _write_csv(data)
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(path=data.as_posix()))
    out = tmp_path / "out"
    result = run_sweep(cfg, out, progress=False)
    assert (result.total, result.trained) == (2, 2)
    return cfg, data, out


def _state(out):
    with Store(out, readonly=True) as s:
        return s.finished_times(), s.meta().get("data_hashes")


# --------------------------------------------------------------------------------------------
# Data hashes.


def test_hashes_are_recorded_per_data_key(swept):
    cfg, data, out = swept
    _, stored = _state(out)
    (key, digest), *rest = json.loads(stored).items()
    assert rest == [] and key.startswith(f"csv:{data.as_posix()};")
    expected = load_dataset(f"csv:{data}").content_hash()
    assert digest == expected and len(digest) == 64


def test_changed_csv_is_refused_on_resume_and_nothing_is_deleted(swept):
    cfg, data, out = swept
    before = _state(out)
    ids = sorted(r.id for r in expand_runs(cfg))
    _write_csv(data, bump=1e-9)
    assert sorted(r.id for r in expand_runs(cfg)) == ids  # ids hash the config only
    with pytest.raises(
        ValueError, match=r"^`data` 'csv:.*d\.csv' \(file '.*d\.csv'\) changed"
    ) as e:
        run_sweep(cfg, out, resume=True, progress=False)
    assert "--fresh" in str(e.value) and "another --out" in str(e.value)
    assert _state(out) == before


def test_same_data_resumes_even_from_a_rewritten_file(swept):
    cfg, data, out = swept
    before = _state(out)
    _write_csv(data)  # new mtime, same content
    result = run_sweep(cfg, out, resume=True, progress=False)
    assert (result.skipped, result.trained) == (2, 0)
    assert _state(out)[0] == before[0]


def test_fresh_accepts_changed_data_and_records_the_new_hash(swept):
    cfg, data, out = swept
    _, old = _state(out)
    _write_csv(data, bump=0.5)
    result = run_sweep(cfg, out, fresh=True, progress=False)
    assert (result.deleted, result.trained) == (2, 2)
    _, new = _state(out)
    assert new != old
    assert run_sweep(cfg, out, resume=True, progress=False).skipped == 2


def test_older_store_without_hashes_resumes_and_gets_them(swept):
    cfg, data, out = swept
    _, stored = _state(out)
    con = sqlite3.connect(out / STORE_NAME)
    with con:
        con.execute("DELETE FROM meta WHERE key = 'data_hashes'")
    con.close()
    assert _state(out)[1] is None
    assert run_sweep(cfg, out, resume=True, progress=False).skipped == 2
    assert _state(out)[1] == stored


def test_changed_csv_on_the_command_line_is_one_error_line(swept, capsys):
    cfg, data, out = swept
    _write_csv(data, bump=1.0)
    rc = main(["sweep", str(cfg), "--out", str(out), "--resume", "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("ntkdyn: error: `data`"), err
    assert str(data.as_posix()) in err[0]


def test_stored_hashes_must_be_a_json_table():
    check_data_hashes(None, {"k": "a"}, {}, "o")  # an older store: nothing to compare
    check_data_hashes('{"k": "a"}', {"k": "a"}, {}, "o")
    for bad in ("not json", "[1, 2]"):
        with pytest.raises(ValueError, match="^`data_hashes` .* is not a JSON table"):
            check_data_hashes(bad, {"k": "a"}, {}, "o")


def test_content_hash_sees_values_and_shapes():
    X = np.arange(1.0, 7.0).reshape(3, 2)
    y = np.array([1.0, -1.0, 1.0])
    base = Dataset(X, y).content_hash()
    assert Dataset(X.copy(), y.copy()).content_hash() == base
    X2 = X.copy()
    X2[2, 1] = np.nextafter(X2[2, 1], 10.0)  # one ulp
    assert Dataset(X2, y).content_hash() != base
    assert Dataset(X.reshape(2, 3).T.copy(), y).content_hash() != base  # same bytes, other rows


# --------------------------------------------------------------------------------------------
# Size guard.


def test_a_million_run_config_is_refused_before_anything_is_written(tmp_path):
    config = {
        "name": "huge",
        "experiment": [
            {
                "id": "H",
                "data": "gaussian:d=5",
                "n": 10,
                "widths": list(range(1, 1001)),
                "seeds": list(range(1000)),
                "steps": 10,
                "optimizers": ["gd:lr=0.1"],
            }
        ],
    }
    assert sweep_size(load_config(config)) == (1_000_000, 1000 * 500_500 * 10)
    with pytest.raises(
        ValueError, match=r"^`config` 'huge' expands to 1,000,000 runs .*work of 5e\+09"
    ):
        run_sweep(config, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("limit", ["MAX_RUNS", "MAX_WORK"])
def test_big_config_needs_confirmation(swept, monkeypatch, tmp_path, limit):
    cfg, _, _ = swept
    monkeypatch.setattr(runs_module, limit, 1)  # the 2-run, work-320 config is now "big"
    with pytest.raises(ValueError, match=r"expands to 2 runs .* work of 320 .*--yes"):
        run_sweep(cfg, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()
    result = run_sweep(cfg, tmp_path / "o", progress=False, confirm_large=True)
    assert result.trained == 2


def test_yes_on_the_command_line(swept, monkeypatch, tmp_path, capsys):
    cfg, _, _ = swept
    monkeypatch.setattr(runs_module, "MAX_RUNS", 1)
    argv = ["sweep", str(cfg), "--out", str(tmp_path / "o"), "--no-report"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 runs" in err[0] and "--yes" in err[0], err
    assert main([*argv, "--yes"]) == 0


# --------------------------------------------------------------------------------------------
# Repeated warnings of the expansion.


def _hom_config(steps: list[int]) -> dict:
    # b1 + b2 >= 1 makes every built rule warn; each grid point builds it again
    exp = {"id": "W", "data": "gaussian:d=5", "n": 6, "widths": [8], "seeds": [0]}
    return {
        "name": "w",
        "experiment": [{**exp, "steps": steps, "optimizers": ["hom:lr=0.1,b1=0.6,b2=0.5"]}],
    }


def test_repeated_warnings_are_collapsed_with_a_count():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(expand_runs(_hom_config([5, 6, 7]))) == 3
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].endswith("(3 times while expanding the config)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expand_runs(_hom_config([5]))
    assert [str(w.message).endswith("guarantee here and may diverge") for w in caught] == [True]
