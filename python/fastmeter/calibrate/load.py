"""GPU loads that play a calibration schedule and record when they actually ran (CLOCK_MONOTONIC ns).

Kinds: "cuda" (the spin kernel compiled into _core when the build found a CUDA toolkit), "torch" (matmuls through
torch.cuda), and "none" (test-only: plays nothing; the NVML emulator's configured waveform is the load, and its
schedule is read back from FAKE_NVML_CONFIG).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from fastmeter.calibrate.schedule import Schedule, square_schedule
from fastmeter.errors import CalibrationError, ConfigError, SourceUnavailableError

LOAD_KINDS = ("auto", "cuda", "torch", "none")


def _cuda_spin() -> object | None:
    from fastmeter import _core

    return getattr(_core, "calibrate_spin_ns", None)


def resolve_kind(kind: str) -> str:
    """auto: cuda when compiled in, else torch when importable, else a clear error."""
    if kind not in LOAD_KINDS:
        raise ConfigError(f"--load must be one of {', '.join(LOAD_KINDS)}")
    if kind in ("auto", "cuda") and _cuda_spin() is not None:
        return "cuda"
    if kind == "cuda":
        raise SourceUnavailableError(
            "this fastmeter build has no CUDA load; rebuild with nvcc on PATH "
            "(-Ccmake.define.FASTMETER_CUDA=ON) or use --load torch"
        )
    if kind == "none":
        return kind
    try:
        import torch
    except ImportError:
        raise SourceUnavailableError(
            "no GPU load available: build fastmeter with a CUDA toolkit or install PyTorch with CUDA (--load torch)"
        ) from None
    if not torch.cuda.is_available():
        raise SourceUnavailableError("PyTorch cannot see a CUDA GPU; check the driver and CUDA_VISIBLE_DEVICES")
    return "torch"


def _torch_player(gpu: int) -> tuple[object, object]:
    import torch

    dev = torch.device("cuda", gpu)
    a = torch.randn(4096, 4096, device=dev, dtype=torch.float16)
    b = torch.randn(4096, 4096, device=dev, dtype=torch.float16)

    def busy_until(end_ns: int) -> None:
        while time.monotonic_ns() < end_ns:
            for _ in range(8):  # a few ms of work per sync: the GPU stays busy while this thread awaits the GIL
                torch.matmul(a, b)
            torch.cuda.synchronize(dev)  # the off edge is recorded after this: when the GPU really stopped

    return busy_until, lambda: torch.cuda.synchronize(dev)


def _cuda_player(gpu: int) -> tuple[object, object]:
    spin = _cuda_spin()

    def busy_until(end_ns: int) -> None:
        spin(gpu, max(0, end_ns - time.monotonic_ns()))  # type: ignore[misc, operator]

    return busy_until, lambda: None


class LoadThread(threading.Thread):
    """Plays [(on_s, off_s)] on one GPU from start_ns; `schedule()` gives the on-intervals as they ran."""

    def __init__(self, kind: str, gpu: int, durations: list[tuple[float, float]], start_ns: int) -> None:
        super().__init__(name=f"fastmeter-calibrate-load-{gpu}", daemon=True)
        self.kind, self.gpu, self.durations, self.start_ns = kind, gpu, durations, start_ns
        self._on: list[int] = []
        self._off: list[int] = []
        self.error: Exception | None = None
        self._player = _torch_player(gpu) if kind == "torch" else _cuda_player(gpu)

    def run(self) -> None:
        busy_until, _ = self._player
        t_ns = float(self.start_ns)
        try:
            for on_s, off_s in self.durations:
                _sleep_until(round(t_ns))
                self._on.append(time.monotonic_ns())
                busy_until(round(t_ns + on_s * 1e9))  # type: ignore[operator]
                self._off.append(time.monotonic_ns())
                t_ns += (on_s + off_s) * 1e9
        except Exception as e:  # noqa: BLE001 - any failure is re-raised as CalibrationError by schedule()
            self.error = e

    def schedule(self) -> Schedule:
        if self.error is not None:
            raise CalibrationError(f"the GPU load failed on GPU {self.gpu}: {self.error}")
        return Schedule(np.array(self._on, np.int64), np.array(self._off, np.int64))


def _sleep_until(t_ns: int) -> None:
    remaining_s = (t_ns - time.monotonic_ns()) * 1e-9
    if remaining_s > 0:
        time.sleep(remaining_s)


def emulator_schedule(gpu: int, start_ns: int, end_ns: int) -> Schedule:
    """Test-only ("none" load): the on-intervals of GPU `gpu`'s waveform in FAKE_NVML_CONFIG. A `power square`
    is on while high; `power steps` is on where its power is the highest step value."""
    path = os.environ.get("FAKE_NVML_CONFIG")
    if not path:
        raise ConfigError("--load none observes the NVML emulator: set FAKE_NVML_CONFIG (tests only)")
    t0_ns, wave, index = None, None, -1
    for raw in Path(path).read_text().splitlines():
        tok = raw.split("#")[0].split()
        if tok[:1] == ["gpu"]:
            index += 1
        elif tok[:1] == ["t0_ns"] and index in (-1, gpu):
            t0_ns = int(tok[1])
        elif tok[:1] == ["power"] and index == gpu:
            wave = tok[1:]
    if t0_ns is None or wave is None or wave[0] not in ("square", "steps"):
        raise ConfigError(f"emulated GPU {gpu} needs t0_ns and a `power square` or `power steps` waveform")
    if wave[0] == "square":
        return square_schedule(t0_ns, float(wave[3]), float(wave[4]), start_ns, end_ns)
    t_s, w = np.array(wave[1::2], float), np.array(wave[2::2], float)
    high = w == w.max()
    starts = [i for i in range(len(w)) if high[i] and (i == 0 or not high[i - 1])]
    ends = [i + 1 for i in range(len(w)) if high[i] and (i + 1 == len(w) or not high[i + 1])]
    on = t0_ns + np.rint(t_s[starts] * 1e9).astype(np.int64)
    off = np.array([t0_ns + round(t_s[j] * 1e9) if j < len(w) else end_ns for j in ends], np.int64)
    return Schedule(on, off)
