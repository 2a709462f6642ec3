"""`--lock-clocks` / `--power-limit` on trace: set before the run, seen by telemetry and the fingerprint, restored
after it on a normal end and on SIGTERM, refused in one line when NVML says no (the emulator logs every set call)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.io import read_trace
from fastmeter.telemetry import read_telemetry, series_of
from tests.emulators.nvml import FakeNvml, GpuSpec


def _log(fake_nvml: FakeNvml) -> Path:
    return fake_nvml.work_dir / "control.log"


def _configure(fake_nvml: FakeNvml, *extra: str) -> None:
    fake_nvml.configure([GpuSpec(power_limit_w=700.0, telemetry=(f"control_log {_log(fake_nvml)}", *extra))])


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_settings_hold_during_the_trace_and_are_restored_after(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    _configure(fake_nvml)
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(
        main,
        [
            "trace",
            "--source",
            "nvml",
            "--duration",
            "0.3",
            "--lock-clocks",
            "1200",
            "--power-limit",
            "450",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert _lines(_log(fake_nvml)) == [
        "power_limit 0 450000",
        "locked_clocks 0 1200 1200",
        "reset_locked_clocks 0",
        "power_limit 0 700000",
    ]
    tel, _ = read_telemetry(tmp_path / "t-telemetry.arrow")
    assert set(series_of(tel, "gpu0", "sm_clock_mhz")[1].tolist()) == {1200.0}
    assert set(series_of(tel, "gpu0", "power_limit_w")[1].tolist()) == {450.0}
    meta = read_trace(out).metadata
    assert meta["control"]["lock_clocks_mhz"] == 1200 and meta["control"]["power_limit_w"] == 450.0
    assert meta["control"]["previous_power_limit_w"] == {"0": 700.0}
    device = meta["fingerprint"]["controlled"]["gpu"]["devices"][0]
    assert device["locked_clocks_mhz"] == 1200 and device["power_limit_w"] == 450.0


def test_sigterm_restores_the_settings(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    _configure(fake_nvml)
    out = tmp_path / "t.arrow"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastmeter.cli",
            "trace",
            "--source",
            "nvml",
            "--lock-clocks",
            "900",
            "-o",
            str(out),
            "--",
            "sleep",
            "30",
        ],
        env={**os.environ, **fake_nvml.subprocess_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_lines(_log(fake_nvml))) < 1:
        time.sleep(0.05)
    while time.monotonic() < deadline and not out.exists():
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert _lines(_log(fake_nvml)) == ["locked_clocks 0 900 900", "reset_locked_clocks 0"]


def test_no_permission_is_one_clear_error_and_changes_nothing(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    _configure(fake_nvml, "control denied")
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(
        main, ["trace", "--source", "nvml", "--duration", "0.2", "--power-limit", "450", "-o", str(out)]
    )
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].startswith("Error: not permitted to set the power limit of GPU 0")
    assert "needs root" in r.output or "need root" in r.output
    assert "Traceback" not in r.output and not out.exists() and _lines(_log(fake_nvml)) == []


def test_a_limit_outside_the_gpu_range_is_refused_before_anything_is_set(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    _configure(fake_nvml, "power_limit_range_w 200 600")
    r = CliRunner().invoke(
        main,
        [
            "trace",
            "--source",
            "nvml",
            "--duration",
            "0.2",
            "--lock-clocks",
            "1000",
            "--power-limit",
            "650",
            "-o",
            str(tmp_path / "t.arrow"),
        ],
    )
    assert r.exit_code == 2 and "outside GPU 0's range 200-600 W" in r.output
    assert _lines(_log(fake_nvml)) == []


def test_env_check_sees_locked_clocks_and_power_limit_as_controlled(fake_nvml: FakeNvml) -> None:
    from fastmeter.control import GpuControl, control_request
    from fastmeter.env import collect_fingerprint
    from fastmeter.env.compare import compare_fingerprints

    _configure(fake_nvml)
    before = collect_fingerprint()
    with GpuControl(control_request(1100, 500.0)):
        during = collect_fingerprint()
    after = collect_fingerprint()
    diffs = {d.key: (d.a, d.b) for d in compare_fingerprints(before, during)}
    assert diffs["gpu.devices.0.locked_clocks_mhz"][1] == 1100
    assert diffs["gpu.devices.0.power_limit_w"] == (700.0, 500.0)
    assert compare_fingerprints(before, after) == []


def test_bench_sets_and_restores_and_records_the_settings(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    import json

    from tests.emulators.openai_server import openai_server

    fake_nvml.configure(
        [GpuSpec(power_limit_w=700.0, utilization=(60, 20), telemetry=(f"control_log {_log(fake_nvml)}",))]
    )
    out = tmp_path / "run"
    with openai_server(token_gap_s=0.003, prefill_s=0.005) as server:
        argv = [
            "bench",
            "-o",
            str(out),
            "--allow-degraded",
            "--base-url",
            server.url,
            "--server-kind",
            "openai",
            "--model",
            "tiny",
            "--workload-kind",
            "random",
            "--input-tokens",
            "8",
            "--output-tokens",
            "8",
            "--concurrency",
            "2",
            "--num-requests",
            "6",
            "--warmup-requests",
            "0",
            "--sources",
            "nvml",
            "--metrics-enabled",
            "false",
            "--lock-clocks-mhz",
            "1300",
            "--power-limit-w",
            "400",
        ]
        r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0, r.output
    assert _lines(_log(fake_nvml)) == [
        "power_limit 0 400000",
        "locked_clocks 0 1300 1300",
        "reset_locked_clocks 0",
        "power_limit 0 700000",
    ]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["bench"]["lock_clocks_mhz"] == 1300
    assert run["control"]["previous_power_limit_w"] == {"0": 700.0}
    tel, _ = read_telemetry(out / "telemetry.arrow")
    assert set(series_of(tel, "gpu0", "sm_clock_mhz")[1].tolist()) == {1300.0}
    assert set(series_of(tel, "gpu0", "gpu_util_pct")[1].tolist()) == {60.0}


def test_sigterm_right_after_the_settings_still_restores_them(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    # Before the recorder's own handlers are in place (the meter and fingerprint are still opening), SIGTERM's
    # default action would kill the process with the clocks locked.
    _configure(fake_nvml, "latency_us 2000")  # slow NVML value calls: the window before tracing is wide
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastmeter.cli",
            "trace",
            "--source",
            "nvml",
            "--lock-clocks",
            "800",
            "-o",
            str(tmp_path / "t.arrow"),
            "--",
            "sleep",
            "30",
        ],
        env={**os.environ, **fake_nvml.subprocess_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _lines(_log(fake_nvml)):
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert _lines(_log(fake_nvml)) == ["locked_clocks 0 800 800", "reset_locked_clocks 0"]


def test_a_failure_after_the_settings_restores_them(
    fake_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(fake_nvml)
    monkeypatch.setenv("FASTMETER_POWERCAP_ROOT", str(tmp_path / "no-powercap"))  # rapl cannot open
    r = CliRunner().invoke(
        main,
        ["trace", "--source", "rapl", "--duration", "0.2", "--lock-clocks", "1000", "-o", str(tmp_path / "t.arrow")],
    )
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert _lines(_log(fake_nvml)) == ["locked_clocks 0 1000 1000", "reset_locked_clocks 0"]
