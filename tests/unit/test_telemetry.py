"""Telemetry beside energy: the native schedule read against the NVML emulator's scripted values and a fake
procfs/cpufreq tree; unsupported items, per-call failures, bounded memory, and what pynvml reads."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastmeter import Meter
from fastmeter.errors import ConfigError, SpanError
from fastmeter.telemetry import series_of, throttle_counter_ns, throttle_intervals
from tests.emulators.nvml import FakeNvml, GpuSpec

PERIOD_S = 0.05  # 20 Hz


def _values(table, channel: str, metric: str) -> np.ndarray:
    return series_of(table, channel, metric)[1]


def test_scripted_values_arrive_per_gpu_on_the_sampler_clock(fake_nvml: FakeNvml) -> None:
    specs = [
        GpuSpec(
            utilization=(73, 21),
            clocks_mhz=(1410, 1395, 2619),
            power_limit_w=450.0,
            temperature_c=52,
            memory_mib=(81920, 3000),
            telemetry=("memory_temperature_c 61", "clocks_event_reasons 0x1"),
        ),
        GpuSpec(utilization=(5, 1), clocks_mhz=(900, 905, 1593), power_limit_w=300.0, temperature_c=35),
    ]
    fake_nvml.configure(specs)
    with Meter("nvml", telemetry_hz=20) as m:
        time.sleep(0.3)
    tab = m.telemetry()
    assert tab.column_names == ["t_ns", "channel", "metric", "value"]
    assert tab.schema.field("t_ns").type == "int64"
    t = tab["t_ns"].to_numpy()
    assert m.start_ns <= t.min() and t.max() <= m.stop_ns
    for i, g in enumerate(specs):
        ch = f"gpu{i}"
        expect = {
            "gpu_util_pct": g.utilization[0],
            "mem_util_pct": g.utilization[1],
            "graphics_clock_mhz": g.clocks_mhz[0],
            "sm_clock_mhz": g.clocks_mhz[1],
            "mem_clock_mhz": g.clocks_mhz[2],
            "power_limit_w": g.power_limit_w,
            "gpu_temp_c": g.temperature_c,
            "memory_used_b": g.memory_mib[1] * 2**20,
        }
        for metric, want in expect.items():
            got = _values(tab, ch, metric)
            # start poll + one per period + stop poll
            assert len(got) >= 3 and set(got.tolist()) == {float(want)}, (ch, metric, got)
    assert set(_values(tab, "gpu0", "mem_temp_c").tolist()) == {61.0}
    assert set(_values(tab, "gpu0", "clocks_event_reasons").tolist()) == {1.0}
    s = m.stats()
    assert s["telemetry_read_errors"] == 0 and s["telemetry_dropped"] == 0
    assert s["telemetry_polls"] >= 3


def test_unsupported_items_are_listed_once_and_never_polled(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec(telemetry=("unsupported pcie", "unsupported utilization"))])
    with Meter("nvml", telemetry_hz=50) as m:
        time.sleep(0.2)
    s = m.stats()
    gone = [u for u in s["telemetry_unavailable"] if u.startswith("gpu0 ")]
    assert sorted(u.split(":")[0].split(" (")[0] for u in gone) == [
        "gpu0 gpu_util_pct",
        "gpu0 mem_util_pct",
        "gpu0 pcie_rx_bytes",
        "gpu0 pcie_tx_bytes",
    ]
    assert all("NOT_SUPPORTED" in u for u in gone)
    metrics = set(m.telemetry()["metric"].cast("string").to_pylist())
    assert not metrics & {"gpu_util_pct", "pcie_tx_bytes"} and "sm_clock_mhz" in metrics
    assert s["telemetry_read_errors"] == 0


def test_per_call_failures_leave_gaps_not_errors_and_energy_untouched(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec(telemetry=("telemetry_fail_every 4 10",))])  # every 4th telemetry call: TIMEOUT
    with Meter("nvml", telemetry_hz=100) as m:
        time.sleep(0.3)
    s = m.stats()
    assert s["telemetry_read_errors"] > 0
    assert s["errors"] == {} and m.failed_at_ns == {"gpu0": None}
    tab = m.telemetry()
    assert not np.isnan(tab["value"].to_numpy()).any()
    # Every series still has values between the failures.
    per_series = tab.group_by(["channel", "metric"]).aggregate([("value", "count")])
    assert per_series.num_rows == s["telemetry_series"]


def test_throttle_episode_is_seen_and_its_counter_is_exact(fake_nvml: FakeNvml) -> None:
    # An episode that ended before the run (counter frozen at its length) and one during the run.
    t0 = time.monotonic_ns() - 1_000_000_000
    fake_nvml.configure([GpuSpec(telemetry=("throttle 100 400 0x4", "throttle 1300 1600 0x44"))], t0_ns=t0)
    with Meter("nvml", telemetry_hz=20) as m:
        time.sleep(0.9)
    tab = m.telemetry()
    t, mask = series_of(tab, "gpu0", "clocks_event_reasons")
    inside = (t >= t0 + 1_300_000_000 + 10_000_000) & (t < t0 + 1_600_000_000 - 10_000_000)
    outside = (t < t0 + 1_300_000_000 - 10_000_000) | (t >= t0 + 1_600_000_000 + 10_000_000)
    assert inside.sum() >= 3 and set(mask[inside].tolist()) == {0x44}
    assert set(mask[outside].tolist()) == {0}
    # SW power cap time: 300 ms of the first episode before the run, then the second one's 300 ms.
    tc, cap = series_of(tab, "gpu0", "throttle_power_cap_ns")
    assert cap[0] == 300_000_000 and cap[-1] == 600_000_000 and (np.diff(cap) >= 0).all()
    _, hw_thermal = series_of(tab, "gpu0", "throttle_hw_thermal_ns")
    assert hw_thermal[-1] == 300_000_000
    (iv,) = throttle_intervals(tab)
    assert iv.channel == "gpu0" and iv.reasons == ["sw_power_cap", "hw_thermal_slowdown"]
    assert t0 + 1_300_000_000 - 50_000_000 <= iv.start_ns <= iv.stop_ns <= t0 + 1_600_000_000 + 50_000_000
    moved = throttle_counter_ns(tab, m.start_ns, m.stop_ns)["gpu0"]
    assert moved["throttle_power_cap_ns"] == moved["throttle_hw_thermal_ns"] == 300_000_000
    assert moved["throttle_sync_boost_ns"] == 0


def test_temperature_ramp_is_read_as_scripted(fake_nvml: FakeNvml) -> None:
    t0 = time.monotonic_ns()
    (g,) = fake_nvml.configure([GpuSpec(temperature_c=40, telemetry=("temperature_ramp 70 0.5",))], t0_ns=t0)
    with Meter("nvml", telemetry_hz=50) as m:
        time.sleep(0.7)
    t, temp = series_of(m.telemetry(), "gpu0", "gpu_temp_c")
    assert temp[-1] == 70.0 and temp[0] < 70.0 and (np.diff(temp) >= 0).all()
    # Each reading lies between the model's value one poll before and after its stamp (the call is inside the poll).
    model = lambda x: math.floor(40 + 30 * min(1.0, max(0.0, (x - t0) / 0.5e9)))  # noqa: E731
    slack = 20_000_000
    assert all(model(ti - slack) <= v <= model(ti + slack) for ti, v in zip(t.tolist(), temp.tolist()))


def _fake_cpu_tree(root: Path) -> tuple[Path, Path]:
    proc = root / "proc"
    proc.mkdir(parents=True)
    cpu = root / "cpu"
    for policy, khz in (("policy0", 2_400_000), ("policy4", 3_100_000)):
        (cpu / "cpufreq" / policy).mkdir(parents=True)
        (cpu / "cpufreq" / policy / "scaling_cur_freq").write_text(f"{khz}\n")
    return proc, cpu


STAT = "cpu  {user:>10} 0 {system:>10} {idle:>10} 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\n"


def test_cpu_utilization_and_frequency_come_from_the_fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, cpu = _fake_cpu_tree(tmp_path)
    stat = proc / "stat"
    stat.write_text(STAT.format(user=1000, system=500, idle=8500))
    monkeypatch.setenv("FASTMETER_PROCFS_ROOT", str(proc))
    monkeypatch.setenv("FASTMETER_SYSFS_CPU_ROOT", str(cpu))
    with Meter("synthetic", telemetry_hz=100) as m:
        time.sleep(0.1)
        # One step of counters: +60 user, +15 system, +25 idle = 75% busy. Same length, one write: no torn read.
        with open(stat, "r+") as f:
            f.write(STAT.format(user=1060, system=515, idle=8525))
        time.sleep(0.1)
    tab = m.telemetry()
    assert _values(tab, "cpu", "util_pct").tolist() == [75.0]  # the polls with no tick in between give no value
    assert set(_values(tab, "cpu-policy0", "freq_mhz").tolist()) == {2400.0}
    assert set(_values(tab, "cpu-policy4", "freq_mhz").tolist()) == {3100.0}
    assert m.stats()["telemetry_unavailable"] == []


def test_cpu_items_missing_from_the_tree_are_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTMETER_PROCFS_ROOT", str(tmp_path / "no-proc"))
    monkeypatch.setenv("FASTMETER_SYSFS_CPU_ROOT", str(tmp_path / "no-cpu"))
    with Meter("synthetic", telemetry_hz=20) as m:
        time.sleep(0.05)
    gone = m.stats()["telemetry_unavailable"]
    assert [u.split(":")[0] for u in gone] == ["cpu util_pct", "cpu freq_mhz"]
    assert m.telemetry().num_rows == 0 and m.telemetry_series == []


def test_telemetry_off_reads_nothing_and_bad_rates_are_one_clear_error(fake_nvml: FakeNvml) -> None:
    with Meter("nvml", telemetry_hz=0) as m:
        time.sleep(0.05)
    assert m.telemetry().num_rows == 0 and m.stats()["telemetry_polls"] == 0
    for bad in (-1, 1e6, "fast"):
        with pytest.raises(ConfigError, match="telemetry_hz=.* must be a rate from 0"):
            Meter("synthetic", telemetry_hz=bad)  # type: ignore[arg-type]


def test_memory_stays_bounded_and_old_readings_leave_ram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, cpu = _fake_cpu_tree(tmp_path)
    (proc / "stat").write_text(STAT.format(user=1, system=1, idle=1))
    for k in range(8, 40):  # 34 frequency series at 1 kHz: several 4096-reading chunks a second
        (cpu / "cpufreq" / f"policy{k}").mkdir()
        (cpu / "cpufreq" / f"policy{k}" / "scaling_cur_freq").write_text("1000000\n")
    monkeypatch.setenv("FASTMETER_PROCFS_ROOT", str(proc))
    monkeypatch.setenv("FASTMETER_SYSFS_CPU_ROOT", str(cpu))
    keep_s, hz = 0.2, 1000
    with Meter("synthetic", telemetry_hz=hz, keep_samples_s=keep_s) as m:
        time.sleep(1.0)
    s = m.stats()
    series = s["telemetry_series"]
    bound = (keep_s * hz + 2) * series + 4096  # the count bound + one partly filled chunk
    assert s["telemetry_dropped_from_ram"] > 0 and s["telemetry_kept"] <= bound
    assert s["telemetry_kept"] + s["telemetry_dropped_from_ram"] == m.telemetry_count()
    with pytest.raises(SpanError, match="no longer in RAM"):
        m.telemetry(m.start_ns, m.stop_ns)
    with pytest.raises(SpanError, match="no longer in RAM"):
        m.telemetry_range(0, 10)
    recent = m.telemetry(m.stop_ns - 50_000_000, m.stop_ns)
    assert recent.num_rows > 0


PYNVML_TELEMETRY = """
import json, pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
u = pynvml.nvmlDeviceGetUtilizationRates(h)
fields = pynvml.nvmlDeviceGetFieldValues(h, [82, 74, 252])
print(json.dumps({
    "gpu_util_pct": u.gpu, "mem_util_pct": u.memory,
    "graphics_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_GRAPHICS),
    "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
    "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
    "gpu_temp_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
    "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
    "clocks_event_reasons": pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
    "memory_used_b": pynvml.nvmlDeviceGetMemoryInfo(h).used,
    "mem_temp_c": fields[0].value.uiVal,
    "throttle_power_cap_ns": fields[1].value.ullVal,
    "throttle_hw_thermal_ns": fields[2].value.ullVal,
}))
pynvml.nvmlShutdown()
"""


def test_pynvml_reads_the_same_telemetry_as_fastmeter(fake_nvml: FakeNvml) -> None:
    # Episodes that ended before the run: every value, counters included, is constant while both read.
    fake_nvml.configure(
        [
            GpuSpec(
                utilization=(64, 12),
                clocks_mhz=(1700, 1710, 2619),
                power_limit_w=500.0,
                temperature_c=47,
                telemetry=("throttle 10 260 0x44", "clocks_event_reasons 0x4", "memory_temperature_c 58"),
            )
        ],
        t0_ns=time.monotonic_ns() - 1_000_000_000,
    )
    with Meter("nvml", telemetry_hz=20) as m:
        time.sleep(0.1)
    tab = m.telemetry()
    run = subprocess.run(
        [sys.executable, "-c", PYNVML_TELEMETRY],
        check=False,
        env=fake_nvml.subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    ours = {metric: set(_values(tab, "gpu0", metric).tolist()) for metric in seen}
    assert ours == {metric: {float(v)} for metric, v in seen.items()}


def test_validity_of_a_span_longer_than_ram_says_what_it_judged(
    fake_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastmeter.assess import meter_validity

    t0 = time.monotonic_ns()
    # Throttled early on only: by the end that part has left RAM, and the note says from when it was judged.
    fake_nvml.configure([GpuSpec(telemetry=("throttle 0 200 0x4",))], t0_ns=t0)
    with Meter("nvml", telemetry_hz=1000, keep_samples_s=0.1) as m:
        time.sleep(1.0)
    assert m.stats()["telemetry_dropped_from_ram"] > 0
    reasons = {r.code: r for r in meter_validity(m).reasons}
    note = reasons["telemetry_partly_judged"]
    assert note.verdict.value == "measured" and m.start_ns < note.t_ns <= m.stop_ns
    assert "gpu_throttled" not in reasons  # the throttled stretch is older than what RAM holds
    # The same meter judged over a span it still holds: clean, and no note.
    recent = {r.code for r in meter_validity(m, (m.stop_ns - 50_000_000, m.stop_ns)).reasons}
    assert not recent & {"telemetry_partly_judged", "gpu_throttled"}
