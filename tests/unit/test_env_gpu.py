"""GPU fingerprint read through pynvml from the NVML emulator (tests/emulators/fake_nvml*.c), selected with
FASTMETER_NVML_LIBRARY and configured through FAKE_NVML_CONFIG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastmeter.env import collect_fingerprint, noise_warnings
from fastmeter.env.gpu import collect_gpu, cuda_version_text
from fastmeter.env.gpu_extra import NOT_LOCKED

EMULATOR_DIR = Path(__file__).resolve().parents[1] / "emulators"

TWO_GPUS = """\
driver 999.88.77-emulated
cuda_driver 12040
gpu
name NVIDIA H200
uuid GPU-00000000-aaaa
power_limit_w 700
temperature_c 61
clocks_mhz 1755 1755 2619
max_clocks_mhz 1980 1980 3201
process {own_pid} 1048576
process 4242 2097152
gpu
name NVIDIA H200
uuid GPU-00000000-bbbb
power_limit_w 450
persistence 0
mig 1 0
temperature_c 30
applications_clocks_mhz 1410 1410 2619
ecc 0 1
pcie_link 4 8 2 8
"""


@pytest.fixture
def emulated(fake_nvml_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "nvml.conf"
    config.write_text(TWO_GPUS.format(own_pid=os.getpid()))
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(fake_nvml_library))
    monkeypatch.setenv("FAKE_NVML_CONFIG", str(config))
    return config


def test_controlled_gpu_items_of_emulated_gpus(emulated: Path) -> None:
    controlled, _ = collect_gpu()
    assert controlled == {
        "driver_version": "999.88.77-emulated",
        "cuda_driver_version": "12.4",
        "count": 2,
        "devices": [
            {
                "name": "NVIDIA H200",
                "power_limit_w": 700.0,
                "enforced_power_limit_w": 700.0,
                "persistence_mode": "enabled",
                "mig_mode": "disabled",
                "max_clocks_mhz": {"graphics": 1980, "sm": 1980, "memory": 3201},
                "applications_clocks_mhz": {"graphics": 1980, "memory": 3201},  # default: the max clocks
                "locked_clocks_mhz": NOT_LOCKED,
                "ecc_mode": "enabled",
                "pcie_max": {"generation": 5, "width": 16},
            },
            {
                "name": "NVIDIA H200",
                "power_limit_w": 450.0,
                "enforced_power_limit_w": 450.0,
                "persistence_mode": "disabled",
                "mig_mode": "enabled (pending: disabled)",
                "max_clocks_mhz": {"graphics": 1980, "sm": 1980, "memory": 3201},
                "applications_clocks_mhz": {"graphics": 1410, "memory": 2619},
                "locked_clocks_mhz": NOT_LOCKED,
                "ecc_mode": "disabled",
                "pcie_max": {"generation": 4, "width": 8},
            },
        ],
    }


def test_observed_gpu_items_of_emulated_gpus(
    emulated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proc = tmp_path / "proc"
    (proc / str(os.getpid())).mkdir(parents=True)
    (proc / str(os.getpid()) / "comm").write_text("pytest\n")
    monkeypatch.setenv("FASTMETER_PROCFS_ROOT", str(proc))
    _, observed = collect_gpu()
    first, second = observed["devices"]
    assert (first["uuid"], first["temperature_c"]) == ("GPU-00000000-aaaa", 61)
    assert first["clocks_mhz"] == {"graphics": 1755, "sm": 1755, "memory": 2619}
    assert [(p["pid"], p["kind"], p["used_memory_bytes"], p["name"]) for p in first["processes"]] == [
        (os.getpid(), "compute", 1048576, "pytest"),
        (4242, "compute", 2097152, f"unavailable: cannot read {proc}/4242/comm: No such file or directory"),
    ]
    assert (second["uuid"], second["temperature_c"], second["processes"]) == ("GPU-00000000-bbbb", 30, [])
    assert (first["pcie_current"], second["pcie_current"]) == (
        {"generation": 5, "width": 16},
        {"generation": 2, "width": 8},
    )


def test_noise_warnings_from_emulated_gpus(emulated: Path) -> None:
    warnings = noise_warnings(collect_fingerprint())
    gpu_warnings = [(w.code, w.message.split(":")[0]) for w in warnings if w.code.startswith("gpu")]
    # Only pid 4242 is "other"; only GPU 0 is above 50 C.
    assert gpu_warnings == [
        ("gpu-processes", "GPU 0 is in use by other processes"),
        ("gpu-warm", "GPU 0 is at 61 C (> 50 C)"),
    ]
    assert "4242" in warnings[0].message and str(os.getpid()) not in warnings[0].message


def test_driver_not_loaded_is_reported(emulated: Path) -> None:
    emulated.write_text("init_error 9\n")
    assert collect_gpu() == ("unavailable: NVIDIA driver not loaded", "unavailable: NVIDIA driver not loaded")


def test_unsetting_the_library_variable_restores_the_default(
    emulated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert collect_gpu()[0]["driver_version"] == "999.88.77-emulated"
    monkeypatch.delenv("FASTMETER_NVML_LIBRARY")
    # A fresh process: in this one the emulator (soname libnvidia-ml.so.1) may already be loaded by another
    # test, and the dynamic loader then hands it out for the default name too.
    code = (
        "import ctypes, json; from fastmeter.env.gpu import collect_gpu\n"
        "try:\n    ctypes.CDLL('libnvidia-ml.so.1'); found = True\nexcept OSError:\n    found = False\n"
        "print(json.dumps([found, collect_gpu()[0]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    found, controlled = json.loads(out)
    assert "999.88.77-emulated" not in json.dumps(controlled)
    if not found:  # no driver on this machine: the default library is missing, and we say what to set
        assert controlled == "unavailable: NVML library not found (libnvidia-ml.so.1); set FASTMETER_NVML_LIBRARY"


@pytest.mark.parametrize(
    ("version", "text"), [(12040, "12.4"), (11080, "11.8"), (12090, "12.9"), (13000, "13.0")]
)
def test_cuda_version_text(version: int, text: str) -> None:
    assert cuda_version_text(version) == text
