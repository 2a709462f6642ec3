"""The one curve says "unknown": an instant the sampler has not polled past yet is waited for on a running meter,
and an instant outside the record gives a NaN total, never a partial or carried-forward one."""

from __future__ import annotations

import math
import time

import numpy as np

import fastmeter
from fastmeter.attribution import bounded_total_curve, total_curve


def test_a_running_meter_waits_for_the_poll_past_the_instant_asked_for() -> None:
    # 10 ms between polls: right after now_ns() the newest poll is almost always before it.
    with fastmeter.Meter("synthetic", 10_000) as m:
        time.sleep(0.05)
        for _ in range(5):
            t = m.now_ns()
            (e,) = m.cumulative_at(np.array([t], dtype=np.int64))["synthetic0"]
            assert math.isfinite(e) and e > 0


def test_an_instant_outside_the_record_has_no_total() -> None:
    with fastmeter.Meter("synthetic", 1000, source_options={"synthetic": {"channels": "2"}}) as m:
        t_in = m.now_ns()
    t_after = m.stop_ns + 50_000_000
    total = total_curve(m, np.array([t_in, t_after], dtype=np.int64))
    assert math.isfinite(total[0]) and math.isnan(total[1])
    bounded = bounded_total_curve(m, np.array([m.start_ns - 1, t_in], dtype=np.int64))
    assert math.isnan(bounded.energy_j[0]) and bounded.energy_j[1] == total[0]
