"""Real-GPU tests (marker `gpu`): skipped unless a real NVIDIA driver answers; run by benchmarks/gpu_check.sh."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = """
import ctypes
lib = ctypes.CDLL("libnvidia-ml.so.1")
n = ctypes.c_uint(0)
assert lib.nvmlInit_v2() == 0 and lib.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0
print(n.value)
"""


def real_gpu_count() -> int:
    """GPUs the real driver reports, asked in a clean subprocess so no NVML emulator can answer."""
    env = {k: v for k, v in os.environ.items() if k not in ("FASTMETER_NVML_LIBRARY", "FAKE_NVML_CONFIG", "LD_PRELOAD")}
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=60, check=False)
    return int(r.stdout) if r.returncode == 0 and r.stdout.strip().isdigit() else 0


GPU_COUNT = real_gpu_count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs a real NVIDIA GPU and driver (run benchmarks/gpu_check.sh there)")
    for item in items:
        if item.get_closest_marker("gpu") and GPU_COUNT == 0:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _real_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTMETER_NVML_LIBRARY", raising=False)
    monkeypatch.delenv("FAKE_NVML_CONFIG", raising=False)
