"""Streamed attribution from disk: a run directory's requests and chunks, and a trace's samples, read a slice at a
time, give what the in-memory attribution gives on the same data; results written batch by batch name their rows."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

import fastmeter
from fastmeter.adapters.base import RequestRecord
from fastmeter.attribution import attribute
from fastmeter.attribution_stream import CurveChunk, RequestBatch, StreamedAttribution, attribute_streamed
from fastmeter.bench.tables import chunks_table, read_arrow, requests_table, write_arrow
from fastmeter.errors import ConfigError
from fastmeter.io import read_trace
from fastmeter.io.attribution_files import RowNumbers, run_request_batches, trace_curve, write_attribution
from fastmeter.io.stream import TraceWriter, part_paths
from fastmeter.meter import SAMPLES_SCHEMA
from fastmeter.recorder import Recorder


def records(rng: np.random.Generator, n: int) -> list[RequestRecord]:
    """Requests in order of send, with a warm-up one and one that never reached the server among them."""
    out = []
    send = np.sort(rng.integers(0, 10**9, n))
    for i, s in enumerate(send):
        s = int(s)
        end = s + int(rng.integers(0, 3 * 10**8))
        chunks = sorted(int(x) for x in rng.integers(s, end + 1, int(rng.integers(0, 5))))
        r = RequestRecord(f"r{i}", send_ns=s, end_ns=end, chunk_t_ns=chunks, chunk_tokens=[1] * len(chunks))
        r.first_token_ns = chunks[0] if chunks else None
        r.warmup = i == 3
        if i == 5:
            r.send_ns = r.end_ns = r.first_token_ns = None
        out.append(r)
    return out


@pytest.mark.parametrize("method", ["time-share", "token-weighted"])
def test_a_run_directory_streams_to_the_in_memory_result(tmp_path, method):
    rng = np.random.default_rng(3)
    recs = records(rng, 40)
    write_arrow(requests_table(recs), tmp_path / "requests.arrow")
    write_arrow(chunks_table(recs), tmp_path / "chunks.arrow")
    t = np.arange(-(10**8), 2 * 10**9, 7_000_000)
    e = np.cumsum(rng.uniform(0, 2, len(t)))

    rows = RowNumbers()
    curve = (CurveChunk(t[a : a + 50], e[a : a + 50]) for a in range(0, len(t), 50))
    s = StreamedAttribution(
        curve, run_request_batches(tmp_path, rows=7, row_numbers=rows), method=method, update_period_s=0.01
    )
    assert write_attribution(s, tmp_path / "attribution.arrow", rows) == 38

    kept = [i for i, r in enumerate(recs) if not r.warmup and r.send_ns is not None]
    sub = [recs[i] for i in kept]
    off = np.concatenate([[0], np.cumsum([len(r.chunk_t_ns) for r in sub])])
    expected = attribute(
        t,
        e,
        [r.send_ns for r in sub],
        [r.end_ns for r in sub],
        [r.first_token_ns for r in sub],
        chunk_offsets=off,
        chunk_t_ns=[c for r in sub for c in r.chunk_t_ns],
        chunk_tokens=[k for r in sub for k in r.chunk_tokens],
        method=method,
        update_period_s=0.01,
    )
    written = read_arrow(tmp_path / "attribution.arrow")
    assert written.column("request").to_pylist() == kept
    for k in ("energy_j", "prefill_energy_j", "uncertainty_j", "attributed_s"):
        np.testing.assert_array_equal(written.column(k).to_numpy(), getattr(expected, k), err_msg=k)
    assert s.totals.idle_j == expected.idle_j


def test_requests_out_of_order_on_disk_are_refused(tmp_path):
    recs = records(np.random.default_rng(4), 10)[::-1]
    write_arrow(requests_table(recs), tmp_path / "requests.arrow")
    write_arrow(chunks_table(recs), tmp_path / "chunks.arrow")
    s = StreamedAttribution([CurveChunk([0, 10**10], [0.0, 1.0])], run_request_batches(tmp_path), update_period_s=0)
    with pytest.raises(ConfigError, match="order of start_ns"):
        list(s)


def test_a_trace_channel_streams_as_the_curve(tmp_path):
    names = pa.array(["a", "b"])
    path = tmp_path / "trace.arrow"
    w = TraceWriter(path, {"channels": [{"name": "a"}, {"name": "b"}]}, force=True)
    rng = np.random.default_rng(5)
    energy = {"a": np.cumsum(rng.uniform(0, 1, 3000)), "b": np.cumsum(rng.uniform(0, 5, 3000))}
    t = np.arange(3000, dtype=np.int64) * 1_000_000
    for lo in range(0, 3000, 500):  # several record batches
        tt = np.repeat(t[lo : lo + 500], 2)
        ch = pa.DictionaryArray.from_arrays(pa.array(np.tile([0, 1], 500).astype(np.int32)), names)
        e = np.ravel(np.column_stack([energy["a"][lo : lo + 500], energy["b"][lo : lo + 500]]))
        w.write(pa.Table.from_arrays([pa.array(tt), ch, pa.array(e), pa.array(e)], schema=SAMPLES_SCHEMA))
    w.close({"sampler_stats": {}})
    start = np.sort(rng.integers(0, 3 * 10**9, 200))
    end = start + rng.integers(0, 10**8, 200)

    streamed = attribute_streamed(trace_curve(path, "b"), [RequestBatch(start, end)], update_period_s=0.002)
    expected = attribute(t, energy["b"], start, end, update_period_s=0.002)
    np.testing.assert_array_equal(streamed.energy_j, expected.energy_j)
    np.testing.assert_array_equal(streamed.uncertainty_j, expected.uncertainty_j)
    with pytest.raises(ConfigError, match="name the one"):
        next(trace_curve(path))


def test_a_rotated_trace_streams_as_one_curve(tmp_path):
    """A trace recorded in numbered parts attributes exactly as the same samples read whole."""

    m = fastmeter.Meter("synthetic", 500)
    rec = Recorder(m, tmp_path / "t.arrow", {"channels": [{"name": c.name} for c in m.channels]}, rotate_s=0.05)
    rec.start()
    while len(part_paths(tmp_path / "t.arrow")) < 3:  # parts, not a time: a loaded machine rotates late
        time.sleep(0.02)
    rec.close({})
    whole = read_trace(tmp_path / "t.arrow").table
    t, e = whole.column("t_ns").to_numpy(), whole.column("energy_j").to_numpy()
    start = np.linspace(t[0] - 10**6, t[-1], 50).astype(np.int64)
    end = start + (t[-1] - t[0]) // 7
    streamed = attribute_streamed(trace_curve(tmp_path / "t.arrow"), [RequestBatch(start, end)], update_period_s=0.001)
    expected = attribute(t, e, start, end, update_period_s=0.001)
    np.testing.assert_array_equal(streamed.energy_j, expected.energy_j)
    assert streamed.total_j == expected.total_j and streamed.idle_j == expected.idle_j
