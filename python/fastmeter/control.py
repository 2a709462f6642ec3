"""Optional GPU control for a run (`--lock-clocks MHz`, `--power-limit W`): set before the run, restored after it,
whatever ends it (normal end, an error, SIGINT/SIGTERM, which the recorders turn into a normal return), and recorded
with the run. Only when asked for and permitted: NVML refuses without root, and that refusal is one clear error
before anything is measured. A SIGKILL cannot be caught: the settings then stay until `nvidia-smi -rgc` /
`nvidia-smi -pl <default>` or a reboot (the record says what was set).

Locked clocks cannot be read back through NVML, so the locks this process set are kept in `LOCKED_CLOCKS_MHZ` and
the fingerprint reports them from there (env/gpu_extra.py).
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastmeter.errors import FastmeterError

# GPU index -> the clock lock (MHz) this process has in force; emptied as locks are released.
LOCKED_CLOCKS_MHZ: dict[int, int] = {}
_NO_PERMISSION = 4


class ControlError(FastmeterError):
    """A GPU setting could not be applied (or restored); the message says what to do."""


@dataclass(frozen=True)
class ControlRequest:
    """What to set on each selected GPU (all GPUs when `gpus` is empty); None leaves a setting alone."""

    lock_clocks_mhz: int | None = None
    power_limit_w: float | None = None
    gpus: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.lock_clocks_mhz is None and self.power_limit_w is None


@dataclass
class GpuControl:
    """Context manager: applies `request` on entry (undoing any part already applied if a later one fails) and
    restores every change on exit. `record()` is what goes into the run's metadata."""

    request: ControlRequest
    _nv: Any = None
    _applied: list[tuple[str, int, Any]] = field(default_factory=list)  # (what, gpu index, previous value)
    _restored: bool = False
    _restore_errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _previous_handlers: dict[int, Any] = field(default_factory=dict)

    def __enter__(self) -> GpuControl:
        if self.request.empty:
            return self
        from fastmeter.env.gpu import _load_pynvml, _Unavailable

        why = "--lock-clocks/--power-limit need NVML, which cannot be used here"
        try:
            self._nv = _load_pynvml()
        except _Unavailable as e:
            raise ControlError(f"{why}: {e}") from None
        try:
            self._nv.nvmlInit()
        except self._nv.NVMLError as e:
            self._nv = None
            raise ControlError(f"{why}: {e}") from None
        atexit.register(self.restore)  # backstop for exits that skip __exit__
        self._catch_signals()
        try:
            for index in self._indices():
                self._apply(index)
        except BaseException:
            self.restore()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
        if self._restore_errors and exc[0] is None:
            raise ControlError("; ".join(self._restore_errors))

    def _catch_signals(self) -> None:
        """Until restore: SIGTERM and SIGHUP, whose default action kills the process without unwinding, become
        SystemExit(128 + N), so the settings are restored on the way out. (SIGINT already raises
        KeyboardInterrupt.) A recorder's own handlers take over while it runs and hand these back after."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is signal.SIG_DFL:
                self._previous_handlers[signum] = signal.signal(signum, _exit_on_signal)

    def _release_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _indices(self) -> list[int]:
        nv = self._nv
        count = nv.nvmlDeviceGetCount()
        if not self.request.gpus:
            return list(range(count))
        uuids = [nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        out = []
        for g in self.request.gpus:
            if g.isdigit() and int(g) < count:
                out.append(int(g))
            elif g in uuids:
                out.append(uuids.index(g))
            else:
                raise ControlError(f"--gpu {g}: no such GPU; use an index below {count} or a UUID")
        return out

    def _apply(self, index: int) -> None:
        nv, req = self._nv, self.request
        h = nv.nvmlDeviceGetHandleByIndex(index)
        if req.power_limit_w is not None:
            previous_mw = self._call(index, "read the power limit", nv.nvmlDeviceGetPowerManagementLimit, h)
            lo_mw, hi_mw = self._call(
                index, "read the power limit range", nv.nvmlDeviceGetPowerManagementLimitConstraints, h
            )
            want_mw = round(req.power_limit_w * 1000)
            if not lo_mw <= want_mw <= hi_mw:
                raise ControlError(
                    f"--power-limit {req.power_limit_w:g} W is outside GPU {index}'s range "
                    f"{lo_mw / 1000:g}-{hi_mw / 1000:g} W; choose a limit inside it"
                )
            self._call(index, "set the power limit", nv.nvmlDeviceSetPowerManagementLimit, h, want_mw)
            self._applied.append(("power_limit", index, previous_mw))
        if req.lock_clocks_mhz is not None:
            mhz = int(req.lock_clocks_mhz)
            self._call(index, "lock the GPU clocks", nv.nvmlDeviceSetGpuLockedClocks, h, mhz, mhz)
            self._applied.append(("locked_clocks", index, None))
            LOCKED_CLOCKS_MHZ[index] = mhz

    def _call(self, index: int, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nv.NVMLError as e:
            if getattr(e, "value", None) == _NO_PERMISSION:
                raise ControlError(
                    f"not permitted to {what} of GPU {index} (NVML: {e}): GPU settings need root; run as root, "
                    "or leave out --lock-clocks/--power-limit"
                ) from None
            raise ControlError(f"cannot {what} of GPU {index}: NVML: {e}") from None

    def restore(self) -> None:
        """Undo every applied change, newest first; safe to call twice and from atexit."""
        with self._lock:
            if self._restored or self._nv is None:
                return
            self._restored = True
            nv = self._nv
            for what, index, previous in reversed(self._applied):
                try:
                    h = nv.nvmlDeviceGetHandleByIndex(index)
                    if what == "locked_clocks":
                        nv.nvmlDeviceResetGpuLockedClocks(h)
                        LOCKED_CLOCKS_MHZ.pop(index, None)
                    else:
                        nv.nvmlDeviceSetPowerManagementLimit(h, previous)
                except nv.NVMLError as e:
                    self._restore_errors.append(
                        f"could not restore the {what.replace('_', ' ')} of GPU {index} (NVML: {e}); reset it with "
                        + ("`nvidia-smi -rgc`" if what == "locked_clocks" else f"`nvidia-smi -pl {previous / 1000:g}`")
                    )
            with contextlib.suppress(nv.NVMLError):
                nv.nvmlShutdown()
        atexit.unregister(self.restore)
        self._release_signals()

    def record(self) -> dict[str, Any] | None:
        """What was set and what it replaced (None when nothing was asked). Written while the settings hold; a
        failed restore is not recorded here but raised from __exit__ (one error naming the nvidia-smi fix)."""
        if self.request.empty:
            return None
        return {
            "lock_clocks_mhz": self.request.lock_clocks_mhz,
            "power_limit_w": self.request.power_limit_w,
            "gpus": sorted({index for _, index, _ in self._applied}),
            "previous_power_limit_w": {
                str(index): prev / 1000 for what, index, prev in self._applied if what == "power_limit"
            },
        }


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def control_request(
    lock_clocks_mhz: int | None, power_limit_w: float | None, gpus: Sequence[str] = ()
) -> ControlRequest:
    """The validated request from flags: one clear error for a value that cannot be meant."""
    if lock_clocks_mhz is not None and not 0 < lock_clocks_mhz <= 10_000:
        raise ControlError(f"--lock-clocks {lock_clocks_mhz} is not a GPU clock; give MHz, e.g. 1410")
    if power_limit_w is not None and not 0 < power_limit_w <= 10_000:
        raise ControlError(f"--power-limit {power_limit_w:g} is not a GPU power limit; give watts, e.g. 400")
    return ControlRequest(lock_clocks_mhz, power_limit_w, tuple(str(g) for g in gpus))
