"""The NVML source against the NVML emulator, whose every value is known analytically.

Timing argument used throughout: the emulator takes its clock at the start of each value call, which fastmeter
makes after `probe` records t_ns and before `probe` returns; counters and refresh instants are monotone in
time, so the value it reports lies between the model evaluated at those two instants (a set of one or two
refresh instants when the counter refreshes in steps).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastmeter import _core
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Square, Steps

GPU_IS_LOST = 15
TIMEOUT = 10


def probe(options: dict[str, str] | None = None) -> tuple[dict, int, int]:
    out = _core.probe("nvml", options or {})
    return out, out["t_ns"], time.monotonic_ns()


def refresh_instants(gpu: GpuSpec, lo_ns: int, hi_ns: int, refresh_ms: float, phase_ms: float = 0.0) -> list[int]:
    """Every refresh instant t0 + phase + k*refresh that can be the latest one for a read within [lo_ns, hi_ns]."""
    r, origin = round(refresh_ms * 1e6), gpu.t0_ns + round(phase_ms * 1e6)
    k_lo, k_hi = (lo_ns - origin) // r, (hi_ns - origin) // r
    return [origin + k * r for k in range(k_lo, k_hi + 1)]


def three_gpus() -> list[GpuSpec]:
    return [
        GpuSpec(name="NVIDIA H200", uuid="GPU-aaaa", waveform=Constant(111.5)),
        GpuSpec(name="NVIDIA A100-SXM4-80GB", uuid="GPU-bbbb", waveform=Constant(222.25)),
        GpuSpec(name="Tesla V100-SXM2-16GB", uuid="GPU-cccc", waveform=Constant(333.0)),
    ]


def test_one_channel_per_gpu_named_by_index_with_name_and_uuid(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure(three_gpus())
    out, _, _ = probe()
    assert [c["name"] for c in out["channels"]] == ["gpu0", "gpu1", "gpu2"]
    assert [c["device"] for c in out["channels"]] == [
        "NVIDIA H200 GPU-aaaa",
        "NVIDIA A100-SXM4-80GB GPU-bbbb",
        "Tesla V100-SXM2-16GB GPU-cccc",
    ]
    for c in out["channels"]:
        assert (c["domain"], c["has_counter"], c["has_power"]) == ("gpu", True, True)
        assert (c["counter_unit_j"], c["counter_range"], c["in_total"]) == (1e-3, 0, True)
    assert [r["power_w"] for r in out["readings"]] == [111.5, 222.25, 333.0]
    assert not any(r["failed"] for r in out["readings"])


def test_selection_by_index_and_uuid_keeps_the_given_order(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure(three_gpus())
    out, _, _ = probe({"gpus": " 2, GPU-aaaa"})
    assert [c["name"] for c in out["channels"]] == ["gpu2", "gpu0"]
    assert [r["power_w"] for r in out["readings"]] == [333.0, 111.5]


@pytest.mark.parametrize("gpus", ["3", "GPU-zzzz", "0,GPU-aaaa", "-1"])
def test_bad_selection_is_a_config_error_listing_the_valid_gpus(fake_nvml: FakeNvml, gpus: str) -> None:
    fake_nvml.configure(three_gpus())
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {"gpus": gpus})
    message, kind = info.value.args
    assert kind == "config"
    if gpus == "0,GPU-aaaa":
        assert "twice" in message
    else:
        assert all(u in message for u in ("0 (NVIDIA H200 GPU-aaaa)", "GPU-bbbb", "2 (Tesla V100-SXM2-16GB"))


def test_unknown_option_is_a_config_error(fake_nvml: FakeNvml) -> None:
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {"gpu": "0"})
    assert info.value.args[1] == "config" and "valid: gpus" in info.value.args[0]


@pytest.mark.parametrize(
    "waveform", [Constant(250.0), Square(80.0, 650.0, 0.013, 0.3), Steps(((0.0, 90.0), (0.05, 400.0)))]
)
def test_continuous_counter_equals_the_analytic_energy_at_the_read_instant(
    fake_nvml: FakeNvml, waveform: Constant | Square | Steps
) -> None:
    (gpu,) = fake_nvml.configure(
        [GpuSpec(waveform=waveform, energy_offset_mj=123_456_789, latency_us=300)],
        t0_ns=time.monotonic_ns() - 2_000_000_000,
    )
    out, lo_ns, hi_ns = probe()
    raw = out["readings"][0]["counter_raw"]
    assert gpu.counter_mj(lo_ns) <= raw <= gpu.counter_mj(hi_ns)
    # Two seconds of waveform lie behind the read: the model is not trivially the offset.
    assert gpu.counter_mj(lo_ns) - 123_456_789 >= 2 * 80_000


def test_refreshing_counter_equals_the_energy_at_a_refresh_instant(fake_nvml: FakeNvml) -> None:
    (gpu,) = fake_nvml.configure(
        [GpuSpec(waveform=Square(100.0, 300.0, 0.17, 0.3), counter_refresh_ms=100.0)],
        t0_ns=time.monotonic_ns() - 3_000_000_000,
    )
    out, lo_ns, hi_ns = probe()
    allowed = {gpu.counter_mj(t) for t in refresh_instants(gpu, lo_ns, hi_ns, 100.0)}
    assert out["readings"][0]["counter_raw"] in allowed


@pytest.mark.parametrize("phase_ms", [0.0, 37.0])
def test_instant_power_is_the_windowed_mean_at_the_latest_refresh(fake_nvml: FakeNvml, phase_ms: float) -> None:
    spec = GpuSpec(
        waveform=Square(100.0, 300.0, 0.17, 0.3), power_window_ms=25.0, power_refresh_ms=100.0, power_phase_ms=phase_ms
    )
    (gpu,) = fake_nvml.configure([spec], t0_ns=time.monotonic_ns() - 3_000_000_000)
    out, lo_ns, hi_ns = probe()
    instants = refresh_instants(gpu, lo_ns, hi_ns, 100.0, phase_ms)
    # The model's value at a refresh instant is the mean over the 25 ms before it, whatever the phase.
    for r in instants:
        assert gpu.instant_power_mw(r) == pytest.approx(gpu.energy_j(r - 25_000_000, r) / 0.025 * 1000, rel=1e-9)
    assert out["readings"][0]["power_w"] in {math.floor(gpu.instant_power_mw(t)) / 1000 for t in instants}


@pytest.mark.parametrize(
    "field_types",
    [("ull", "uint"), ("double", "double"), ("sll", "sint"), ("ulong", "ushort"), ("sint", "ulong")],
)
def test_every_value_type_is_decoded(fake_nvml: FakeNvml, field_types: tuple[str, str]) -> None:
    # 60.125 W is 60125 mW: it fits an unsigned short, and no type rounds it.
    spec = GpuSpec(waveform=Constant(60.125), field_types=field_types)
    (gpu,) = fake_nvml.configure([spec], t0_ns=time.monotonic_ns() - 1_500_000_000)
    out, lo_ns, hi_ns = probe()
    reading = out["readings"][0]
    assert gpu.counter_mj(lo_ns) <= reading["counter_raw"] <= gpu.counter_mj(hi_ns)
    assert reading["power_w"] == 60.125


def test_average_power_stands_in_when_instant_power_is_missing(fake_nvml: FakeNvml) -> None:
    spec = GpuSpec(
        waveform=Steps(((0.0, 100.0), (0.5, 400.0))), no_instant_power=True, power_refresh_ms=200.0
    )
    (gpu,) = fake_nvml.configure([spec], t0_ns=time.monotonic_ns() - 1_000_000_000)
    out, lo_ns, hi_ns = probe()
    allowed = {math.floor(gpu.average_power_mw(t)) / 1000 for t in refresh_instants(gpu, lo_ns, hi_ns, 200.0)}
    assert out["readings"][0]["power_w"] in allowed
    assert out["channels"][0]["has_counter"]


@pytest.mark.parametrize("fault", ["no_field_values", "no_power_fields"])
def test_single_value_calls_stand_in_for_missing_fields(fake_nvml: FakeNvml, fault: str) -> None:
    spec = GpuSpec(waveform=Square(50.0, 450.0, 0.4, 0.5), power_refresh_ms=100.0, **{fault: True})
    (gpu,) = fake_nvml.configure([spec], t0_ns=time.monotonic_ns() - 2_000_000_000)
    out, lo_ns, hi_ns = probe()
    reading = out["readings"][0]
    assert gpu.counter_mj(lo_ns) <= reading["counter_raw"] <= gpu.counter_mj(hi_ns)
    # nvmlDeviceGetPowerUsage is the one-second mean, in whole mW.
    allowed = {math.floor(gpu.average_power_mw(t)) / 1000 for t in refresh_instants(gpu, lo_ns, hi_ns, 100.0)}
    assert reading["power_w"] in allowed


def test_gpu_without_energy_counter_reports_power_only(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec(waveform=Constant(180.0), no_energy_counter=True)])
    out, _, _ = probe()
    assert (out["channels"][0]["has_counter"], out["channels"][0]["has_power"]) == (False, True)
    assert out["readings"][0] == {"counter_raw": None, "power_w": 180.0, "failed": False, "error": ""}


def test_gpu_without_any_value_cannot_open(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure(
        [GpuSpec(uuid="GPU-dead", no_energy_counter=True, no_power_fields=True, no_power_usage=True)]
    )
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {})
    message, kind = info.value.args
    assert kind == "unavailable" and "GPU-dead" in message and "neither" in message and "gpus" in message


def test_lost_gpu_fails_its_channel_while_the_others_read(fake_nvml: FakeNvml) -> None:
    # The open probe is call 1 on each GPU; the first read is call 2, so GPU 1 is lost at the first read.
    gpus = three_gpus()
    gpus[1] = GpuSpec(name="NVIDIA H200", uuid="GPU-bbbb", fail_after_calls=(1, GPU_IS_LOST))
    fake_nvml.configure(gpus)
    out, _, _ = probe()
    lost = out["readings"][1]
    assert lost["failed"] and lost["counter_raw"] is None and lost["power_w"] is None
    assert "NVML error 15 GPU_IS_LOST (GPU is lost)" in lost["error"] and "nvidia-smi" in lost["error"]
    assert [out["readings"][i]["power_w"] for i in (0, 2)] == [111.5, 333.0]
    assert not out["readings"][0]["failed"] and not out["readings"][2]["failed"]


def test_transient_error_misses_one_poll_without_failing(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec(fail_after_calls=(1, TIMEOUT))])
    out, _, _ = probe()
    assert out["readings"][0] == {"counter_raw": None, "power_w": None, "failed": False, "error": ""}


def test_gpu_lost_before_open_names_the_gpu_and_the_way_out(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec(uuid="GPU-gone", fail_after_calls=(0, GPU_IS_LOST))])
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {})
    message, kind = info.value.args
    assert kind == "unavailable" and "GPU-gone" in message and "GPU_IS_LOST" in message and "gpus" in message


@pytest.mark.parametrize(
    ("code", "kind", "name"), [(9, "unavailable", "DRIVER_NOT_LOADED"), (4, "permission", "NO_PERMISSION")]
)
def test_init_failure_maps_to_a_source_error(fake_nvml: FakeNvml, code: int, kind: str, name: str) -> None:
    fake_nvml.configure([GpuSpec()], init_error=code)
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {})
    assert (
        info.value.args[1] == kind and f"nvmlInit_v2 failed: NVML error {code} {name}" in info.value.args[0]
    )


def test_no_gpus_is_unavailable(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([])
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {})
    assert info.value.args == ("NVML reports no GPUs; check `nvidia-smi`", "unavailable")


def test_missing_library_is_unavailable_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = f"{tmp_path}/no-such-libnvidia-ml.so.1"
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", missing)
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {})
    message, kind = info.value.args
    assert kind == "unavailable" and missing in message and "FASTMETER_NVML_LIBRARY" in message


def test_library_that_is_not_nvml_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", "libm.so.6")
    with pytest.raises(_core.SourceError) as info:
        _core.probe("nvml", {})
    assert info.value.args[1] == "unavailable" and "has no nvmlInit_v2" in info.value.args[0]


PYNVML_READER = """
import json, pynvml
pynvml.nvmlInit()
out = {"driver": pynvml.nvmlSystemGetDriverVersion(), "gpus": []}
for i in range(pynvml.nvmlDeviceGetCount()):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    f = pynvml.nvmlDeviceGetFieldValues(h, [83, 186])
    out["gpus"].append({"name": pynvml.nvmlDeviceGetName(h), "uuid": pynvml.nvmlDeviceGetUUID(h),
                        "energy_mj": pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
                        "field_energy_mj": f[0].value.ullVal, "field_power_mw": f[1].value.uiVal})
pynvml.nvmlShutdown()
print(json.dumps(out))
"""


def test_pynvml_reads_the_same_counters_as_fastmeter(fake_nvml: FakeNvml) -> None:
    # Waveforms that ended one second before t0 + 2 s: the counters are frozen, so both readers must agree
    # exactly, with each other and with the analytic integral.
    gpus = fake_nvml.configure(
        [
            GpuSpec(uuid="GPU-1111", waveform=Steps(((0.0, 300.0), (1.0, 0.0))), energy_offset_mj=5_000_000),
            GpuSpec(uuid="GPU-2222", waveform=Steps(((0.0, 120.0), (0.25, 700.0), (0.75, 0.0)))),
        ],
        t0_ns=time.monotonic_ns() - 2_000_000_000,
        driver="560.35.03",
    )
    assert [g.counter_mj(g.t0_ns + 2_000_000_000) for g in gpus] == [5_300_000, 30_000 + 350_000]
    env = fake_nvml.subprocess_env()
    run = subprocess.run(
        [sys.executable, "-c", PYNVML_READER], check=False, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    out, _, _ = probe()
    assert seen["driver"] == "560.35.03"
    assert [g["uuid"] for g in seen["gpus"]] == [c["device"].split()[-1] for c in out["channels"]]
    assert [g["energy_mj"] for g in seen["gpus"]] == [r["counter_raw"] for r in out["readings"]]
    assert [g["field_energy_mj"] for g in seen["gpus"]] == [5_300_000, 380_000]
    assert (
        [g["field_power_mw"] / 1000 for g in seen["gpus"]]
        == [r["power_w"] for r in out["readings"]]
        == [0, 0]
    )
