"""`fastmeter calibrate` against the NVML emulator: the emulator's waveform is the load (--load none, test-only),
and the recovered update period, window and delay must match what the emulator was configured with."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastmeter.calibrate import field_delay_ns, load_calibration, run_calibration
from fastmeter.calibrate.poll import NvmlFields
from fastmeter.cli import main
from fastmeter.errors import ConfigError
from fastmeter.io import read_trace
from tests.calibration_helpers import HIGH_W, LOW_W, jittered_load
from tests.emulators.nvml import FakeNvml, GpuSpec

# Live polling from Python on a shared machine: polls land every ~0.5-2 ms with occasional stalls, so the
# tolerances are a few poll intervals (the exact-model unit tests hold 0.05-0.5 ms).
PERIOD_TOL_MS, WINDOW_TOL_MS, DELAY_TOL_MS = 0.5, 1.5, 1.5


def test_emulator_delay_directives_match_the_model(fake_nvml: FakeNvml) -> None:
    """Field values read through NVML equal the Python model with delays, whenever the model is unambiguous
    over the call (the emulator takes its value at one instant between our two clock reads)."""
    t0 = time.monotonic_ns()
    wave, _ = jittered_load(t0, 120.0, 3.0)
    (gpu,) = fake_nvml.configure(
        [
            GpuSpec(
                waveform=wave,
                counter_refresh_ms=7,
                power_refresh_ms=5,
                power_window_ms=3,
                power_delay_ms=11.5,
                counter_delay_ms=4,
                average_window_ms=40,
                field_types=("ull", "double"),
            )
        ],
        t0_ns=t0,
    )
    checked = 0
    with NvmlFields() as nvml:
        for _ in range(3000):
            a = time.monotonic_ns()
            counter_mj, instant_w, average_w = nvml.read(0)
            b = time.monotonic_ns()
            for got, model in (
                (counter_mj, gpu.counter_mj),
                (instant_w, lambda t: gpu.instant_power_mw(t) * 1e-3),
                (average_w, lambda t: gpu.average_power_mw(t) * 1e-3),
            ):
                if model(a) == model(b):
                    assert got == model(a)
                    checked += 1
    assert checked > 5000


CONFIGS = [  # (refresh ms for counter and power, instant window ms, power delay ms, counter delay ms)
    (100, 25, 0, 0),
    (100, 25, 10, 5),
    (20, 10, 0, 0),
]


@pytest.mark.slow
@pytest.mark.parametrize(("refresh_ms", "window_ms", "delay_ms", "cdelay_ms"), CONFIGS)
def test_calibration_recovers_the_emulated_sensor(
    fake_nvml: FakeNvml, refresh_ms: float, window_ms: float, delay_ms: float, cdelay_ms: float
) -> None:
    t0 = time.monotonic_ns()
    wave, _ = jittered_load(t0 + 10**9, 300.0, 6.0)
    fake_nvml.configure(
        [
            GpuSpec(
                waveform=wave,
                counter_refresh_ms=refresh_ms,
                power_refresh_ms=refresh_ms,
                power_window_ms=window_ms,
                power_delay_ms=delay_ms,
                counter_delay_ms=cdelay_ms,
                average_window_ms=500,
            )
        ],
        t0_ns=t0,
    )
    time.sleep(1.0)  # the average field's 500 ms past then already holds load edges
    result = run_calibration(period_ms=300.0, duration_s=4.0, poll_us=500, load="none")
    (g,) = result["gpus"]
    truth = {
        "energy_counter": (refresh_ms, cdelay_ms),
        "instant_power": (window_ms, delay_ms),
        "average_power": (500, delay_ms),
    }
    for name, (window, delay) in truth.items():
        f = g["fields"][name]
        assert f["update_resolved"], name
        assert f["update_period_ms"] == pytest.approx(refresh_ms, abs=PERIOD_TOL_MS), name
        assert f["averaging_window_ms"] == pytest.approx(window, abs=WINDOW_TOL_MS), name
        assert f["delay_ms"] == pytest.approx(delay, abs=DELAY_TOL_MS), name
        assert f["low_w"] == pytest.approx(LOW_W, abs=2.0) and f["high_w"] == pytest.approx(HIGH_W, abs=2.0)
    assert math.isfinite(g["counter_vs_power_pct"])
    assert g["name"] == "NVIDIA H200" and g["uuid"].startswith("GPU-")


@pytest.mark.slow
def test_cli_saves_json_and_trace_records_it(
    fake_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = time.monotonic_ns()
    wave, _ = jittered_load(t0, 200.0, 5.0)
    fake_nvml.configure(
        [
            GpuSpec(
                waveform=wave,
                counter_refresh_ms=50,
                power_refresh_ms=50,
                power_window_ms=20,
                power_delay_ms=8,
                average_window_ms=100,
            )
        ],
        t0_ns=t0,
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "cal.json"
    r = CliRunner().invoke(main, ["calibrate", "--load", "none", "--duration-s", "3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "instant_power" in r.output and "integrated instant power vs energy counter" in r.output
    cal = load_calibration(out)
    assert json.loads(out.read_text()) == cal
    uuid = cal["gpus"][0]["uuid"]
    assert field_delay_ns(cal, uuid) == pytest.approx(8e6, abs=DELAY_TOL_MS * 1e6)
    assert field_delay_ns(cal, "GPU-other") is None

    # trace's fingerprint would load the emulator through pynvml and keep it resident: trace without it.
    monkeypatch.delenv("FASTMETER_NVML_LIBRARY")
    trace = tmp_path / "t.arrow"
    args = ["trace", "--source", "synthetic", "--duration", "0.1", "-o", str(trace), "--force"]  # one file, rewritten
    assert CliRunner().invoke(main, [*args, "--calibration", str(out)]).exit_code == 0
    assert read_trace(trace).metadata["calibration"] == cal
    assert CliRunner().invoke(main, args).exit_code == 0  # no default file yet
    assert read_trace(trace).metadata["calibration"] is None
    default = tmp_path / "cache" / "fastmeter" / "calibration.json"
    default.parent.mkdir(parents=True)
    default.write_text(out.read_text())
    assert CliRunner().invoke(main, args).exit_code == 0
    assert read_trace(trace).metadata["calibration"] == cal


def test_bad_calibration_files_and_loads_are_clear_errors(
    fake_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = CliRunner().invoke(main, ["calibrate", "--load", "cuda", "--duration-s", "1", "-o", str(tmp_path / "c")])
    # without the kernel: "this fastmeter build has no CUDA load"; with it but no GPU: the CUDA runtime's error
    assert r.exit_code == 2 and "CUDA" in r.output
    r = CliRunner().invoke(main, ["calibrate", "--gpu", "5", "--load", "none", "-o", str(tmp_path / "c")])
    assert r.exit_code == 2 and "no GPU with index 5" in r.output

    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(ConfigError, match="rerun `fastmeter calibrate"):
        load_calibration(bad)
    monkeypatch.delenv("FASTMETER_NVML_LIBRARY")  # as in the test above: keep the emulator out of trace
    r = CliRunner().invoke(
        main,
        [
            "trace",
            "--source",
            "synthetic",
            "--duration",
            "0.1",
            "-o",
            str(tmp_path / "t.arrow"),
            "--calibration",
            str(bad),
        ],
    )
    assert r.exit_code == 2 and "not a fastmeter.calibration/1 file" in r.output


@pytest.mark.parametrize("load", ["auto", "torch", "cuda"])
def test_without_an_nvidia_driver_calibrate_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     load: str) -> None:
    """No driver: the advice is about the GPU, not about how to build a load for it (CUDA, torch)."""
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(tmp_path / "no-driver" / "libnvidia-ml.so.1"))
    r = CliRunner().invoke(main, ["calibrate", "--load", load, "--duration-s", "1", "-o", str(tmp_path / "c")])
    assert r.exit_code == 2 and r.output.startswith("Error: no NVIDIA driver/GPU found")
    assert "torch" not in r.output.lower() and "build" not in r.output.lower()


def test_a_driver_with_no_gpu_is_named(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([])
    r = CliRunner().invoke(main, ["calibrate", "--duration-s", "1", "-o", str(tmp_path / "c")])
    assert r.exit_code == 2 and "no NVIDIA driver/GPU found: NVML sees no GPU" in r.output
