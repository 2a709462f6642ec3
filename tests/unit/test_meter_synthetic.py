"""The Meter end to end on the synthetic source, against the waveform's exact integral."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

import fastmeter
from fastmeter.reference.synthetic import SyntheticWave


def busy_until(t_ns: int) -> None:
    while time.monotonic_ns() < t_ns:
        pass


def make_meter(wave: SyntheticWave, period_us: int = 1000) -> tuple[fastmeter.Meter, int]:
    t0_ns = time.monotonic_ns()
    return fastmeter.Meter("synthetic", period_us, source_options={"synthetic": wave.options(t0_ns)}), t0_ns


def edge_gap_s(m: fastmeter.Meter, t_ns: int) -> float:
    """Length of the poll interval holding t_ns: inside it the curve is interpolated, so a busy machine that
    delays the sampler widens what a window edge can know."""
    t = m.samples().column("t_ns").to_numpy()
    i = int(np.searchsorted(t, t_ns))
    return float(t[min(i, len(t) - 1)] - t[max(i - 1, 0)]) * 1e-9


@pytest.mark.parametrize("window_ms", [1, 10, 100, 1000])
@pytest.mark.parametrize("waveform", ["sine", "square"])
def test_window_energy_matches_analytic_truth(window_ms: int, waveform: str) -> None:
    wave = SyntheticWave(base_w=120, amp_w=80, period_s=0.37, duty=0.3, waveform=waveform)
    m, t0 = make_meter(wave)
    with m:
        time.sleep(0.02)
        with m.window("w") as w:
            busy_until(time.monotonic_ns() + window_ms * 1_000_000)
        truth = wave.energy_between_j(t0, w.t0_ns, w.t1_ns)
        got = w.energy_j
    # Between polls the sine is smooth (error second order in the gap); a square edge can sit anywhere in it.
    swing_w = 80 if waveform == "square" else 80 * 2 * math.pi * edge_gap_s(m, w.t1_ns) / 0.37
    tol = (edge_gap_s(m, w.t0_ns) + edge_gap_s(m, w.t1_ns)) * swing_w + 1e-3 * truth
    assert got == pytest.approx(truth, abs=tol)
    assert w.duration_s == (w.t1_ns - w.t0_ns) * 1e-9 >= window_ms / 1000
    assert w.avg_power_w == pytest.approx(got / w.duration_s)
    assert not w.provisional


def test_totals_and_energy_between_cover_the_run() -> None:
    wave = SyntheticWave(base_w=50, amp_w=10, period_s=0.1, channels=3)
    m, t0 = make_meter(wave)
    with m:
        a = m.now_ns()
        time.sleep(0.3)
        b = m.now_ns()
        between = m.energy_between(a, b)
    totals = m.totals()
    assert list(between) == ["synthetic0", "synthetic1", "synthetic2"]
    for k in range(3):
        truth = wave.energy_between_j(t0, a, b, channel=k)
        assert between[f"synthetic{k}"] == pytest.approx(truth, rel=0.005)
        # totals run from the first poll to the last one (the stop instant).
        assert totals[f"synthetic{k}"] == pytest.approx(
            wave.energy_between_j(t0, m.start_ns, m._core.stop_ns, channel=k), rel=0.005
        )


def test_a_final_span_does_not_change_as_more_polls_arrive() -> None:
    """What a running meter calls final is what the same span gives once every poll is in (after stop), to the
    last bit: later polls may not move a final value."""
    wave = SyntheticWave(base_w=50, amp_w=10, period_s=0.05, channels=4)
    m, _ = make_meter(wave, period_us=100)
    live = []
    with m:
        time.sleep(0.2)
        for _ in range(30):
            t1 = m.now_ns() - 5_000_000
            r = m.span(t1 - 20_000_000, t1)
            live.append((r.t0_ns, r.t1_ns, r))
            time.sleep(0.003)
    final = [(t0, t1, r) for t0, t1, r in live if not r.provisional]
    assert len(final) >= 10  # most are; a busy machine may leave a few provisional
    for t0, t1, r in final:
        again = m.span(t0, t1)
        assert not again.provisional
        assert again.energy_j == r.energy_j  # the bound is not part of it: it uses running update statistics


def test_samples_table_schema_and_content() -> None:
    wave = SyntheticWave(base_w=100, amp_w=0, channels=2)
    m, _ = make_meter(wave, period_us=2000)
    with m:
        time.sleep(0.1)
    table = m.samples()
    assert table.schema == fastmeter.SAMPLES_SCHEMA
    assert table.num_rows == m.sample_count() == 2 * m.stats()["polls"]
    t = table.column("t_ns").to_numpy()
    assert (t[1:] >= t[:-1]).all()
    chans = table.column("channel").combine_chunks()
    assert chans.dictionary.to_pylist() == ["synthetic0", "synthetic1"]
    p = table.column("power_w").to_numpy()
    assert p[0::2] == pytest.approx(100.0) and p[1::2] == pytest.approx(200.0)
    e1 = table.column("energy_j").to_numpy()[1::2]
    assert e1[-1] == pytest.approx(200.0 * (t[-1] - t[1]) * 1e-9, rel=1e-3)
    assert m.samples(2, 4).num_rows == 2


def test_windows_nest_and_overlap_across_threads_and_asyncio() -> None:
    wave = SyntheticWave(base_w=100, amp_w=0)  # constant 100 W: energy = 100 x duration
    m, _ = make_meter(wave)
    results: list[fastmeter.Window] = []

    def worker() -> None:
        with m.window("thread") as w:
            time.sleep(0.05)
        results.append(w)

    async def task() -> fastmeter.Window:
        async with m.window("async") as w:
            await asyncio.sleep(0.05)
        return w

    with m:
        with m.window("outer") as outer:
            threads = [threading.Thread(target=worker) for _ in range(3)]
            for th in threads:
                th.start()
            with m.window("inner") as inner:
                results.append(asyncio.run(task()))
            for th in threads:
                th.join()
        for w in [outer, inner, *results]:
            assert w.energy_j == pytest.approx(100.0 * w.duration_s, rel=0.01, abs=2e-3)
        assert inner.energy_j < outer.energy_j


def test_stats_report_rate_and_quality() -> None:
    m, _ = make_meter(SyntheticWave(), period_us=1000)
    with m:
        time.sleep(0.3)
    s = m.stats()
    assert 500 < s["rate_hz"] < 1100
    assert s["dropped"] == 0
    assert s["jitter_p50_us"] <= s["jitter_p99_us"] <= max(s["jitter_max_us"], s["jitter_p99_us"])
    assert s["errors"] == {}
    assert s["update_period_s"]["synthetic0"] == pytest.approx(0.001, rel=0.3)
    mono, real = m.realtime_anchor
    assert abs((real - time.time_ns()) - (mono - time.monotonic_ns())) < 50_000_000


def test_small_ring_counts_drops_instead_of_blocking() -> None:
    # 64 channels at 20 kHz into a 1024-slot ring, drained every 10 ms: the producer must drop, never stall.
    m = fastmeter.Meter("synthetic", 50, source_options={"synthetic": {"channels": "64"}}, ring_capacity=1024)
    with m:
        time.sleep(0.3)
    s = m.stats()
    assert s["dropped"] > 0
    assert m.sample_count() + s["dropped"] == 64 * s["polls"]


def test_window_left_open_at_stop_is_truncated_not_lost() -> None:
    m, _ = make_meter(SyntheticWave(base_w=100, amp_w=0))
    m.start()
    w = m.window("late").__enter__()
    time.sleep(0.05)
    m.stop()
    w.__exit__(None, None, None)
    assert w.truncated
    assert w.energy_j == pytest.approx(100.0 * w.duration_s, rel=0.01)


def test_stop_returns_at_once_even_with_a_long_period() -> None:
    m = fastmeter.Meter("synthetic", 5_000_000)  # 5 s
    m.start()
    t = time.monotonic()
    m.stop()
    assert time.monotonic() - t < 1.0


def test_samples_arrow_roundtrip_through_ipc(tmp_path) -> None:
    m, _ = make_meter(SyntheticWave())
    with m:
        time.sleep(0.05)
    table = m.samples()
    path = tmp_path / "s.arrow"
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as writer:
        writer.write_table(table)
    with pa.OSFile(str(path)) as f:
        assert pa.ipc.open_file(f).read_all().equals(table)
