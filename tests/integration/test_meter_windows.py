"""Windows on emulated hardware: unknown is NaN (never 0), a slow counter's first update is waited for, results
never wait longer than MAX_WAIT_FINAL_S, asyncio is not blocked, and analytic truth lies inside every error bound."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmeter
from fastmeter.meter import MAX_WAIT_FINAL_S
from fastmeter.validity import Verdict
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Square


def test_a_window_right_after_start_waits_for_the_first_update(fake_nvml: FakeNvml) -> None:
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Constant(200.0), counter_refresh_ms=100)])
    with fastmeter.Meter("nvml", 1000) as m:
        with m.window() as w:
            time.sleep(0.02)
        e, bound = w.energy_j, w.bound_j
        assert not w.provisional and w.unknown_channels == []
    truth = spec.energy_j(w.t0_ns, w.t1_ns)
    assert abs(e - truth) <= bound
    assert e > 0 and not math.isnan(bound)


def test_a_slow_sampler_gives_unknown_within_the_wait_budget() -> None:
    m = fastmeter.Meter("synthetic", 10_000_000)  # one poll every 10 s: nothing after the start poll
    assert m._wait_ns() <= MAX_WAIT_FINAL_S * 1e9
    with m:
        with m.window() as w:
            time.sleep(0.01)
        asked = time.monotonic()
        total = w.energy_j
        waited_s = time.monotonic() - asked
    assert math.isnan(total) and w.unknown_channels == ["synthetic0"]
    assert "counter_not_updated" in [r.code for r in w.validity.reasons]
    assert w.validity.verdict is Verdict.INVALID
    assert waited_s < 5.0  # hang guard: it used to wait out the 10 s period


def test_awaiting_a_result_does_not_block_the_event_loop(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec(waveform=Constant(150.0), counter_refresh_ms=100)])
    order: list[str] = []

    async def main(m: fastmeter.Meter) -> fastmeter.SpanResult:
        async with m.window() as w:
            await asyncio.sleep(0.01)
        other = asyncio.create_task(asyncio.sleep(0, result="other"))
        other.add_done_callback(lambda t: order.append(t.result()))
        result = await w.result()  # waits up to ~100 ms for the counter: the loop runs `other` meanwhile
        order.append("result")
        between = await m.energy_between_async(w.t0_ns, w.t1_ns)
        assert between == result.energy_j
        return result

    with fastmeter.Meter("nvml", 1000) as m:
        time.sleep(0.25)
        result = asyncio.run(main(m))
    assert order == ["other", "result"]
    assert result.final["gpu0"] and result.total_j > 0


# Each example writes its own emulator config (read at the Meter's nvmlInit), so sharing the fixture is safe.
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    low=st.floats(50.0, 200.0),
    ratio=st.floats(1.0, 4.0),
    period_s=st.floats(0.02, 0.4),
    duty=st.floats(0.2, 0.8),
    refresh_ms=st.sampled_from([0.0, 10.0, 100.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_truth_lies_inside_every_span_bound_on_the_nvml_emulator(
    fake_nvml: FakeNvml, low: float, ratio: float, period_s: float, duty: float, refresh_ms: float, seed: int
) -> None:
    # Instant power is read at every poll: the high phase (>= 4 ms) is seen, so the bound's power limit holds.
    (spec,) = fake_nvml.configure(
        [GpuSpec(waveform=Square(low, low * ratio, period_s, duty), counter_refresh_ms=refresh_ms)]
    )
    with fastmeter.Meter("nvml", 1000) as m:
        time.sleep(0.8)
    rng = np.random.default_rng(seed)
    for length_ms in (10, 100, 300):
        for t0 in rng.integers(m.start_ns, m.stop_ns - length_ms * 1_000_000, 8):
            t1 = int(t0) + length_ms * 1_000_000
            span = m.span(int(t0), t1)
            truth = spec.energy_j(int(t0), t1)
            value, bound = span.energy_j["gpu0"], span.bound_j["gpu0"]
            if math.isnan(value):  # no update inside or after the span: unknown, and said so
                assert span.validity.verdict is Verdict.INVALID
                continue
            assert abs(value - truth) <= bound, (length_ms, value, truth, bound)
            # The span's interval is the edges' intervals intersected with 0 <= E <= P_max x length: never wider.
            _, edge_bounds = m.cumulative_at(np.array([t0, t1], dtype=np.int64), with_bound=True)["gpu0"]
            assert bound <= edge_bounds.sum() * (1 + 1e-12)
            assert span.total_bound_j == bound
            relative_ok = bound <= 0.10 * span.total_j
            assert ("bound_above_limit" in [r.code for r in span.validity.reasons]) != relative_ok
