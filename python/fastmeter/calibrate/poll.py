"""Raw NVML field polling for calibration: fields 83, 186 and 185 of each GPU in one nvmlDeviceGetFieldValues call.

An offline tool, so a Python loop through ctypes is enough (~1-2 kHz). It loads the same library as the nvml
source: FASTMETER_NVML_LIBRARY when set (the emulator in tests), else libnvidia-ml.so.1.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import time
from dataclasses import dataclass

import numpy as np

from fastmeter.errors import ConfigError, SourceUnavailableError

FIELDS = (83, 186, 185)  # energy counter (mJ), instant power (mW), average power (mW)
SLOW_CALL_NS = 200_000
_VALUE_GETTERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


class _Value(ctypes.Union):
    _fields_ = [
        ("dVal", ctypes.c_double),
        ("uiVal", ctypes.c_uint),
        ("ulVal", ctypes.c_ulong),
        ("ullVal", ctypes.c_ulonglong),
        ("sllVal", ctypes.c_longlong),
        ("siVal", ctypes.c_int),
        ("usVal", ctypes.c_ushort),
    ]


class _FieldValue(ctypes.Structure):
    _fields_ = [
        ("fieldId", ctypes.c_uint),
        ("scopeId", ctypes.c_uint),
        ("timestamp", ctypes.c_longlong),
        ("latencyUsec", ctypes.c_longlong),
        ("valueType", ctypes.c_int),
        ("nvmlReturn", ctypes.c_int),
        ("value", _Value),
    ]


@dataclass
class PolledStream:
    """One GPU's readings: t_ns (midpoint of the call), counter_mj, instant_w, average_w (NaN where a field
    failed or is unsupported, and for calls slower than max(5 x median, 200 us))."""

    t_ns: np.ndarray
    counter_mj: np.ndarray
    instant_w: np.ndarray
    average_w: np.ndarray


class NvmlFields:
    """nvmlInit on enter, nvmlShutdown on exit; `read(gpu)` returns (counter_mj, instant_w, average_w)."""

    def __init__(self) -> None:
        path = os.environ.get("FASTMETER_NVML_LIBRARY") or "libnvidia-ml.so.1"
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as e:
            raise SourceUnavailableError(
                f"no NVIDIA driver/GPU found: cannot load NVML ({path}: {e}); calibrate needs an NVIDIA GPU with "
                "its driver installed (or FASTMETER_NVML_LIBRARY set to libnvidia-ml.so.1's full path)"
            ) from None
        self._handles: dict[int, ctypes.c_void_p] = {}

    def __enter__(self) -> NvmlFields:
        rc = self._lib.nvmlInit_v2()
        if rc != 0:
            raise SourceUnavailableError(
                f"no NVIDIA driver/GPU found: nvmlInit failed with NVML return code {rc}; check that the NVIDIA "
                "driver is loaded (`nvidia-smi`)"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._lib.nvmlShutdown()
        # Unload too: a library left resident would answer every later dlopen("libnvidia-ml.so.1") by soname.
        _ctypes.dlclose(self._lib._handle)

    def count(self) -> int:
        n = ctypes.c_uint(0)
        self._lib.nvmlDeviceGetCount_v2(ctypes.byref(n))
        return n.value

    def handle(self, gpu: int) -> ctypes.c_void_p:
        if gpu not in self._handles:
            h = ctypes.c_void_p()
            if self._lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(gpu), ctypes.byref(h)) != 0:
                raise ConfigError(f"no GPU with index {gpu} (this machine has {self.count()}); see `nvidia-smi -L`")
            self._handles[gpu] = h
        return self._handles[gpu]

    def identity(self, gpu: int) -> dict[str, str]:
        """{"name", "uuid"} of one GPU (empty strings where NVML does not say)."""
        out = {}
        for key, fn in (("name", self._lib.nvmlDeviceGetName), ("uuid", self._lib.nvmlDeviceGetUUID)):
            buf = ctypes.create_string_buffer(96)
            out[key] = buf.value.decode() if fn(self.handle(gpu), buf, ctypes.c_uint(96)) == 0 else ""
        return out

    def read(self, gpu: int, values: ctypes.Array[_FieldValue] | None = None) -> tuple[float, float, float]:
        if values is None:
            values = (_FieldValue * 3)()
        for f, fid in zip(values, FIELDS):
            f.fieldId, f.scopeId = fid, 0
        self._lib.nvmlDeviceGetFieldValues(self.handle(gpu), 3, values)
        out = []
        for f, scale in zip(values, (1.0, 1e-3, 1e-3)):
            ok = f.nvmlReturn == 0 and f.valueType in _VALUE_GETTERS
            out.append(float(getattr(f.value, _VALUE_GETTERS[f.valueType])) * scale if ok else float("nan"))
        return out[0], out[1], out[2]


def poll(gpus: list[int], duration_s: float, poll_us: int) -> dict[int, PolledStream]:
    """Reads every GPU's three fields each poll_us for duration_s (polls land ~50-100 us late: sleep precision);
    a late poll moves the following deadlines rather than being made up."""
    if poll_us <= 0 or duration_s <= 0:
        raise ConfigError("--poll-us and --duration-s must be positive")
    rows: dict[int, list[tuple[float, float, float, float]]] = {g: [] for g in gpus}
    buf = (_FieldValue * 3)()
    with NvmlFields() as nvml:
        for g in gpus:
            nvml.handle(g)
        next_ns = time.monotonic_ns()
        end_ns = next_ns + int(duration_s * 1e9)
        while next_ns < end_ns:
            for g in gpus:
                t0 = time.monotonic_ns()
                c, i, a = nvml.read(g, buf)
                t1 = time.monotonic_ns()
                rows[g].append(((t0 + t1) / 2, t1 - t0, c, i, a))
            next_ns = max(next_ns + poll_us * 1000, time.monotonic_ns())  # late: no burst of catch-up polls
            # Sleep, never spin: a spinning poller would hold the GIL and starve the load thread.
            time.sleep(max(0.0, (next_ns - time.monotonic_ns()) * 1e-9))
    out = {}
    for g, r in rows.items():
        a = np.asarray(r, np.float64)
        # A call that took long (descheduled mid-call) is dated no better than its length: drop its values.
        slow = a[:, 1] > max(5 * float(np.median(a[:, 1])), SLOW_CALL_NS)
        a[slow, 2:] = np.nan
        out[g] = PolledStream(a[:, 0].astype(np.int64), a[:, 2], a[:, 3], a[:, 4])
    return out
