"""``merge_stores`` (``ntkdyn merge``): two shards of a sweep merged give the runs and the
summary.json of one unsharded run; a merge run again adds nothing; another config, other data,
a run with other results, a damaged source and OUT among the sources are refused with nothing
written (docs/distributed.md, "Shards and merge")."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3

import numpy as np
import pytest

from ntkdyn.experiments.doctor import doctor
from ntkdyn.experiments.merge import KERNEL_RTOL, MERGED_FROM, merge_stores
from ntkdyn.experiments.store import STORE_NAME, Store
from ntkdyn.experiments.sweep import run_sweep
from ntkdyn.report.build import build_report

SHARDS = 2


def _rows(folder) -> dict[str, str]:
    """Run id -> the checksum of its stored row (the row's bytes, timing included)."""
    con = sqlite3.connect(f"{(folder / STORE_NAME).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT id, checksum FROM runs"))
    finally:
        con.close()


def _split(whole, dirs) -> None:
    """Shard stores made from an unsharded one: its meta and kernels, alternate runs each."""
    with Store(whole, readonly=True) as s:
        meta, kernels, runs = s.meta(), list(s.kernels().values()), s.load_runs()
    for i, folder in enumerate(dirs):
        folder.mkdir()
        with Store(folder / STORE_NAME) as shard:
            keep = {k: v for k, v in meta.items() if k != "schema_version"}
            shard.set_meta({**keep, "shard": f"{i + 1}/{len(dirs)}"})
            shard.write_kernels(kernels)
            shard.write_batch(runs[i :: len(dirs)])


@pytest.fixture(scope="module")
def shards(tiny, tmp_path_factory):
    """(config, the unsharded results dir, two shard dirs): the tiny sweep's runs split
    between two stores (cheap; the sweep's own shards are trained in the first test)."""
    cfg, whole, _ = tiny
    root = tmp_path_factory.mktemp("shards")
    dirs = [root / f"shard{i}" for i in range(1, SHARDS + 1)]
    _split(whole, dirs)
    return cfg, whole, dirs


def _copy(folder, to):
    shutil.copytree(folder, to)
    return to


def _meta(folder) -> dict[str, str]:
    with Store(folder, readonly=True) as s:
        return s.meta()


def _kernels(folder) -> dict:
    with Store(folder, readonly=True) as s:
        return s.kernels()


def _summary(folder) -> bytes:
    build_report(folder, figures=False)
    return (folder / "summary.json").read_bytes()


@pytest.fixture(scope="module")
def swept(tiny, tmp_path_factory):
    """(config, the unsharded results dir, the dirs of its shards 1/2 and 2/2, each trained
    by ``run_sweep(shard=...)``)."""
    cfg, whole, _ = tiny
    root = tmp_path_factory.mktemp("swept")
    dirs = [root / f"shard{i}" for i in range(1, SHARDS + 1)]
    for i, folder in enumerate(dirs, 1):
        run_sweep(cfg, folder, shard=(i, SHARDS), progress=False)
    return cfg, whole, dirs


def test_two_shards_merged_give_the_store_and_summary_of_one_unsharded_run(swept, tmp_path):
    _, whole, dirs = swept
    got = merge_stores(dirs, tmp_path / "merged")
    shard_rows = [_rows(d) for d in dirs]
    assert set(shard_rows[0]).isdisjoint(shard_rows[1]) and all(shard_rows)
    assert got.copied == tuple(len(r) for r in shard_rows) and got.present == (0, 0)
    assert (got.total, got.expected, got.complete, got.notes) == (12, 12, True, ())
    assert got.shards == ("1/2", "2/2")
    # every row copied byte for byte, and the same runs as the unsharded sweep
    assert _rows(tmp_path / "merged") == {**shard_rows[0], **shard_rows[1]}
    assert set(_rows(tmp_path / "merged")) == set(_rows(whole))
    meta, first = _meta(tmp_path / "merged"), _meta(dirs[0])
    assert "shard" not in meta and meta["config"] == first["config"]
    assert meta["environment"] == first["environment"]  # they agree: the first one's
    assert meta["created"] == min(_meta(d)["created"] for d in dirs)
    assert _summary(tmp_path / "merged") == _summary(_copy(whole, tmp_path / "whole"))


def test_a_merge_lacking_a_shard_says_so_and_a_resumed_sweep_completes_it(swept, tmp_path):
    cfg, _, dirs = swept
    full = merge_stores(dirs, tmp_path / "merged")
    alone = merge_stores(dirs[:1], tmp_path / "alone")
    assert full.complete and full.notes == ()
    assert not alone.complete and alone.total == len(_rows(dirs[0])) < 12
    assert alone.notes[0].startswith(f"incomplete: {12 - alone.total} of the config's 12 runs")
    assert "(shards 2/2 not merged)" in alone.notes[0] and "--resume" in alone.notes[0]
    assert _summary(tmp_path / "alone") != _summary(tmp_path / "merged")
    # the missing shard's batches, trained whole: the same curves, the same summary
    resumed = run_sweep(cfg, tmp_path / "alone", resume=True, progress=False)
    assert (resumed.skipped, resumed.trained) == (alone.total, 12 - alone.total)
    assert _summary(tmp_path / "alone") == _summary(tmp_path / "merged")


def test_a_merge_run_again_adds_nothing_and_completes_an_interrupted_one(shards, tmp_path):
    _, _, dirs = shards
    out = tmp_path / "merged"
    merge_stores(dirs[:1], out)  # as if killed after the first source
    before = _rows(out)
    again = merge_stores(dirs, out)
    assert again.copied == (0, len(_rows(dirs[1]))) and again.present == (len(before), 0)
    rows = _rows(out)
    assert len(rows) == 12
    lines: list[str] = []
    third = merge_stores(dirs, out, say=lines.append)
    assert third.copied == (0, 0) and third.present == (len(before), 12 - len(before))
    assert _rows(out) == rows and third.total == 12
    assert any(line.startswith("wrote 0 runs of") for line in lines)
    assert third.lines()[-1] == f"merged: 12 of 12 runs in {str(out / STORE_NAME)!r}"


def _edit_meta(folder, **items) -> None:
    with Store(folder) as s:
        s.set_meta(items)


def test_another_config_is_refused_naming_what_differs(shards, tmp_path):
    cfg, _, dirs = shards
    other = _copy(dirs[1], tmp_path / "other")
    config = json.loads(_meta(other)["config"])
    config["experiments"][0]["widths"] = [64]
    _edit_meta(other, config=json.dumps(config, sort_keys=True))
    with pytest.raises(
        ValueError, match=r"`SHARD_DIR` '.*other' holds results of another config"
    ) as e:
        merge_stores([dirs[0], other], tmp_path / "out")
    assert "experiments[0].widths: [64, 128] vs [64]" in str(e.value)
    assert not (tmp_path / "out").exists()
    # the untouched copy merges
    assert merge_stores([dirs[0], _copy(dirs[1], tmp_path / "same")], tmp_path / "out").complete


def test_other_data_is_refused(shards, tmp_path):
    _, _, dirs = shards
    other = _copy(dirs[1], tmp_path / "other")
    hashes = json.loads(_meta(other)["data_hashes"])
    key = sorted(hashes)[0]
    _edit_meta(other, data_hashes=json.dumps({**hashes, key: "0" * 16}))
    with pytest.raises(ValueError, match=f"the data of key '{key}' has content hash '0{{16}}'"):
        merge_stores([dirs[0], other], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _edit_meta(other, data_hashes=json.dumps(hashes))
    assert merge_stores([dirs[0], other], tmp_path / "out").total == 12


def _with_run(folder, run) -> None:
    with Store(folder) as s:
        s.write_batch([run])


def test_a_run_with_other_results_is_refused_and_an_identical_one_copied_once(shards, tmp_path):
    _, _, dirs = shards
    with Store(dirs[0], readonly=True) as s:
        run = s.load_runs()[0]
    changed = _copy(dirs[1], tmp_path / "changed")
    _with_run(changed, dataclasses.replace(run, losses=run.losses * (1 + 2**-40)))
    with pytest.raises(ValueError, match=f"run '{run.id}' .* is stored with different results"):
        merge_stores([dirs[0], changed], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # the same results trained again at another time: copied once, the first one kept
    again = _copy(dirs[1], tmp_path / "again")
    _with_run(again, dataclasses.replace(run, elapsed=123.0, finished="2000-01-01T00:00:00"))
    got = merge_stores([dirs[0], again], tmp_path / "out")
    assert got.present == (0, 1) and got.total == 12
    assert _rows(tmp_path / "out")[run.id] == _rows(dirs[0])[run.id]


def test_a_damaged_source_is_refused_naming_it_and_its_salvage_merges(shards, tmp_path):
    _, _, dirs = shards
    broken = _copy(dirs[1], tmp_path / "broken")
    victim = sorted(_rows(broken))[0]
    con = sqlite3.connect(broken / STORE_NAME)
    with con:
        con.execute("UPDATE runs SET losses = ? WHERE id = ?", (b"\1" * 40, victim))
    con.close()
    with pytest.raises(ValueError, match=r"`SHARD_DIR` '.*broken' cannot be merged: .*doctor") as e:
        merge_stores([dirs[0], broken], tmp_path / "out")
    assert repr(victim) in str(e.value) and not (tmp_path / "out").exists()
    lines, healthy = doctor(broken, tmp_path / "salvaged")
    assert not healthy
    got = merge_stores([dirs[0], tmp_path / "salvaged"], tmp_path / "out")
    assert got.total == 11 and not got.complete and victim not in _rows(tmp_path / "out")


def test_out_among_the_sources_is_refused_and_nothing_changes(shards, tmp_path):
    _, _, dirs = shards
    before = [_rows(d) for d in dirs]
    for out in (dirs[0], dirs[0] / STORE_NAME, dirs[0] / ".." / dirs[0].name):
        with pytest.raises(ValueError, match=r"`OUT` .* is also a source"):
            merge_stores(dirs, out)
    with pytest.raises(ValueError, match="is given twice"):
        merge_stores([dirs[0], dirs[0] / STORE_NAME], tmp_path / "out")
    with pytest.raises(ValueError, match="`SHARD_DIR` needs at least one"):
        merge_stores([], tmp_path / "out")
    with pytest.raises(ValueError, match="holds no results.sqlite"):
        merge_stores([tmp_path], tmp_path / "out")
    assert [_rows(d) for d in dirs] == before and not (tmp_path / "out").exists()
    # OUT holding a shard, or another config's store, is refused too
    with pytest.raises(ValueError, match=r"`OUT` .* holds shard 2/2 of a sweep"):
        merge_stores(dirs[:1], _copy(dirs[1], tmp_path / "shard2"))
    assert merge_stores(dirs, tmp_path / "out").total == 12


def test_differing_environments_are_listed_in_an_order_of_their_own(shards, tmp_path):
    _, _, dirs = shards
    other = _copy(dirs[1], tmp_path / "other")
    env = json.loads(_meta(other)["environment"])
    _edit_meta(other, environment=json.dumps({**env, "platform": "elsewhere"}))
    envs = []
    for name, order in (("ab", [dirs[0], other]), ("ba", [other, dirs[0]])):
        got = merge_stores(order, tmp_path / name)
        assert any(MERGED_FROM in note for note in got.notes)
        envs.append(_meta(tmp_path / name)["environment"])
    assert envs[0] == envs[1]  # not the order of the sources
    merged = json.loads(envs[0])
    assert "platform" not in merged and merged["torch"] == env["torch"]
    assert sorted(e["platform"] for e in merged[MERGED_FROM]) == sorted(
        [env["platform"], "elsewhere"]
    )
    # merging a merged store again lists each environment once
    merge_stores([tmp_path / "ab"], tmp_path / "abab")
    assert _meta(tmp_path / "abab")["environment"] == envs[0]


def test_kernels_agreeing_within_kernel_rtol_are_merged_others_refused(shards, tmp_path):
    _, _, dirs = shards
    for scale, ok in ((KERNEL_RTOL / 100, True), (KERNEL_RTOL * 100, False)):
        other = _copy(dirs[1], tmp_path / f"k{ok}")
        with Store(other) as s:
            ks = list(s.kernels().values())
            bump = [dataclasses.replace(k, eigenvalues=k.eigenvalues * (1 + scale)) for k in ks]
            s.write_kernels(bump)
        out = tmp_path / f"out{ok}"
        if ok:
            got = merge_stores([dirs[0], other], out)
            assert any(n.startswith(f"kernel '{ks[0].key}'") for n in got.notes)
            kept = _kernels(out)[ks[0].key].eigenvalues
            assert np.array_equal(kept, _kernels(dirs[0])[ks[0].key].eigenvalues)
        else:
            with pytest.raises(ValueError, match=r"H\^inf spectrum .* KERNEL_RTOL"):
                merge_stores([dirs[0], other], out)
            assert not out.exists()
