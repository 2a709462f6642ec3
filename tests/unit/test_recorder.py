"""The shared Recorder on the synthetic source: flush cadence that follows the sample rate, samples on disk while
recording, record streams written at the same cadence, the idle baseline, and the refuse-or-force rule."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import fastmeter
from fastmeter.errors import ConfigError
from fastmeter.io import read_trace
from fastmeter.io.stream import read_stream_batches
from fastmeter.recorder import (
    FLUSH_MAX_INTERVAL_S,
    FLUSH_MAX_SAMPLES,
    FLUSH_MIN_INTERVAL_S,
    Recorder,
    exit_code_for_signal,
    flush_interval_s,
)


def rows_on_disk(path: Path) -> int:
    try:
        schema, batches = read_stream_batches(path)
    except (FileNotFoundError, pa.ArrowInvalid):
        return 0
    return sum(b.num_rows for b in batches)


def wait_for(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize(("channels", "period_us"), [(1, 1000), (8, 1000), (16, 100), (64, 50), (1000, 50)])
def test_flush_cadence_follows_the_sample_rate(channels: int, period_us: int) -> None:
    interval = flush_interval_s(channels, period_us)
    samples_per_flush = interval * channels * 1e6 / period_us
    assert FLUSH_MIN_INTERVAL_S <= interval <= FLUSH_MAX_INTERVAL_S
    # Never more than FLUSH_MAX_SAMPLES between drains, unless that would mean flushing faster than the floor.
    assert samples_per_flush <= FLUSH_MAX_SAMPLES * (1 + 1e-12) or interval == FLUSH_MIN_INTERVAL_S


def test_samples_reach_disk_while_recording_and_the_final_file_has_them_all(tmp_path: Path) -> None:
    out = tmp_path / "t.arrow"
    flushes: list[int] = []
    m = fastmeter.Meter("synthetic", 500)
    rec = Recorder(m, out, {"command": []}, on_flush=flushes.append).start()
    wait_for(lambda: rows_on_disk(out) > 0, "nothing was flushed")
    assert m.running and not read_trace(out).complete  # readable mid-run
    path = rec.close({"exit_code": None})
    t = read_trace(path)
    assert t.complete and t.table.num_rows == m.sample_count() == rec.rows
    assert flushes == sorted(flushes) and flushes[-1] == rec.rows
    meta = t.metadata
    assert meta["sampler_stats"]["polls"] > 0 and meta["command"] == []
    assert meta["recorder"]["flushes"] == len(flushes) and meta["recorder"]["peak_rss_mib"] > 0
    assert meta["realtime_anchor"]["realtime_ns"] > meta["realtime_anchor"]["monotonic_ns"]
    assert [p.name for p in tmp_path.iterdir()] == ["t.arrow"]


def test_record_streams_are_written_at_the_same_cadence(tmp_path: Path) -> None:
    m = fastmeter.Meter("synthetic", 1000)
    rec = Recorder(m, tmp_path / "samples.arrow", {}).start()
    stream = rec.add_stream(tmp_path / "rows.arrow", pa.schema([("i", pa.int64())]))
    writers = [
        threading.Thread(target=lambda k=k: [stream.append(pa.table({"i": [k * 100 + j]})) for j in range(100)])
        for k in range(4)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    wait_for(lambda: rows_on_disk(tmp_path / "rows.arrow") == 400, "rows did not reach disk")
    rec.close({})
    stream.flush()
    done = stream.finish({"kind": "test"})
    with pa.OSFile(str(done)) as f:
        rows = pa.ipc.open_file(f).read_all()
    assert sorted(rows.column("i").to_pylist()) == list(range(400))


def test_idle_baseline_is_the_average_power_of_the_idle_window(tmp_path: Path) -> None:
    m = fastmeter.Meter("synthetic", 1000)
    rec = Recorder(m, tmp_path / "t.arrow", {}).start()
    idle = rec.measure_idle(0.2)
    rec.close({})
    t = read_trace(tmp_path / "t.arrow")
    assert set(idle) == set(t.channels)
    assert 50 <= idle["synthetic0"] <= 150  # the synthetic wave swings between 50 W and 150 W
    stopped = Recorder(fastmeter.Meter("synthetic", 1000), tmp_path / "u.arrow", {}).start()
    t0 = time.monotonic()
    assert stopped.measure_idle(60, lambda: time.monotonic() - t0 > 0.1)  # cut short, still a baseline
    stopped.close({})


def test_an_existing_output_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "t.arrow"
    out.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists.*--force"):
        Recorder(fastmeter.Meter("synthetic", 1000), out, {})
    assert out.read_bytes() == b"precious"
    rec = Recorder(fastmeter.Meter("synthetic", 1000), out, {}, force=True).start()
    rec.close({})
    assert read_trace(out).complete


def test_signal_exit_codes_follow_the_shell() -> None:
    import signal

    assert exit_code_for_signal(signal.SIGINT) == 130 and exit_code_for_signal(signal.SIGTERM) == 143


@pytest.mark.parametrize("rotate_s", [None, 0.05])
def test_samples_read_back_from_disk_equal_the_meters(tmp_path: Path, rotate_s: float | None) -> None:
    """What a meter with a bounded RAM window no longer holds, the recorder reads back from its own file(s)."""
    m = fastmeter.Meter("synthetic", 200)
    rec = Recorder(m, tmp_path / "t.arrow", {}, rotate_s=rotate_s).start()
    wait_for(lambda: rec.rows > 3000, "not enough samples flushed")
    with rec._lock:  # the flush thread writes under this lock; read while it is idle
        written = rec._written
        rng = np.random.default_rng(7)
        for start, stop in [(0, written), (0, 1), (written - 1, written), *rng.integers(0, written, (20, 2))]:
            a, b = sorted((int(start), int(stop)))
            assert rec._read_back(a, b).equals(m.samples(a, b))
    rec.close({})
    if rotate_s is not None:
        assert len(list(tmp_path.glob("t.*.arrow"))) >= 2


def test_a_followed_list_reaches_disk_as_it_grows(tmp_path: Path) -> None:
    """bench follows the Prometheus scraper's row list this way: what was scraped survives a SIGKILL."""
    rec = Recorder(fastmeter.Meter("synthetic", 1000), tmp_path / "samples.arrow", {})
    rows: list[int] = []
    stream = rec.add_stream(tmp_path / "rows.arrow", pa.schema([("i", pa.int64())]))
    stream.follow(rows, lambda new: pa.table({"i": pa.array(list(new), pa.int64())}))
    rec.start()
    grower = threading.Thread(target=lambda: [rows.append(i) or time.sleep(0.0005) for i in range(500)])
    grower.start()
    grower.join()
    wait_for(lambda: rows_on_disk(tmp_path / "rows.arrow") == 500, "the followed rows did not reach disk")
    rec.close({})
    schema, batches = read_stream_batches(tmp_path / "rows.arrow")
    assert [x for b in batches for x in b.column("i").to_pylist()] == list(range(500))  # each row once, in order
