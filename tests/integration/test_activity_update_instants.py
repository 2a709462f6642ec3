"""The sensor's update instants that activity attribution fits to, streamed from the run's trace file (complete,
whatever keep_samples_s) or read from the Meter's raw samples: the same instants either way, on the emulator's
refresh grid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import fastmeter
from fastmeter.bench.activity_energy import update_instants_ns
from fastmeter.io.read import open_trace
from fastmeter.recorder import Recorder
from tests.emulators.nvml import FakeNvml, GpuSpec, Square

REFRESH_NS = 100_000_000


def test_update_instants_from_the_trace_file_and_from_ram_agree(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    (gpu,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.17, 0.3), counter_refresh_ms=100.0)])
    m = fastmeter.Meter("nvml", 1000)
    path = tmp_path / "samples.arrow"
    rec = Recorder(m, path, {}).start()
    time.sleep(1.5)
    rec.close({})
    assert sum(1 for _ in open_trace(path).batches()) > 1  # a change can straddle two batches
    span = (m.start_ns + 200_000_000, m.stop_ns - 100_000_000)
    from_file = update_instants_ns(m, span, {}, path)
    np.testing.assert_array_equal(from_file, update_instants_ns(m, span, {}, None))
    # Every counter refresh inside the span, each seen by the first poll after it (1 ms polls; a loaded host may
    # delay one by a few ms).
    assert len(from_file) == pytest.approx((span[1] - span[0]) / REFRESH_NS, abs=1)
    assert np.all((from_file - gpu.t0_ns) % REFRESH_NS < 10_000_000), (from_file - gpu.t0_ns) % REFRESH_NS
    # A counter read 5 ms late changed 5 ms earlier on the attribution's clock.
    everything = (m.start_ns - 10**9, m.stop_ns + 10**9)
    shifted = update_instants_ns(m, everything, {"gpu0": 5_000_000}, path)
    np.testing.assert_array_equal(shifted, update_instants_ns(m, everything, {}, path) - 5_000_000)
