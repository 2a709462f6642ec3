"""A record longer than the Meter's raw-sample window still gets its validity, and its trace completes: the
validity checks read the samples still in RAM, not the whole record (which is on disk only)."""

from __future__ import annotations

import math
import time

import fastmeter
from fastmeter.assess import meter_validity
from fastmeter.io import open_trace
from fastmeter.recorder import Recorder
from fastmeter.tracing import run_trace
from fastmeter.validity import GAP_JITTER_PERIODS, MAX_GAP_UPDATE_PERIODS


def test_a_trace_whose_samples_left_ram_completes_with_its_validity(tmp_path) -> None:
    # A window just over the recorder's flush interval (0.5 s): 24k samples at 8 ch x 5 kHz, and samples leave RAM
    # a chunk of 8192 at a time, so ~0.8 s in (twice that on a machine loaded to half speed) they start leaving.
    m = fastmeter.Meter("synthetic", 200, source_options={"synthetic": {"channels": "8"}}, keep_samples_s=0.6)
    path = tmp_path / "t.arrow"
    result = run_trace(Recorder(m, path, {"channels": [{"name": c.name} for c in m.channels]}), [], duration_s=3.0)
    assert m.stats()["samples_dropped_from_ram"] > 0
    tb = open_trace(path)
    assert tb.complete and result.rows == m.sample_count() == sum(b.num_rows for b in tb.batches())
    assert tb.metadata["validity"] == meter_validity(m).to_dict()


def test_gaps_of_samples_that_left_ram_are_judged_by_the_records_largest() -> None:
    """Once samples have left RAM, a channel's poll gap is judged by the sampler's largest gap over the whole record
    (the samples that would show where it was are gone): reported exactly when that gap is over the limit."""
    m = fastmeter.Meter("synthetic", 200, source_options={"synthetic": {"channels": "4"}}, keep_samples_s=0.05)
    with m:
        while m.stats()["samples_dropped_from_ram"] == 0:  # polls, not a time
            time.sleep(0.01)
    s = m.stats()
    flagged = {r.channel for r in meter_validity(m).reasons if r.code == "poll_gap"}
    for c in m.channels:
        period_s = s["update_period_s"].get(c.name, math.nan)
        update_ns = m.period_us * 1e3 if math.isnan(period_s) else period_s * 1e9
        limit_ns = max(MAX_GAP_UPDATE_PERIODS * update_ns, GAP_JITTER_PERIODS * m.period_us * 1e3)
        assert (c.name in flagged) == (s["channels"][c.name]["poll_gap_max_ns"] > limit_ns)
