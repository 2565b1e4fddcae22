"""The dry-run plan (``experiments.estimate.plan_sweep``): the same runs and batches as the sweep,
memory as the budget counts it, the cost model's terms, its text and JSON forms, bad input.
Times come from injected constants, so nothing here is timed."""

from __future__ import annotations

import json

import pytest

from ntkdyn._budget import network_bytes
from ntkdyn.experiments import DataCache, expand_runs, load_config, plan_batches
from ntkdyn.experiments.estimate import (
    TEXT_BATCH_LINES,
    Calibration,
    MachineConstants,
    plan_sweep,
)
from tests.sweep_cases import TINY

#: Only the flops term: 1 ns per flop, every other constant 0.
FLOPS_ONLY = Calibration.fixed(MachineConstants(step_overhead=0.0, seconds_per_flop=1e-9))
#: Every term, for structural checks.
ALL_TERMS = Calibration.fixed(
    MachineConstants(
        step_overhead=1e-4,
        seconds_per_flop=1e-9,
        batch_overhead=1e-2,
        unit_setup=1e-6,
        kernel_overhead=1e-3,
        kernel_per_unit=1e-6,
        predict_per_step=1e-6,
        eig_per_n3=1e-9,
    )
)
#: Float sums of the same terms in another order differ by rounding only.
RTOL = 1e-12


def _plan(config=TINY, **kw):
    kw.setdefault("calibrate", ALL_TERMS)
    return plan_sweep(config, **kw)


def _sweep_batches(config=TINY, max_elements=None):
    cache = DataCache()
    runs = expand_runs(load_config(config), cache=cache)
    return runs, plan_batches(runs, cache, max_elements=max_elements), cache


def test_plan_has_the_sweeps_runs_and_batches():
    runs, batches, _ = _sweep_batches()
    plan = _plan()
    assert plan.total_runs == len(runs) == 12
    assert plan.done_runs == 0 and plan.to_train == 12
    assert len(plan.batches) == len(batches) == 3  # one per optimizer family
    assert [b.runs for b in plan.batches] == [len(b) for b in batches]
    assert [b.width for b in plan.batches] == [sum(r.width for r in b) for b in batches]
    assert {b.optimizer for b in plan.batches} == {"gd", "hb", "nesterov"}
    assert all(b.n == 10 and b.d == 5 and b.steps == 200 for b in plan.batches)
    assert all(b.device == "cpu" and b.dtype == "float64" for b in plan.batches)


def test_split_batches_follow_the_bound():
    # 192 units x max(n, d) = 10 -> 1920 elements per family; a bound of 1000 splits each
    _, batches, _ = _sweep_batches(max_elements=1000)
    plan = _plan(max_batch_elements=1000)
    assert len(plan.batches) == len(batches) > 3


def test_done_runs_are_left_out():
    runs, _, _ = _sweep_batches()
    done = frozenset(r.id for r in runs if r.rule.name == "gd") | {r.id for r in runs[4:5]}
    plan = _plan(done=done)
    assert plan.done_runs == len(done) == 5
    assert plan.to_train == 7 == sum(b.runs for b in plan.batches)
    assert "gd" not in {b.optimizer for b in plan.batches}  # a batch with nothing left goes


def test_nothing_done_leaves_everything():
    plan = _plan(done=frozenset({"0123456789abcdef"}))  # an id of no run
    assert plan.done_runs == 0 and plan.to_train == 12


def test_memory_is_the_budgets_sum_of_network_bytes():
    _, batches, cache = _sweep_batches()
    plan = _plan()
    for bp, batch in zip(plan.batches, batches, strict=True):
        rows = max(cache.dataset(batch[0].data_spec).n, cache.dataset(batch[0].data_spec).d)
        regs = getattr(batch[0].rule, "registers", 3)
        expected = sum(network_bytes(r.width, rows, regs, 8) for r in batch)
        assert bp.memory_bytes == expected
    # the must-fail side: the registers matter (GD has 1, HB 2), so a wrong count differs
    gd = next(b for b in plan.batches if b.optimizer == "gd")
    hb = next(b for b in plan.batches if b.optimizer == "hb")
    assert gd.width == hb.width and gd.memory_bytes < hb.memory_bytes


def _with_widths(widths):
    return TINY.replace("widths = [64, 128]", f"widths = {widths}")


def test_doubled_width_doubles_the_flops_term():
    one = _plan(_with_widths([64, 128]), calibrate=FLOPS_ONLY)
    two = _plan(_with_widths([128, 256]), calibrate=FLOPS_ONLY)
    for a, b in zip(one.batches, two.batches, strict=True):
        assert b.flops == 2 * a.flops
        assert b.seconds == pytest.approx(2 * a.seconds, rel=RTOL)
    # theory mode, n = 10 > d = 5: W-space, 4 M n d flops per step
    a = one.batches[0]
    assert a.flops == a.steps * 4 * a.width * a.n * a.d
    # must fail: a per-batch overhead does not double with the width
    fixed = Calibration.fixed(MachineConstants(step_overhead=1e-3, seconds_per_flop=1e-9))
    one, two = (_plan(_with_widths(w), calibrate=fixed) for w in ([64, 128], [128, 256]))
    assert two.batches[0].seconds != pytest.approx(2 * one.batches[0].seconds, rel=1e-3)


def test_total_is_the_sum_of_batches_plus_setup():
    plan = _plan()
    assert plan.seconds == pytest.approx(
        plan.setup_seconds + sum(b.seconds for b in plan.batches), rel=RTOL
    )
    assert all(b.seconds > 0 for b in plan.batches)


def test_workers_give_the_lpt_bound():
    plan = _plan(workers=2)
    times = sorted((b.worker_seconds for b in plan.batches), reverse=True)
    loads = [0.0, 0.0]
    for t in times:
        loads[loads.index(min(loads))] += t
    assert plan.parallel_seconds == pytest.approx(plan.setup_seconds + max(loads), rel=RTOL)
    # at least the longest batch, at most everything in a row
    assert plan.setup_seconds + times[0] <= plan.parallel_seconds <= plan.seconds
    one = _plan(workers=1)
    assert one.parallel_seconds is None and one.batches[0].worker_seconds is None


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_workers_are_refused(workers):
    with pytest.raises(ValueError, match="`workers`"):
        _plan(workers=workers)


@pytest.mark.parametrize(
    ("field", "value"),
    [("done", "abc"), ("done", [1]), ("calibrate", 3), ("workers_here", "yes")],
)
def test_bad_done_or_calibration_is_refused(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        _plan(**{field: value})


def test_negative_constants_are_refused():
    with pytest.raises(ValueError, match="`seconds_per_flop`"):
        MachineConstants(step_overhead=0.0, seconds_per_flop=-1.0)


def test_uncalibrated_plan_has_no_times():
    plan = plan_sweep(TINY, calibrate=False)
    assert plan.seconds is None and all(b.seconds is None for b in plan.batches)
    assert "not calibrated" in plan.text()


def test_text_has_one_line_per_batch_and_totals():
    plan = _plan()
    lines = plan.text().splitlines()
    body = [line for line in lines if line.split() and line.split()[0].isdigit()]
    assert len(body) == len(plan.batches) == 3
    assert "runs: 12 (0 done, 12 to train) in 3 batches" in plan.text()
    assert "estimated time on this machine" in plan.text()


def test_text_groups_many_batches_per_experiment():
    plan = _plan(max_batch_elements=10)  # every network its own batch
    assert len(plan.batches) == 12 <= TEXT_BATCH_LINES  # still one line per batch
    many = TINY.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3, 4, 5, 6, 7]")
    plan = _plan(many, max_batch_elements=10)
    assert len(plan.batches) == 48 > TEXT_BATCH_LINES
    body = [line for line in plan.text().splitlines() if line.split()[0].startswith("x")]
    assert len(body) == 1 and body[0].split()[0] == "x48"  # one experiment, one line


def test_as_dict_is_json_and_complete():
    plan = _plan(workers=2)
    data = json.loads(json.dumps(plan.as_dict()))
    assert data["total_runs"] == 12 and data["to_train"] == 12 and data["workers"] == 2
    assert len(data["batches"]) == 3
    assert data["peak_memory_bytes"] == max(b["memory_bytes"] for b in data["batches"])
    assert set(data["batches"][0]) >= {
        "experiments",
        "runs",
        "width",
        "n",
        "d",
        "steps",
        "dtype",
        "device",
        "family",
        "memory_bytes",
        "seconds",
    }
    assert data["seconds"] == pytest.approx(plan.seconds)


def test_plan_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _plan()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_calibration_measures_this_machine_and_restores_threads():
    import math

    import torch

    threads = torch.get_num_threads()
    plan = plan_sweep(TINY, workers=2)  # also the single-thread constants
    assert torch.get_num_threads() == threads
    assert plan.seconds is not None and math.isfinite(plan.seconds) and plan.seconds > 0
    assert all(b.worker_seconds is not None and b.worker_seconds > 0 for b in plan.batches)
    assert plan.calibration_seconds > 0
