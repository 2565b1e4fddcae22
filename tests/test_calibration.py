"""The calibration behind the dry-run estimate (``experiments._calibrate``,
``experiments._calibrate_workers``): the marginal step time stands out of a noisy set-up, the
workers' constants fall back with a warning, and a local cluster gets no more workers than
cores. Times come from a fake clock or injected constants; nothing here is timed."""

from __future__ import annotations

import math
import os

import pytest

from ntkdyn.experiments import _calibrate, _calibrate_workers, _cost
from ntkdyn.experiments.estimate import Calibration, MachineConstants, plan_sweep
from tests.sweep_cases import TINY

#: A float32 n = 600 class as measured: 0.4 s of set-up that varies by +-0.1 s from call to
#: call, and 20 ms steps.
SETUP, JITTER, STEP = 0.4, 0.1, 0.02
#: The estimate must come within this of the true step. The long call steps for at least
#: 0.9 x twice the short call (>= 0.34 s), so two jitters of 0.1 s move the step by at most
#: 0.2 / 0.61 = 0.33; over the few steps of the first guess they move it by several times
#: the step.
STEP_RTOL = 0.33


class _FakeClock:
    """``perf_counter`` of a machine on which a call of ``s`` steps takes
    ``SETUP + jitter + (s + 1) * STEP``, the jitter a fixed irregular sequence in
    ``[-JITTER, JITTER]``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0

    def perf_counter(self) -> float:
        return self.now

    def call_of(self, steps: int):
        def call() -> None:
            self.calls += 1
            jitter = JITTER * math.cos(2.4 * self.calls)
            self.now += SETUP + jitter + (steps + 1) * STEP

        return call


@pytest.fixture
def clock(monkeypatch):
    fake = _FakeClock()
    monkeypatch.setattr(_calibrate.time, "perf_counter", fake.perf_counter)
    return fake


def test_marginal_step_stands_out_of_a_noisy_set_up(clock):
    short, step = _calibrate._marginal_step(clock.call_of, "cpu", 2)
    assert step == pytest.approx(STEP, rel=STEP_RTOL)
    assert short == pytest.approx(SETUP - JITTER + 2 * STEP, rel=STEP_RTOL)


def test_one_guessed_long_call_misses_the_step(clock):
    # must fail: the single long call of the first guess (the calibration as it was) comes out
    # outside the tolerance on the same machine
    short = _calibrate._timed(clock.call_of(_calibrate._SHORT), "cpu", 2)
    steps = _calibrate._steps_for(short)
    long = _calibrate._timed(clock.call_of(steps), "cpu", 2)
    step = max(long - short, 0.0) / (steps - _calibrate._SHORT)
    assert step != pytest.approx(STEP, rel=STEP_RTOL)


def _on_workers(plan) -> float:
    return plan.parallel_seconds - plan.setup_seconds  # the set-up is measured each time


ONES = Calibration.fixed(MachineConstants(step_overhead=1e-3, seconds_per_flop=1e-9))


def test_a_local_cluster_gets_at_most_one_busy_worker_per_core():
    cores = os.cpu_count() or 1
    many = plan_sweep(TINY, calibrate=ONES, workers=cores + 8, max_batch_elements=10)
    one_per_core = plan_sweep(TINY, calibrate=ONES, workers=cores, max_batch_elements=10)
    assert many.worker_slots == cores
    assert _on_workers(many) == pytest.approx(_on_workers(one_per_core), rel=1e-12)
    assert "at a time, one per core" in many.text()
    assert many.every_core_busy and "at least" in many.text()
    # a scheduler's workers each have a core: more of them finish sooner
    remote = plan_sweep(
        TINY, calibrate=ONES, workers=cores + 8, workers_here=False, max_batch_elements=10
    )
    assert remote.worker_slots == cores + 8
    assert not remote.every_core_busy and "at least" not in remote.text()
    assert _on_workers(remote) < _on_workers(many)


def test_workers_calibration_falls_back_with_a_warning(monkeypatch):
    def broken(jobs, copies):
        raise RuntimeError("a calibrating process died")

    measured = Calibration.fixed(ONES.default)
    monkeypatch.setattr(_calibrate_workers, "_measure_concurrently", broken)
    monkeypatch.setattr(_calibrate_workers, "_CACHE", {})
    monkeypatch.setattr(
        _calibrate_workers,
        "calibrate_classes",
        lambda group, cache: Calibration({cls: measured.default for cls, _ in group}),
    )
    cls = _cost.StepClass("cpu", "float64", 1, "theory", "half-sum", 10, 5, "gd", False)
    cls2 = _cost.StepClass("cpu", "float64", 1, "theory", "half-sum", 10, 5, "gd", False, None, 2)
    with pytest.warns(RuntimeWarning, match="optimistic"):
        got = _calibrate_workers.calibrate_workers([(cls2, [[]])], None)
    assert got.constants(cls2) == measured.default
    with pytest.raises(KeyError):
        got.constants(cls)


@pytest.mark.slow
def test_ctrl_c_during_the_workers_calibration_leaves_no_process():
    import _thread
    import multiprocessing
    import threading
    import time

    from ntkdyn.experiments import DataCache, expand_runs, load_config, plan_batches

    cache = DataCache()
    batches = plan_batches(expand_runs(load_config(TINY), cache=cache), cache)
    classes = {}
    for batch in batches:
        cls = _cost.step_class(batch[0], cache, "cpu", 1, 2)
        classes.setdefault(cls, []).append(batch)
    jobs = _calibrate_workers._jobs(classes.items())

    def interrupt_once_started() -> None:
        deadline = time.monotonic() + 120
        while len(multiprocessing.active_children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # inside a measurement
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        _calibrate_workers._measure_concurrently(jobs, 2)
    assert multiprocessing.active_children() == []
