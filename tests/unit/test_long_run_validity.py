"""A record longer than the Meter's raw-sample window still gets its validity, and its trace completes: the
validity checks read the samples still in RAM, not the whole record (which is on disk only)."""

from __future__ import annotations

import fastmeter
from fastmeter.assess import meter_validity
from fastmeter.io import open_trace
from fastmeter.recorder import Recorder
from fastmeter.tracing import run_trace


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
