"""Stores that grow, shards that partition (docs/distributed.md).

Run ids are content hashes, so a config that keeps a store's finished runs and adds others
trains only the new ones; a finished run the config no longer has is refused with its id.
Shards of a sweep partition its batches the same way on every machine.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ntkdyn.experiments._shards import parse_shard, shard_batches, work_units
from ntkdyn.experiments.config import config_dict, load_config
from ntkdyn.experiments.runs import DataCache, expand_runs, plan_batches
from ntkdyn.experiments.store import Store
from ntkdyn.experiments.sweep import run_sweep

from sweep_cases import TINY

pytestmark = pytest.mark.usefixtures("single_thread")

WIDER = TINY.replace("widths = [64, 128]", "widths = [64, 128, 256]")


@pytest.fixture
def copy(tiny, tmp_path):
    cfg, out, runs = tiny
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    with Store(target, readonly=True) as s:
        stamps = s.finished_times()
    return target, runs, stamps


def test_a_config_adding_a_width_trains_only_the_new_runs(copy):
    out, runs, stamps = copy
    with pytest.raises(
        ValueError, match=r"holds 12 finished runs this config also has \(it adds 6"
    ):
        run_sweep(WIDER, out, progress=False)
    result = run_sweep(WIDER, out, resume=True, progress=False)
    assert (result.total, result.skipped, result.trained) == (18, 12, 6)
    with Store(out, readonly=True) as s:
        after = s.finished_times()
        meta = s.meta()
        widths = {r.id: r.width for r in s.load_runs()}
    assert {i: after[i] for i in stamps} == stamps  # the finished runs were not touched
    assert sorted(widths[i] for i in set(after) - set(stamps)) == [256] * 6
    assert meta["config"] == __import__("json").dumps(
        config_dict(load_config(WIDER)), sort_keys=True
    )
    again = run_sweep(WIDER, out, resume=True, progress=False)
    assert (again.skipped, again.trained) == (18, 0)


@pytest.mark.parametrize(
    "change, gone",
    [
        (("steps = 200", "steps = 201"), 12),  # every run changed: every id is new
        (("widths = [64, 128]", "widths = [64, 256]"), 6),  # width 128 removed
        (('"gd:lr=0.5", ', ""), 4),  # an optimizer removed
    ],
)
def test_a_changed_or_removed_finished_run_is_refused_with_its_ids(copy, change, gone):
    out, runs, stamps = copy
    other = TINY.replace(*change)
    assert other != TINY
    new_ids = {r.id for r in expand_runs(load_config(other))}
    missing = sorted(set(runs) - new_ids)
    assert len(missing) == gone
    for resume, fresh in ((True, False), (False, True), (False, False)):
        with pytest.raises(ValueError, match=rf"holds {gone} finished runs .*{missing[0]}"):
            run_sweep(other, out, resume=resume, fresh=fresh, progress=False)
    with Store(out, readonly=True) as s:
        assert s.finished_times() == stamps  # nothing deleted, nothing retrained


# --------------------------------------------------------------------------------------------
# Shards.


def test_shards_partition_the_batches_deterministically_and_balanced():
    cache = DataCache()
    runs = expand_runs(load_config(WIDER), cache=cache)
    batches = plan_batches(runs, cache, max_elements=10 * 128)  # small batches: many
    assert len(batches) >= 6
    for n in (1, 2, 3, 5):
        parts = [shard_batches(batches, (i, n), cache) for i in range(1, n + 1)]
        ids = [r.id for part in parts for b in part for r in b]
        assert sorted(ids) == sorted(r.id for r in runs)  # each run in exactly one shard
        assert parts == [shard_batches(batches, (i, n), DataCache()) for i in range(1, n + 1)]
        work = [sum(work_units(b, cache) for b in p) for p in parts]
        largest = max(work_units(b, cache) for b in batches)
        assert max(work) - min(work) <= largest  # greedy bound of longest-first dealing
    # a batch is never split across shards
    whole = {tuple(r.id for r in b) for b in batches}
    assert {tuple(r.id for r in b) for b in shard_batches(batches, (2, 3), cache)} <= whole


def test_two_shards_into_one_directory_complete_the_store_of_one_sweep(tiny, tmp_path):
    cfg, _, runs = tiny
    out = tmp_path / "shards"
    first = run_sweep(cfg, out, shard="1/2", progress=False)
    assert 0 < first.total < 12
    with Store(out, readonly=True) as s:
        assert s.meta()["shard"] == "1/2"
    second = run_sweep(cfg, out, shard=(2, 2), resume=True, progress=False)
    assert first.total + second.total == 12 and second.trained == second.total
    with Store(out, readonly=True) as s:
        stored = {r.id: r for r in s.load_runs()}
    assert sorted(stored) == sorted(runs)
    for i, ref in runs.items():
        np.testing.assert_allclose(stored[i].losses, ref.losses, rtol=1e-10, atol=0)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", ""])
def test_a_bad_shard_names_the_field(text):
    with pytest.raises(ValueError, match="`--shard`"):
        parse_shard(text)


def test_a_good_shard_parses():
    assert parse_shard(" 2 / 8 ") == (2, 8) and parse_shard((1, 1)) == (1, 1)


# --------------------------------------------------------------------------------------------
# --dry-run.


def test_dry_run_plans_the_runs_a_resume_would_train_and_writes_nothing(copy, tmp_path, capsys):
    from ntkdyn.cli import main

    out, runs, stamps = copy
    wider = tmp_path / "wider.toml"
    wider.write_text(WIDER)
    before = sorted(p.name for p in out.iterdir())
    assert main(["sweep", str(wider), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "runs: 18 (12 done, 6 to train) in 3 batches" in text, text
    assert "estimated time on this machine:" in text
    assert sorted(p.name for p in out.iterdir()) == before
    with Store(out, readonly=True) as s:
        assert s.finished_times() == stamps
    fresh = tmp_path / "new"
    assert main(["sweep", str(wider), "--out", str(fresh), "--dry-run", "--shard", "1/2"]) == 0
    text = capsys.readouterr().out
    cache = DataCache()
    planned = plan_batches(expand_runs(load_config(WIDER), cache=cache), cache)
    shard_runs = sum(len(b) for b in shard_batches(planned, (1, 2), cache))
    assert f"runs: {shard_runs} (0 done, {shard_runs} to train)" in text, text
    assert not fresh.exists()
    code = main(["sweep", str(wider), "--out", str(fresh), "--dry-run", "--shard", "3/2"])
    assert code == 2 and "`--shard`" in capsys.readouterr().err
