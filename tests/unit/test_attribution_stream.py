"""Streamed attribution: identical to the in-memory attribution on random inputs, however the input is cut into
batches and chunks; memory bounded by the batch size and the requests in flight, not by the run's length."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter.attribution import BoundedCurve, attribute, event_times
from fastmeter.attribution_stream import CurveChunk, RequestBatch, StreamedAttribution, attribute_streamed
from fastmeter.errors import ConfigError
from tests.unit.test_attribution_properties import KEYS, scenarios


def in_start_order(case: dict) -> dict:
    """The same requests (and their chunks) sorted by start: the order streaming needs."""
    order = np.argsort(case["start_ns"], kind="stable")
    off = np.asarray(case["chunk_offsets"])
    chunks = np.concatenate([np.arange(off[r], off[r + 1]) for r in order]).astype(np.int64) if len(order) else []
    counts = np.diff(off)[order]
    return {
        **case,
        "start_ns": case["start_ns"][order],
        "end_ns": case["end_ns"][order],
        "first_token_ns": [case["first_token_ns"][r] for r in order],
        "chunk_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "chunk_t_ns": case["chunk_t_ns"][chunks],
        "chunk_tokens": case["chunk_tokens"][chunks],
    }


def request_batches(case: dict, cuts: list[int]) -> list[RequestBatch]:
    n = len(case["start_ns"])
    edges = sorted({0, n, *(c % (n + 1) for c in cuts)})
    off = case["chunk_offsets"]
    out = []
    for a, b in zip(edges, edges[1:]):
        out.append(
            RequestBatch(
                case["start_ns"][a:b],
                case["end_ns"][a:b],
                case["first_token_ns"][a:b],
                off[a : b + 1] - off[a],
                case["chunk_t_ns"][off[a] : off[b]],
                case["chunk_tokens"][off[a] : off[b]],
            )
        )
    return out


def curve_chunks(case: dict, cuts: list[int]) -> list[CurveChunk]:
    n = len(case["t_ns"])
    edges = sorted({0, n, *(c % (n + 1) for c in cuts)})
    bound = case["bound_j"]
    return [
        CurveChunk(case["t_ns"][a:b], case["energy_j"][a:b], None if bound is None else np.asarray(bound)[a:b])
        for a, b in zip(edges, edges[1:])
    ]


def assert_identical(streamed, in_memory) -> None:
    for key in KEYS:
        np.testing.assert_array_equal(getattr(streamed, key), getattr(in_memory, key), err_msg=key)
    for key in ("idle_j", "idle_s", "total_j", "span_s", "requests_outside_span", "uncertainty", "heuristic_points"):
        assert getattr(streamed, key) == getattr(in_memory, key), key


cut_lists = st.lists(st.integers(0, 20), max_size=4)


@settings(max_examples=300, deadline=None)
@given(scenarios(), cut_lists, cut_lists)
def test_streamed_is_identical_to_in_memory(case, request_cuts, curve_cuts):
    case = in_start_order(case)
    in_memory = attribute(**case)
    streamed = attribute_streamed(
        curve_chunks(case, curve_cuts),
        request_batches(case, request_cuts),
        method=case["method"],
        update_period_s=case["update_period_s"],
        idle_power_w=case["idle_power_w"],
    )
    assert_identical(streamed, in_memory)
    # Conservation, as in memory: requests' energy + idle == the curve's total.
    assert abs(math.fsum(streamed.energy_j) + streamed.idle_j - streamed.total_j) <= 1e-9 * max(1.0, streamed.total_j)


@settings(max_examples=200, deadline=None)
@given(scenarios(), cut_lists, st.integers(-30, 100), st.integers(0, 150))
def test_a_curve_function_is_evaluated_at_every_cut_as_in_memory(case, request_cuts, lo, width):
    """bench's form: the curve evaluated at every cut instant (span edges included), requests clipped to the span."""
    case = in_start_order(case)
    t, e = case["t_ns"], case["energy_j"]

    def curve(x: np.ndarray) -> BoundedCurve:
        return BoundedCurve(np.interp(x, t, e), np.full(len(x), 0.5), {})

    span = (lo, lo + width)
    clipped = {k: np.clip(case[k], *span) for k in ("start_ns", "end_ns", "chunk_t_ns")}
    first = [None if f is None else int(np.clip(f, *span)) for f in case["first_token_ns"]]
    cuts = np.union1d(np.array(span), event_times(clipped["start_ns"], clipped["end_ns"], first, clipped["chunk_t_ns"]))
    points = curve(cuts)
    common = {k: case[k] for k in ("method", "update_period_s", "idle_power_w")}
    in_memory = attribute(
        cuts,
        points.energy_j,
        clipped["start_ns"],
        clipped["end_ns"],
        first,
        chunk_offsets=case["chunk_offsets"],
        chunk_t_ns=clipped["chunk_t_ns"],
        chunk_tokens=case["chunk_tokens"],
        bound_j=points.bound_j,
        **common,
    )
    streamed = attribute_streamed(curve, request_batches(case, request_cuts), span_ns=span, **common)
    assert_identical(streamed, in_memory)


@pytest.mark.parametrize("period_s", [0.001, math.nan])  # NaN: no edge power is read, nothing behind is kept
def test_memory_stays_bounded_by_the_batch_not_the_run(period_s):
    """The kernel's peak holding of curve points and requests does not grow with a run 4x longer."""
    peaks = []
    for n_requests in (20_000, 80_000):
        rng = np.random.default_rng(7)
        start = np.sort(rng.integers(0, n_requests * 1_000_000, n_requests))  # ~1 ms apart, 0-5 ms long
        end = start + rng.integers(0, 5_000_000, n_requests)
        t = np.arange(0, int(end.max()) + 2_000_000, 100_000)  # a point every 100 us
        e = np.cumsum(rng.uniform(0, 0.03, len(t)))

        def chunks(t=t, e=e):
            for a in range(0, len(t), 4096):
                yield CurveChunk(t[a : a + 4096], e[a : a + 4096])

        def batches(start=start, end=end):
            for a in range(0, len(start), 512):
                yield RequestBatch(start[a : a + 512], end[a : a + 512])

        s = StreamedAttribution(chunks(), batches(), update_period_s=period_s)
        energy = math.fsum(math.fsum(b.energy_j) for b in s)
        assert abs(energy + s.totals.idle_j - s.totals.total_j) <= 1e-9 * s.totals.total_j
        assert s.totals.requests == n_requests
        peaks.append((s.totals.peak_curve_points_held, s.totals.peak_requests_held, s.totals.curve_points))
    for points_held, requests_held, points in peaks:
        assert points_held <= 2 * 65536 + 2 * 4096  # twice the trim block, and a chunk beyond it
        assert requests_held <= 2 * 512 + 16  # a batch being swept, the next one, and the few in flight across them
    assert peaks[1][2] >= 8 * peaks[1][0]  # the long run's curve was far larger than what was held of it


def test_requests_out_of_start_order_are_refused():
    with pytest.raises(ConfigError, match="order of start_ns"):
        list(StreamedAttribution([CurveChunk([0, 10], [0.0, 1.0])], [RequestBatch([5, 2], [6, 3])], update_period_s=0))
    later = [RequestBatch([5], [6]), RequestBatch([4], [7])]
    with pytest.raises(ConfigError, match="order of start_ns"):
        list(StreamedAttribution([CurveChunk([0, 10], [0.0, 1.0])], later, update_period_s=0))


def test_curve_chunks_must_continue_each_other():
    chunks = [CurveChunk([0, 10], [0.0, 1.0]), CurveChunk([10, 20], [1.0, 2.0])]
    with pytest.raises(ConfigError, match="continue each other"):
        list(StreamedAttribution(chunks, [RequestBatch([5], [15])], update_period_s=0))


def test_what_streaming_cannot_do_is_said():
    with pytest.raises(ConfigError, match="update_period_s is required"):
        StreamedAttribution([], [], update_period_s=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot be streamed"):
        StreamedAttribution([], [], method="activity", update_period_s=0)
    with pytest.raises(ConfigError, match="curve is empty"):
        list(StreamedAttribution([], [RequestBatch([5], [15])], update_period_s=0))


def test_a_batch_of_sparse_requests_does_not_pull_its_whole_span_of_curve():
    """One batch of requests spread over 800k curve points: the curve is pulled and swept a chunk at a time."""
    rng = np.random.default_rng(9)
    t = np.arange(800_000, dtype=np.int64) * 1000
    e = np.cumsum(rng.uniform(0, 1, len(t)))
    start = np.sort(rng.integers(0, int(t[-1]), 200))
    chunks = (CurveChunk(t[a : a + 4096], e[a : a + 4096]) for a in range(0, len(t), 4096))
    s = StreamedAttribution(chunks, [RequestBatch(start, start + 5000)], update_period_s=1e-6)
    energy = np.concatenate([b.energy_j for b in s])
    expected = attribute(t, e, start, start + 5000, update_period_s=1e-6)
    np.testing.assert_array_equal(energy, expected.energy_j)
    assert s.totals.peak_curve_points_held <= 2 * 65536 + 2 * 4096


@settings(max_examples=100, deadline=None)
@given(scenarios(), cut_lists, cut_lists)
def test_streamed_agrees_with_the_pure_python_twin(case, request_cuts, curve_cuts):
    """The streaming kernel's twin is the in-memory one's (python/fastmeter/reference/attribute.py): the rules, not
    the sweep, so the streamed results are checked against the specification directly too."""
    case = in_start_order(case)
    twin = attribute(**case, backend="reference")
    streamed = attribute_streamed(
        curve_chunks(case, curve_cuts),
        request_batches(case, request_cuts),
        method=case["method"],
        update_period_s=case["update_period_s"],
        idle_power_w=case["idle_power_w"],
    )
    tol = 1e-9 * max(1.0, twin.total_j)
    for key in KEYS:
        a, b = getattr(streamed, key), getattr(twin, key)
        assert (np.isnan(a) == np.isnan(b)).all(), key
        np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-9, atol=tol, err_msg=key)
    assert abs(streamed.idle_j - twin.idle_j) <= tol
