"""Activity attribution against exact per-request truth: the scripted engine's power is a known function of its own
schedule, the NVML emulator measures it with a 100 ms counter and 25 ms power windows, and time-share,
token-weighted and activity split the same Meter curve of the same run (tests/emulators/activity_harness.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import fastmeter
from tests.emulators.activity_harness import Pattern, measure
from tests.emulators.activity_server import ActivityEngine, PowerModel
from tests.emulators.nvml import FakeNvml, FileSteps, GpuSpec

PATTERNS = [
    # mixed short and long prompts, closed loop
    (Pattern("mixed-c8", n_requests=40, concurrency=8), True),
    # bursts of simultaneous arrivals
    (Pattern("bursts", n_requests=48, burst=16, burst_gap_s=1.2), True),
    # wide batches: 64 in flight
    (Pattern("c64", n_requests=192, concurrency=64, output_tokens=(8, 40)), True),
    # one at a time: time-share is right too (one request holds each interval), so only the target is checked
    (Pattern("c1", n_requests=10, concurrency=1, output_tokens=(4, 16)), False),
]


@pytest.mark.parametrize(("pattern", "peers_miss"), PATTERNS, ids=[p.name for p, _ in PATTERNS])
def test_activity_meets_the_targets_where_peers_do_not(
    fake_nvml: FakeNvml, tmp_path: Path, pattern: Pattern, peers_miss: bool
) -> None:
    scores, engine = measure(fake_nvml, tmp_path, pattern)
    assert engine.late_lines == 0, "the host was too slow to write the power schedule ahead: truth is not exact"
    assert scores.fit_used, scores.fit["rejected"]
    # The 5 % target is judged in benchmarks/bench_activity.py (median over rounds); one run here must be within 10 %:
    # with 64 in flight the decode and per-sequence costs move nearly together and trade off from run to run.
    assert scores.per_request["activity"] <= 0.10, scores.per_request
    assert scores.split["activity"] <= 0.10, scores.split
    # Shaping moves energy inside sensor intervals, never across them: the run's energy is all accounted for.
    a = scores.activity
    assert a.energy_j.sum() + a.idle_j == pytest.approx(a.total_j, rel=1e-9)
    np.testing.assert_allclose(a.prefill_energy_j + a.decode_energy_j, a.energy_j)
    if peers_miss:
        for peer in ("time-share", "token-weighted"):
            assert scores.per_request[peer] > 2 * scores.per_request["activity"], scores.per_request
            assert scores.split[peer] > 2 * scores.split["activity"], scores.split
    # The fit found the engine's own costs: each true coefficient inside (or within 20 % of) its interval.
    c = scores.fit["coefficients"]
    m = engine.model
    for name, true in (("idle_w", m.idle_w), ("prefill_j_per_token", m.prefill_j_per_token)):
        lo, hi = c[name]["ci95"]
        assert 0.8 * lo <= true <= 1.2 * hi, (name, c[name])


def test_a_run_too_short_to_fit_falls_back_to_time_share_and_says_why(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    scores, _ = measure(fake_nvml, tmp_path, Pattern("short", n_requests=2, concurrency=2, output_tokens=(4, 6)))
    assert not scores.fit_used
    assert scores.fit["rejected"]["code"] == "activity_fit_too_few_intervals"
    assert scores.fit["rejected"]["verdict"] == "degraded"
    assert scores.per_request["activity"] == scores.per_request["time-share"]


def test_the_power_file_is_what_the_emulator_measures(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    """The counter the emulator reports follows the engine's appended steps exactly (the waveform's own integral)."""
    engine = ActivityEngine(tmp_path / "power.txt")
    (spec,) = fake_nvml.configure([GpuSpec(waveform=FileSteps(engine.power_file, engine.t0_ns))], t0_ns=engine.t0_ns)
    engine.start()
    try:
        with fastmeter.Meter(sources="nvml", period_us=1000) as meter:
            engine.submit("a", 1500, 20)
            t0 = meter.now_ns()
            time.sleep(0.6)
            t1 = meter.now_ns()
            measured = meter.energy_between(t0, t1)["gpu0"]
    finally:
        engine.stop()
    assert engine.late_lines == 0
    assert measured == pytest.approx(engine.energy_j(t0, t1), abs=0.01)
    assert spec.energy_j(t0, t1) == pytest.approx(engine.energy_j(t0, t1), rel=1e-9)


def test_energy_is_conserved_when_the_fit_finds_no_idle_power(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    """A GPU that draws nothing when idle: the fit puts idle_w at 0, so a request waiting in the queue (in flight,
    no activity of its own) holds no model weight, and its interval must still be split, not dropped."""
    pattern = Pattern("no-idle", n_requests=12, concurrency=2, output_tokens=(6, 16))
    scores, engine = measure(fake_nvml, tmp_path, pattern, model=PowerModel(idle_w=0.0, noise_w=0.0))
    assert engine.late_lines == 0
    assert scores.fit_used and scores.fit["coefficients"]["idle_w"]["value"] < 1.0
    a = scores.activity
    assert a.energy_j.sum() + a.idle_j == pytest.approx(a.total_j, rel=1e-9)
    # Without idle power to dilute it, where the client-side events misplace a long prefill shows (see
    # docs/attribution.md, "Where it breaks"); still far closer than time-share.
    assert scores.per_request["activity"] < 0.5 * scores.per_request["time-share"], scores.per_request
