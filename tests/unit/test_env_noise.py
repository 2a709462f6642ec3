"""noise_warnings: each documented rule fires exactly when its condition holds."""

from __future__ import annotations

from typing import Any

import pytest

from fastmeter.env import noise_warnings
from fastmeter.env.noise import GPU_WARM_C

OWN_PID = 1000


def _fp(
    *, procs: Any = (), temp_c: Any = 30, load1: float = 0.0, cpus: int = 8, governors: Any = None
) -> dict:
    return {
        "schema_version": 1,
        "controlled": {
            "cpu": {"logical_cpus": cpus, "governors": governors or {"policy0": "performance"}},
        },
        "observed": {
            "gpu": {"devices": [{"temperature_c": temp_c, "processes": list(procs)}]},
            "load_average": [load1, 0.0, 0.0],
        },
    }


def _codes(fp: dict) -> list[str]:
    return [w.code for w in noise_warnings(fp, own_pid=OWN_PID)]


def test_quiet_machine_has_no_warnings() -> None:
    assert _codes(_fp(procs=[{"pid": OWN_PID, "name": "python"}])) == []


def test_other_gpu_process_is_named() -> None:
    (warning,) = noise_warnings(_fp(procs=[{"pid": 4242, "name": "vllm"}]), own_pid=OWN_PID)
    assert warning.code == "gpu-processes"
    assert warning.message == "GPU 0 is in use by other processes: 4242 (vllm)"


@pytest.mark.parametrize(
    ("temp_c", "codes"),
    [(GPU_WARM_C, []), (GPU_WARM_C + 1, ["gpu-warm"]), ("unavailable: not supported", [])],
)
def test_warm_gpu_threshold(temp_c: Any, codes: list[str]) -> None:
    assert _codes(_fp(temp_c=temp_c)) == codes


@pytest.mark.parametrize(
    ("load1", "cpus", "codes"),
    [(1.0, 2, []), (1.01, 2, ["load-average"]), (2.0, 8, []), (2.01, 8, ["load-average"])],
)
def test_load_average_rule_is_max_of_one_and_quarter_of_cpus(
    load1: float, cpus: int, codes: list[str]
) -> None:
    assert _codes(_fp(load1=load1, cpus=cpus)) == codes


def test_governor_not_performance() -> None:
    governors = {"policy0": "performance", "policy1": "powersave", "policy2": "schedutil"}
    (warning,) = noise_warnings(_fp(governors=governors), own_pid=OWN_PID)
    assert warning.code == "governor"
    assert "powersave, schedutil on 2 of 3 policies" in warning.message


def test_unavailable_items_raise_no_warning() -> None:
    fp = _fp()
    fp["observed"]["gpu"] = "unavailable: NVML library not found"
    fp["observed"]["load_average"] = "unavailable: cannot read /proc/loadavg"
    fp["controlled"]["cpu"]["governors"] = "unavailable: no cpufreq policies"
    assert _codes(fp) == []
