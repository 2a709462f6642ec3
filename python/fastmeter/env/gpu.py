"""GPU part of the fingerprint, read through nvidia-ml-py (a dependency; imported lazily: it loads NVML).

FASTMETER_NVML_LIBRARY names the NVML library file to use instead of libnvidia-ml.so.1 from the dynamic
loader. pynvml keeps its loaded library in the module global `nvmlLib` and loads the default only when that
is None, so we install our own handle there (and drop its cached function pointers when the handle changes).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from typing import Any

from fastmeter.env.readers import procfs_root, read_text, unavailable

LIBRARY_ENV = "FASTMETER_NVML_LIBRARY"
DEFAULT_LIBRARY = "libnvidia-ml.so.1"

# NVML return codes (nvml.h) mapped to what the reader should do about them.
_NVML_ERRORS = {
    2: "invalid argument",
    3: "not supported by this GPU or driver",
    4: "no permission (run as a user allowed to query the GPU)",
    6: "not found",
    9: "NVIDIA driver not loaded",
    12: f"NVML library not found ({DEFAULT_LIBRARY}); set {LIBRARY_ENV}",
    13: "function not found in the NVML library (driver too old for this query)",
    15: "GPU is lost (fell off the bus); check dmesg",
    999: "unknown NVML error",
}

# The handle we installed into pynvml, so that unsetting FASTMETER_NVML_LIBRARY restores the default.
_installed_handle: int | None = None


class _Unavailable(Exception):
    """The whole GPU section cannot be read; the message says why."""


def _describe(exc: Exception) -> str:
    code = getattr(exc, "value", None)
    if isinstance(code, int) and code in _NVML_ERRORS:
        return _NVML_ERRORS[code]
    return str(exc)


def _load_pynvml() -> Any:
    global _installed_handle
    try:
        import pynvml
    except ImportError as exc:
        raise _Unavailable("nvidia-ml-py is missing although fastmeter depends on it; reinstall fastmeter") from exc
    path = os.environ.get(LIBRARY_ENV)
    if path:
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise _Unavailable(f"cannot load {LIBRARY_ENV}={path}: {exc}") from exc
        current = getattr(pynvml.nvmlLib, "_handle", None)
        if current != lib._handle:
            pynvml.nvmlLib = lib
            pynvml._nvmlGetFunctionPointer_cache.clear()
            _installed_handle = lib._handle
    elif _installed_handle is not None:
        pynvml.nvmlLib = None
        pynvml._nvmlGetFunctionPointer_cache.clear()
        _installed_handle = None
    return pynvml


class _Reader:
    """NVML queries through one loaded pynvml; each failed item becomes "unavailable: <why>"."""

    def __init__(self, nv: Any) -> None:
        self.nv = nv
        # pynvml raises this (not an NVMLError) when an unversioned wrapper finds no symbol in the library.
        self.mismatch = getattr(nv, "NVMLLibraryMismatchError", nv.NVMLError)

    def get(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self.nv.NVMLError as exc:
            return unavailable(_describe(exc))
        except self.mismatch:
            return unavailable(_NVML_ERRORS[13])

    def clocks(self, handle: Any, fn: Callable[[Any, int], int]) -> dict[str, Any]:
        nv = self.nv
        return {
            "graphics": self.get(lambda: fn(handle, nv.NVML_CLOCK_GRAPHICS)),
            "sm": self.get(lambda: fn(handle, nv.NVML_CLOCK_SM)),
            "memory": self.get(lambda: fn(handle, nv.NVML_CLOCK_MEM)),
        }

    def mig_mode(self, handle: Any) -> Any:
        modes = self.get(lambda: self.nv.nvmlDeviceGetMigMode(handle))
        if isinstance(modes, str):
            return modes
        current, pending = (_mode(m) for m in modes)
        return current if current == pending else f"{current} (pending: {pending})"

    def processes(self, handle: Any) -> Any:
        """Compute and graphics processes. A kind whose query fails is left out as long as the other
        kind answered (data-centre GPUs and older drivers lack graphics queries); if both fail, the
        first reason is reported."""
        found: list[dict[str, Any]] = []
        failures: list[str] = []
        for kind, fn in (
            ("compute", self.nv.nvmlDeviceGetComputeRunningProcesses),
            ("graphics", self.nv.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            procs = self.get(lambda fn=fn: fn(handle))
            if isinstance(procs, str):
                failures.append(procs)
                continue
            found.extend(
                {
                    "pid": p.pid,
                    "name": _process_name(p.pid),
                    "kind": kind,
                    "used_memory_bytes": p.usedGpuMemory,
                }
                for p in procs
            )
        return failures[0] if len(failures) == 2 else found

    def device(self, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        nv, get = self.nv, self.get
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        controlled = {
            "name": get(lambda: nv.nvmlDeviceGetName(handle)),
            "power_limit_w": _watts(get(lambda: nv.nvmlDeviceGetPowerManagementLimit(handle))),
            "enforced_power_limit_w": _watts(get(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle))),
            "persistence_mode": _mode(get(lambda: nv.nvmlDeviceGetPersistenceMode(handle))),
            "mig_mode": self.mig_mode(handle),
            "max_clocks_mhz": self.clocks(handle, nv.nvmlDeviceGetMaxClockInfo),
        }
        observed = {
            "uuid": get(lambda: nv.nvmlDeviceGetUUID(handle)),
            "temperature_c": get(lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)),
            "clocks_mhz": self.clocks(handle, nv.nvmlDeviceGetClockInfo),
            "processes": self.processes(handle),
        }
        from fastmeter.env.gpu_extra import extra_controlled, extra_observed  # lazy: it imports fastmeter.control

        controlled.update(extra_controlled(self, handle, index))
        observed.update(extra_observed(self, handle))
        return controlled, observed


def _mode(value: Any) -> Any:
    return value if isinstance(value, str) else ("enabled" if value else "disabled")


def _watts(value: Any) -> Any:
    return value if isinstance(value, str) else value / 1000.0


def _process_name(pid: int) -> str:
    path = procfs_root() / str(pid) / "comm"
    try:
        return read_text(path)
    except OSError as exc:
        return unavailable(f"cannot read {path}: {exc.strerror or exc}")


def cuda_version_text(version: int) -> str:
    """NVML's integer CUDA driver version as text: 12040 -> "12.4"."""
    return f"{version // 1000}.{version % 1000 // 10}"


def collect_gpu() -> tuple[dict[str, Any] | str, dict[str, Any] | str]:
    """(controlled, observed) GPU items; both are "unavailable: <why>" when NVML cannot be used at all."""
    try:
        nv = _load_pynvml()
    except _Unavailable as exc:
        return unavailable(str(exc)), unavailable(str(exc))
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        return unavailable(_describe(exc)), unavailable(_describe(exc))
    reader = _Reader(nv)
    try:
        count = nv.nvmlDeviceGetCount()
        driver = reader.get(nv.nvmlSystemGetDriverVersion)
        cuda = reader.get(nv.nvmlSystemGetCudaDriverVersion)
        devices = [reader.device(i) for i in range(count)]
    except nv.NVMLError as exc:
        why = unavailable(f"NVML query failed: {_describe(exc)}")
        return why, why
    finally:
        # A failing shutdown (e.g. GPU lost meanwhile) must not hide what was read.
        with contextlib.suppress(nv.NVMLError):
            nv.nvmlShutdown()
    controlled = {
        "driver_version": driver,
        "cuda_driver_version": cuda if isinstance(cuda, str) else cuda_version_text(cuda),
        "count": count,
        "devices": [c for c, _ in devices],
    }
    return controlled, {"devices": [o for _, o in devices]}
