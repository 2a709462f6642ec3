"""The NVML emulator itself: its analytic model, and what pynvml (and so an environment fingerprint) sees."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter import _core
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Square, Steps

T0_NS = 10**12


def breakpoints(waveform: Square | Steps, a_s: float, b_s: float) -> list[float]:
    """Where the piecewise-constant power may jump inside [a_s, b_s]: an independent route to the integral."""
    if isinstance(waveform, Steps):
        inner = [t for t, _ in waveform.points]
    else:
        k0, k1 = int(a_s // waveform.period_s) - 1, int(b_s // waveform.period_s) + 1
        on = waveform.duty * waveform.period_s
        inner = [k * waveform.period_s + d for k in range(k0, k1 + 1) for d in (0.0, on)]
    return sorted({a_s, b_s, *[t for t in inner if a_s < t < b_s]})


powers = st.floats(0.0, 1000.0)
squares = st.builds(Square, powers, powers, st.floats(0.001, 2.0), st.floats(0.0, 1.0))
steps = st.lists(
    st.tuples(st.floats(-5.0, 5.0), powers), min_size=1, max_size=6, unique_by=lambda p: p[0]
).map(lambda pts: Steps(tuple(sorted(pts))))


@settings(max_examples=200, deadline=None)
@given(waveform=st.one_of(squares, steps), a_s=st.floats(-3.0, 3.0), length_s=st.floats(0.0, 4.0))
def test_model_energy_is_the_integral_of_its_power(
    waveform: Square | Steps, a_s: float, length_s: float
) -> None:
    gpu = GpuSpec(waveform=waveform, t0_ns=T0_NS)
    a_ns, b_ns = T0_NS + round(a_s * 1e9), T0_NS + round((a_s + length_s) * 1e9)
    edges = breakpoints(waveform, (a_ns - T0_NS) * 1e-9, (b_ns - T0_NS) * 1e-9)
    expected = sum(waveform.power_at((lo + hi) / 2) * (hi - lo) for lo, hi in itertools.pairwise(edges))
    assert gpu.energy_j(a_ns, b_ns) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_constant_model_and_counter_offset() -> None:
    gpu = GpuSpec(waveform=Constant(250.0), t0_ns=T0_NS, energy_offset_mj=7)
    assert gpu.energy_j(T0_NS, T0_NS + 2_000_000_000) == 500.0
    assert gpu.counter_mj(T0_NS + 2_000_000_000) == 500_007
    assert gpu.power_w(T0_NS - 1) == 250.0


FINGERPRINT = """
import json, pynvml as p
p.nvmlInit()
h = p.nvmlDeviceGetHandleByUUID("GPU-fp")
print(json.dumps({
    "count": p.nvmlDeviceGetCount(), "driver": p.nvmlSystemGetDriverVersion(),
    "cuda": [p.nvmlSystemGetCudaDriverVersion(), p.nvmlSystemGetCudaDriverVersion_v2()],
    "name": p.nvmlDeviceGetName(h), "index": p.nvmlDeviceGetIndex(h),
    "limits_mw": [p.nvmlDeviceGetPowerManagementLimit(h), p.nvmlDeviceGetEnforcedPowerLimit(h)],
    "persistence": p.nvmlDeviceGetPersistenceMode(h), "mig": p.nvmlDeviceGetMigMode(h),
    "clocks": [p.nvmlDeviceGetClockInfo(h, i) for i in range(3)],
    "max_clocks": [p.nvmlDeviceGetMaxClockInfo(h, i) for i in range(3)],
    "temperature": p.nvmlDeviceGetTemperature(h, 0), "arch": p.nvmlDeviceGetArchitecture(h),
    "util": [p.nvmlDeviceGetUtilizationRates(h).gpu, p.nvmlDeviceGetUtilizationRates(h).memory],
    "memory": [p.nvmlDeviceGetMemoryInfo(h).total, p.nvmlDeviceGetMemoryInfo(h).used],
    "procs": [[q.pid, q.usedGpuMemory] for q in p.nvmlDeviceGetComputeRunningProcesses(h)],
}))
try:
    p.nvmlDeviceGetMigMode(p.nvmlDeviceGetHandleByIndex(0))
except p.NVMLError_NotSupported:
    print("mig0 not supported")
"""


def test_pynvml_sees_the_configured_environment(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure(
        [
            GpuSpec(name="NVIDIA A100-SXM4-80GB", arch=7, mig=None),
            GpuSpec(
                name="NVIDIA H200",
                uuid="GPU-fp",
                power_limit_w=450.5,
                persistence=0,
                mig=(1, 0),
                clocks_mhz=(1500, 1500, 2619),
                max_clocks_mhz=(1980, 1980, 3201),
                temperature_c=61,
                utilization=(87, 40),
                memory_mib=(1000, 250),
                processes=((4242, 1 << 30), (77, 5)),
            ),
        ],
        driver="565.57.01",
        cuda_driver=12070,
    )
    run = subprocess.run(
        [sys.executable, "-c", FINGERPRINT],
        check=False,
        env=fake_nvml.subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()
    assert json.loads(first) == {
        "count": 2,
        "driver": "565.57.01",
        "cuda": [12070, 12070],
        "name": "NVIDIA H200",
        "index": 1,
        "limits_mw": [450500, 450500],
        "persistence": 0,
        "mig": [1, 0],
        "clocks": [1500, 1500, 2619],
        "max_clocks": [1980, 1980, 3201],
        "temperature": 61,
        "arch": 9,
        "util": [87, 40],
        "memory": [1000 << 20, 250 << 20],
        "procs": [[4242, 1 << 30], [77, 5]],
    }
    assert second == "mig0 not supported"


def test_bad_config_line_fails_nvml_init(fake_nvml: FakeNvml) -> None:
    fake_nvml.config_path.write_text("gpu\npower sine 100\n")
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {})
    assert info.value.args[1] == "unavailable" and "nvmlInit_v2 failed: NVML error 999" in info.value.args[0]
