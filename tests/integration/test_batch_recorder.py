"""BatchRecorder on the NVML emulator: each batch's energy is the analytic truth within its bound, warm-up batches
are marked, values become columns, and unknown energy is null (never 0)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pyarrow as pa
import pytest

import fastmeter
from fastmeter.errors import ConfigError
from fastmeter.tasks import BatchRecorder
from tests.emulators.nvml import FakeNvml, GpuSpec, Square


def test_batch_energy_matches_the_emulators_truth(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(80.0, 300.0, 0.05, 0.4))])
    seen = []
    with fastmeter.Meter("nvml", 1000) as m:
        rec = BatchRecorder(m, warmup_batches=2, on_batch=seen.append)
        for i in range(6):
            with rec.batch(items=4) as b:
                time.sleep(0.01 + 0.005 * i)
                b.values["loss"] = 1.0 / (i + 1)
        with rec.batch() as b:  # items known only at the end
            time.sleep(0.01)
            b.items = 3
        table = rec.table()
    path = rec.write(tmp_path / "batches.arrow")
    assert [b.index for b in seen] == list(range(7))
    with pa.OSFile(str(path)) as f:
        assert pa.ipc.open_file(f).read_all().equals(table)
    rows = table.to_pylist()
    assert [r["warmup"] for r in rows] == [True, True] + [False] * 5
    assert [r["items"] for r in rows] == [4] * 6 + [3]
    assert rows[3]["loss"] == pytest.approx(0.25) and rows[6]["loss"] is None
    for r in rows:
        truth = spec.energy_j(r["t0_ns"], r["t1_ns"])
        assert abs(r["energy_j"] - truth) <= r["energy_bound_j"], r
        assert r["energy_per_item_j"] == pytest.approx(r["energy_j"] / r["items"])
        assert r["latency_ms"] == pytest.approx((r["t1_ns"] - r["t0_ns"]) / 1e6)
    assert rec.span_ns() == (rows[2]["t0_ns"], rows[6]["t1_ns"])
    assert [b.index for b in rec.measured()] == [2, 3, 4, 5, 6]


def test_energy_after_the_record_is_unknown_not_zero(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec()])
    with fastmeter.Meter("nvml", 1000) as m:
        rec = BatchRecorder(m)
        time.sleep(0.01)
    later = time.monotonic_ns() + 1_000_000_000
    rec.add(later, later + 1000, 2)
    row = rec.table().to_pylist()[0]
    assert row["energy_j"] is None and row["energy_per_item_j"] is None
    assert math.isnan(rec.energies().energy_j[0])


@pytest.mark.parametrize("args", [(5, 4, 1), (0, 1, -1), (0, 1, 1.5)])
def test_bad_batches_are_refused_with_one_clear_error(args: tuple, fake_nvml: FakeNvml) -> None:
    with fastmeter.Meter("nvml", 1000) as m:
        rec = BatchRecorder(m)
        with pytest.raises(ConfigError, match="batch"):
            rec.add(*args)
        with pytest.raises(ConfigError, match="values are numbers"):
            rec.add(0, 1, 1, energy_j=2.0)
    with pytest.raises(ConfigError, match="warmup_batches"):
        BatchRecorder(m, warmup_batches=-1)


def test_a_calibrated_counter_delay_is_read_later_on_the_curve(fake_nvml: FakeNvml) -> None:
    # The counter published at t holds the energy up to t - 30 ms: read 30 ms later, each batch gets its own energy.
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(80.0, 300.0, 0.05, 0.4), counter_delay_ms=30.0)])
    with fastmeter.Meter("nvml", 1000) as m:
        rec = BatchRecorder(m, delays_ns={"gpu0": 30_000_000})
        for _ in range(5):
            with rec.batch(items=1):
                time.sleep(0.02)
        e = rec.energies()
    for b, energy, bound in zip(rec.batches, e.energy_j, e.energy_bound_j):
        assert abs(energy - spec.energy_j(b.t0_ns, b.t1_ns)) <= bound
