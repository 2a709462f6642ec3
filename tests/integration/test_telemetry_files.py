"""Telemetry beside traces and run directories: streamed at the samples' cadence, finished as Arrow IPC files,
and judged into the trace's validity."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.io import read_trace
from fastmeter.telemetry import read_telemetry, series_of
from tests.emulators.nvml import FakeNvml, GpuSpec


@pytest.mark.parametrize("suffix", [".arrow", ".parquet"])
def test_trace_writes_telemetry_beside_it_and_judges_throttling(
    fake_nvml: FakeNvml, tmp_path: Path, suffix: str
) -> None:
    t0 = time.monotonic_ns()
    fake_nvml.configure(
        [GpuSpec(utilization=(88, 30), telemetry=("throttle 0 100000 0x8",))],
        t0_ns=t0,  # HW slowdown all along
    )
    out = tmp_path / f"t{suffix}"
    r = CliRunner().invoke(
        main, ["trace", "--source", "nvml", "--duration", "0.5", "--telemetry-hz", "40", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    tel_path = tmp_path / f"t-telemetry{suffix}"
    assert f"wrote telemetry to {tel_path}" in r.output
    tel, meta = read_telemetry(tel_path)
    assert meta["complete"] is True and meta["telemetry"]["hz"] == 40.0
    assert ["gpu0", "gpu_util_pct"] in meta["telemetry"]["series"]
    t, util = series_of(tel, "gpu0", "gpu_util_pct")
    assert set(util.tolist()) == {88.0} and len(util) >= 10 and (np.diff(t) > 0).all()
    trace = read_trace(out)
    assert trace.metadata["sampler_stats"]["telemetry_polls"] == len(util)
    codes = {x["code"]: x for x in trace.metadata["validity"]["reasons"]}
    assert codes["gpu_throttled"]["channel"] == "gpu0" and "hw_slowdown" in codes["gpu_throttled"]["message"]
    # Readable by DuckDB like the rest (it finds the local pyarrow table by name).
    got = duckdb.sql("select count(*) from tel where metric = 'sm_clock_mhz'").fetchall()
    assert got == [(len(util),)]


def test_telemetry_off_writes_no_file(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(
        main, ["trace", "--source", "nvml", "--duration", "0.1", "--telemetry-hz", "0", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert out.exists() and not (tmp_path / "t-telemetry.arrow").exists()
    assert "wrote telemetry" not in r.output


def test_a_clean_gpu_keeps_the_trace_free_of_telemetry_reasons(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(telemetry=("clocks_event_reasons 0x1",))])  # idle is not throttling
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(main, ["trace", "--source", "nvml", "--duration", "0.3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    codes = {x["code"] for x in read_trace(out).metadata["validity"]["reasons"]}
    assert not codes & {"gpu_throttled", "gpu_temperature_drift"}
    assert read_telemetry(tmp_path / "t-telemetry.arrow")[0].num_rows > 0
