"""Bounded memory on a running Meter: the raw-sample window, knot decimation, and the memory/query statistics."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

import fastmeter
from fastmeter.errors import ConfigError, SpanError
from fastmeter.reference.synthetic import SyntheticWave
from tests.emulators.nvml import FakeNvml, GpuSpec, Square

RECORD_CHUNK = 8192  # SampleRecord::kChunk: samples leave RAM a chunk at a time
KNOT_CHUNK = 4096  # KnotStore::kChunk: knots are decimated a chunk at a time
POINT_CHUNK = 4096  # ChangePointStore::kChunk: the error bound's change points are thinned a chunk at a time


def run_until_polls(m: fastmeter.Meter, polls: int) -> None:
    """Waits for a number of polls (not a time: a loaded machine polls late, the test must not depend on it)."""
    while m.stats()["polls"] < polls:
        time.sleep(0.05)


def test_raw_sample_window_stays_bounded_by_count() -> None:
    channels, period_us, keep_s = 8, 100, 0.05
    m = fastmeter.Meter(
        "synthetic", period_us, source_options={"synthetic": {"channels": str(channels)}}, keep_samples_s=keep_s
    )
    cap = (math.ceil(keep_s * 1e6 / period_us) + 2) * channels  # the count bound the nominal rate gives
    with m:
        run_until_polls(m, 20 * cap // channels)  # twenty windows' worth
        n = m.sample_count()
        s = m.stats()
        assert s["samples_kept"] + s["samples_dropped_from_ram"] >= n
        assert s["samples_dropped_from_ram"] > 10 * cap
        assert s["samples_kept"] < cap + RECORD_CHUNK
        first = s["samples_dropped_from_ram"]
        kept = m.samples(first, n)
        # Absolute sequence numbers: the kept samples are the newest ones, in poll order, every channel each poll.
        assert kept.num_rows == n - first
        t = kept.column("t_ns").to_numpy()
        assert (np.diff(t) >= 0).all()
        assert t[-1] - t[0] <= (cap + RECORD_CHUNK) // channels * period_us * 1000 * 4
        with pytest.raises(SpanError, match=r"keep_samples_s=0\.05 s.*fastmeter trace"):
            m.samples(0, first)
    # Knots and the error bound's change points (the synthetic counter changes at every poll) are thinned beyond
    # the window: far fewer than one per poll per channel; at most the window's, two chunks' and one per 10 ms.
    s = m.stats()
    assert s["knots"] < channels * (s["elapsed_s"] / 0.01 + keep_s * 1e6 / period_us + 2 * KNOT_CHUNK + 2)
    assert s["knots"] < s["polls"] * channels / 2
    assert s["change_points"] < channels * (s["elapsed_s"] / 0.01 + keep_s * 1e6 / period_us + 2 * POINT_CHUNK + 2)
    assert s["change_points"] < s["polls"] * channels / 2


def test_keep_none_still_answers_energy_queries() -> None:
    wave = SyntheticWave(base_w=100, amp_w=0)
    t0 = time.monotonic_ns()
    m = fastmeter.Meter("synthetic", 1000, source_options={"synthetic": wave.options(t0)}, keep_samples_s=0)
    with m:
        a = m.now_ns()
        time.sleep(0.05)
        b = m.now_ns()
        e = m.energy_between(a, b)["synthetic0"]
        n = m.sample_count()
        assert n > 0 and m.stats()["samples_kept"] == 0
        assert m.samples(n, n).num_rows == 0
        with pytest.raises(SpanError, match="keep_samples_s=0 s"):
            m.samples(n - 1, n)
    assert e == pytest.approx(wave.energy_between_j(t0, a, b), rel=0.01)


def test_fast_counter_queries_move_within_the_stated_bound_after_decimation() -> None:
    # The synthetic source: a µJ counter that changes at every poll (like RAPL), a sine between 40 and 200 W polled
    # at 10 kHz, its knots thinned to 20 ms once older than 0.1 s.
    wave = SyntheticWave(base_w=120, amp_w=80, period_s=0.05)
    t0 = time.monotonic_ns()
    period_us, keep_s, res_us = 100, 0.1, 20_000
    m = fastmeter.Meter(
        "synthetic",
        period_us,
        source_options={"synthetic": wave.options(t0)},
        keep_samples_s=keep_s,
        knot_resolution_us=res_us,
    )
    with m:
        run_until_polls(m, 1000)
        grid = np.linspace(m.start_ns + 2_000_000, m.now_ns() - 30_000_000, 400).astype(np.int64)
        before = m.cumulative_at(grid)["synthetic0"]
        spans = [(int(grid[i]), int(grid[i + 37])) for i in range(0, 300, 50)]
        between_before = [m.energy_between(a, b)["synthetic0"] for a, b in spans]
        t = m.samples(0, m.sample_count()).column("t_ns").to_numpy()
        max_gap_ns = int(np.diff(t).max())
        # Decimation needs the grid older than the window and its knot chunk closed behind it.
        run_until_polls(m, m.stats()["polls"] + 3 * KNOT_CHUNK + int(keep_s * 1e6 / period_us))
        after = m.cumulative_at(grid)["synthetic0"]
        results_after = [m.span(a, b) for a, b in spans]
        between_after = [r.energy_j["synthetic0"] for r in results_after]
        s = m.stats()
        assert s["knots"] < s["polls"] / 2  # it did thin the knots out
        assert s["change_points"] < s["polls"] / 2  # and the error bound's change points
    # Stated bound: a kept interval spans at most the resolution (or one poll gap), and inside it both curves run
    # monotonically between the same exact knots: they differ by at most its energy.
    bound_j = (wave.base_w + wave.amp_w) * max(res_us * 1000, max_gap_ns) * 1e-9
    assert np.all(np.abs(after - before) <= bound_j)
    assert np.any(after != before)  # not vacuous: the curve did change inside merged intervals
    for x, y in zip(between_before, between_after):
        assert abs(x - y) <= 2 * bound_j
    # The error bounds over the thinned past are wider, never wrong: the truth stays within them.
    for (a, b), r in zip(spans, results_after):
        assert math.isfinite(r.bound_j["synthetic0"])
        assert abs(r.energy_j["synthetic0"] - wave.energy_between_j(t0, a, b)) <= r.bound_j["synthetic0"]


def test_counter_queries_are_bit_identical_after_their_samples_leave_ram(fake_nvml: FakeNvml) -> None:
    # A 100 ms GPU counter with 25 ms power windows: its knots are few and never thinned at 10 ms resolution, so
    # dropping the raw samples beneath a span must not change any answer about it, to the last bit.
    gpus = 8  # so a record chunk (8192 samples) fills in ~1000 polls
    fake_nvml.configure(
        [
            GpuSpec(
                waveform=Square(100.0, 400.0, 0.17, 0.3),
                counter_refresh_ms=100,
                power_refresh_ms=100,
                power_window_ms=25,
            )
        ]
        * gpus
    )
    keep_s = 0.2
    with fastmeter.Meter("nvml", 1000, keep_samples_s=keep_s, wait_final_s=0.5) as m:
        run_until_polls(m, 800)
        grid = np.linspace(m.start_ns + 150_000_000, m.now_ns() - 300_000_000, 300).astype(np.int64)
        before = m.cumulative_at(grid)
        spans = [(int(grid[i]), int(grid[i + 60])) for i in range(0, 240, 40)]
        between_before = [m.energy_between(a, b) for a, b in spans]
        in_ram_before = m.stats()["samples_dropped_from_ram"]
        run_until_polls(m, m.stats()["polls"] + 2 * int(keep_s * 1000) + RECORD_CHUNK // gpus)
        first_kept_t = int(m.samples(m.stats()["samples_dropped_from_ram"], m.sample_count())["t_ns"][0].as_py())
        assert first_kept_t > grid[-1] and m.stats()["samples_dropped_from_ram"] > in_ram_before
        after = m.cumulative_at(grid)
        between_after = [m.energy_between(a, b) for a, b in spans]
    for name in before:
        assert np.isfinite(before[name]).all()
        np.testing.assert_array_equal(after[name], before[name])
    assert between_after == between_before


def test_stats_report_memory_and_query_latency(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = fastmeter.Meter("synthetic", 1000)
    with m:
        assert math.isnan(m.stats()["query_p50_us"])
        t = m.now_ns()
        time.sleep(0.02)
        for _ in range(20):
            m.energy_between(t, m.now_ns() - 2_000_000)
    # stopped: cumulative_at answers from the record (a running meter would first wait for a poll past t)
    m.cumulative_at(np.array([t], dtype=np.int64))
    s = m.stats()
    assert s["queries"] == 21
    assert 0 < s["query_p50_us"] <= s["query_p99_us"]
    assert s["rss_bytes"] > 0
    # RSS comes from procfs: resident pages (statm's second field) times the page size; unreadable is NaN.
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "statm").write_text("5000 1234 300 10 0 900 0\n")
    monkeypatch.setenv("FASTMETER_PROCFS_ROOT", str(tmp_path))
    assert m.stats()["rss_bytes"] == 1234 * os.sysconf("SC_PAGE_SIZE")
    (tmp_path / "self" / "statm").write_text("garbage\n")
    assert math.isnan(m.stats()["rss_bytes"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep_samples_s": -1}, "keep_samples_s"),
        ({"keep_samples_s": float("inf")}, "keep_samples_s"),
        ({"keep_samples_s": "60"}, "keep_samples_s"),
        ({"knot_resolution_us": -5}, "knot_resolution_us"),
        ({"knot_resolution_us": 1.5}, "knot_resolution_us"),
    ],
)
def test_bad_memory_settings_are_one_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fastmeter.Meter("synthetic", 1000, **kwargs)


def test_history_goes_to_an_unlinked_file_and_recent_stores_stay_flat(tmp_path) -> None:
    # Sixteen fast counters at 10 kHz, a 0.2 s window, and history kept at every poll: within seconds nearly
    # everything is history, and full history blocks (4096 points) go to the file.
    channels, period_us, keep_s = 16, 100, 0.2
    m = fastmeter.Meter(
        "synthetic",
        period_us,
        source_options={"synthetic": {"channels": str(channels)}},
        keep_samples_s=keep_s,
        knot_resolution_us=period_us,
        history_dir=tmp_path,
    )
    with m:
        run_until_polls(m, 10 * int(keep_s * 1e6 / period_us))
        first = m.stats()
        run_until_polls(m, first["polls"] + 40 * int(keep_s * 1e6 / period_us))
        last = m.stats()
        t = m.now_ns()
        in_history = m.energy_between(t - 1_000_000_000, t - 500_000_000)  # read back from the file's pages
    assert len(in_history) == channels and all(0 < e < math.inf for e in in_history.values())
    assert list(tmp_path.iterdir()) == []  # the history file is never linked into the directory
    assert last["history_error"] == "" and last["history_ram_bytes"] == 0
    chunk_bytes = 4096 * 24
    assert last["history_disk_bytes"] >= 2 * channels * chunk_bytes  # a full block per channel, knots and points
    # In RAM: the window plus a few chunks per channel (the open history chunk among them), and ~300 bytes of index
    # per history block, however long the meter ran.
    blocks = last["history_disk_bytes"] / chunk_bytes
    for key in ("knots_bytes", "change_points_bytes"):
        assert last[key] <= channels * (keep_s * 1e6 / period_us * 25 + 5 * chunk_bytes) + 400 * blocks, key
    assert last["samples_bytes"] <= (channels * keep_s * 1e6 / period_us + 3 * RECORD_CHUNK) * 28


def test_history_directory_that_cannot_hold_the_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=r"history.*missing.*writable directory"):
        fastmeter.Meter("synthetic", 1000, history_dir=missing)
    # The default directory (here from the environment) failing costs memory, not the measurement: RAM, and why.
    monkeypatch.setenv("FASTMETER_HISTORY_DIR", str(missing))
    m = fastmeter.Meter("synthetic", 100, keep_samples_s=0.05, knot_resolution_us=100)
    with m:
        run_until_polls(m, 20_000)
    s = m.stats()
    assert str(missing) in s["history_error"]
    assert s["history_disk_bytes"] == 0 and s["history_ram_bytes"] > 0
