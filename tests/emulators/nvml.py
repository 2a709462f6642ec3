"""The NVML emulator for tests: build the fake libnvidia-ml, write its config, and model its values exactly.

The model mirrors fake_nvml_model.c operation for operation in IEEE doubles (the C is built with
-ffp-contract=off), so `GpuSpec.counter_mj(t_ns)` is the very integer the emulator reports at `t_ns`, and
`GpuSpec.energy_j(t0_ns, t1_ns)` is the true energy between two CLOCK_MONOTONIC instants.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
C_SOURCES = ("fake_nvml.c", "fake_nvml_model.c", "fake_nvml_file.c")
CFLAGS = ("-shared", "-fPIC", "-O2", "-ffp-contract=off", "-fvisibility=hidden", "-std=c11", "-D_GNU_SOURCE")
LDFLAGS = ("-Wl,-soname,libnvidia-ml.so.1", "-lm", "-lpthread")
VALUE_TYPES = ("double", "uint", "ulong", "ull", "sll", "sint", "ushort")


@dataclass(frozen=True)
class Constant:
    power_w: float

    def power_at(self, s: float) -> float:
        return self.power_w

    def energy_to(self, s: float) -> float:
        return self.power_w * s

    def directive(self) -> str:
        return f"power constant {self.power_w!r}"


@dataclass(frozen=True)
class Square:
    """high_w while frac(s / period_s) < duty, else low_w (s = seconds since the origin)."""

    low_w: float
    high_w: float
    period_s: float
    duty: float

    def power_at(self, s: float) -> float:
        x = s / self.period_s
        return self.high_w if x - math.floor(x) < self.duty else self.low_w

    def energy_to(self, s: float) -> float:
        cycles = float(math.floor(s / self.period_s))
        rem = s - cycles * self.period_s
        on = self.duty * self.period_s
        return self.low_w * s + (self.high_w - self.low_w) * (cycles * on + min(rem, on))

    def directive(self) -> str:
        return f"power square {self.low_w!r} {self.high_w!r} {self.period_s!r} {self.duty!r}"


@dataclass(frozen=True)
class Steps:
    """points = ((t_s, power_w), ...): power_w from t_s on; the first power also before the first t_s."""

    points: tuple[tuple[float, float], ...]

    def power_at(self, s: float) -> float:
        p = self.points[0][1]
        for t, w in self.points:
            if s < t:
                break
            p = w
        return p

    def _integral(self, s: float) -> float:
        ts, ws = [p[0] for p in self.points], [p[1] for p in self.points]
        if s <= ts[0]:
            return ws[0] * (s - ts[0])
        acc = 0.0
        for i in range(len(ts)):
            if i + 1 == len(ts) or s <= ts[i + 1]:
                return acc + ws[i] * (s - ts[i])
            acc += ws[i] * (ts[i + 1] - ts[i])
        return acc

    def energy_to(self, s: float) -> float:
        return self._integral(s) - self._integral(0.0)

    def directive(self) -> str:
        return "power steps " + " ".join(f"{t!r} {w!r}" for t, w in self.points)


@dataclass(frozen=True)
class FileSteps:
    """`power file <path>`: steps `<t_ns> <w>` appended live to `path` (tests/emulators/activity_server.py writes
    them); `origin_ns` must be the GPU's t0_ns. Reads the file at each evaluation, as the emulator follows it, and
    converts and sums exactly as fake_nvml_file.c does."""

    path: Path
    origin_ns: int

    def _steps(self) -> Steps | None:
        points, last = [], None
        for line in Path(self.path).read_text().splitlines():
            t_ns, w = line.split()
            if last is None or int(t_ns) > last:
                points.append((float(int(t_ns) - self.origin_ns) * 1e-9, float(w)))
                last = int(t_ns)
        return Steps(tuple(points)) if points else None

    def power_at(self, s: float) -> float:
        steps = self._steps()
        return steps.power_at(s) if steps else 0.0

    def energy_to(self, s: float) -> float:
        steps = self._steps()
        return steps.energy_to(s) if steps else 0.0

    def directive(self) -> str:
        return f"power file {self.path}"


Waveform = Constant | Square | Steps | FileSteps


def _ms_to_ns(ms: float) -> int:
    return math.floor(ms * 1e6 + 0.5)  # llround for the non-negative values used here


@dataclass(frozen=True)
class GpuSpec:
    """One emulated GPU. Field names match the config directives (see fake_nvml_model.c)."""

    name: str = "NVIDIA H200"
    uuid: str | None = None  # None: "GPU-00000000-0000-0000-0000-<index>" when written
    t0_ns: int | None = None  # waveform origin, CLOCK_MONOTONIC; None: the config's t0_ns
    waveform: Waveform = Constant(100.0)
    energy_offset_mj: int = 0
    counter_refresh_ms: float = 0.0
    power_refresh_ms: float = 0.0
    power_phase_ms: float = 0.0  # power refreshes this long after each counter refresh
    power_window_ms: float = 0.0
    average_window_ms: float = 1000.0
    power_delay_ms: float = 0.0  # a published power value describes [r - delay - window, r - delay]
    counter_delay_ms: float = 0.0  # the counter published at tc holds E(tc - delay)
    latency_us: int = 0
    fail_after_calls: tuple[int, int] | None = None  # (N calls, nvmlReturn code)
    stall_at_call: tuple[int, float] | None = None  # (N-th value call, ms it sleeps)
    refresh_jump: tuple[float, float] | None = None  # (at ms after t0, shift ms): refresh phase jump
    no_energy_counter: bool = False
    no_power_fields: bool = False
    no_instant_power: bool = False
    no_power_usage: bool = False
    no_field_values: bool = False
    field_types: tuple[str, str] = ("ull", "uint")  # (energy field 83, power fields 185/186)
    power_limit_w: float = 700.0
    arch: int = 9
    persistence: int = 1
    mig: tuple[int, int] | None = (0, 0)  # None: NOT_SUPPORTED
    temperature_c: int = 40
    utilization: tuple[int, int] = (0, 0)
    clocks_mhz: tuple[int, int, int] = (1980, 1980, 3201)
    max_clocks_mhz: tuple[int, int, int] = (1980, 1980, 3201)
    memory_mib: tuple[int, int] = (143771, 512)
    processes: tuple[tuple[int, int], ...] = ()  # (pid, used bytes)

    # --- analytic model (needs t0_ns set) ---
    def _s(self, t_ns: int, refresh_ms: float = 0.0) -> float:
        assert self.t0_ns is not None, "GpuSpec.t0_ns is set by write_config"
        dt = t_ns - self.t0_ns
        refresh_ns = _ms_to_ns(refresh_ms)
        if refresh_ns > 0:
            shift = 0
            if self.refresh_jump is not None and 0 < _ms_to_ns(self.refresh_jump[0]) <= dt:
                shift = _ms_to_ns(self.refresh_jump[1])
            dt = ((dt - shift) // refresh_ns) * refresh_ns + shift
        return float(dt) * 1e-9

    def power_w(self, t_ns: int) -> float:
        """True power at a CLOCK_MONOTONIC instant."""
        return self.waveform.power_at(self._s(t_ns))

    def energy_j(self, t0_ns: int, t1_ns: int) -> float:
        """True energy between two CLOCK_MONOTONIC instants."""
        return self.waveform.energy_to(self._s(t1_ns)) - self.waveform.energy_to(self._s(t0_ns))

    def counter_mj(self, t_ns: int) -> int:
        """The emulator's energy counter (field 83, nvmlDeviceGetTotalEnergyConsumption) at t_ns."""
        e_j = self.waveform.energy_to(self._s(t_ns, self.counter_refresh_ms) - self.counter_delay_ms * 1e-3)
        return max(0, self.energy_offset_mj + math.floor(e_j * 1000.0))

    def _mean_power_mw(self, t_ns: int, window_ms: float) -> float:
        phase_ns = _ms_to_ns(self.power_phase_ms)
        s = self._s(t_ns - phase_ns, self.power_refresh_ms) + float(phase_ns) * 1e-9 - self.power_delay_ms * 1e-3
        window_s = window_ms * 1e-3
        if window_s <= 0:
            return self.waveform.power_at(s) * 1000.0
        w = self.waveform
        return (w.energy_to(s) - w.energy_to(s - window_s)) / window_s * 1000.0

    def instant_power_mw(self, t_ns: int) -> float:
        """Field 186 before integer fields floor it: mean over power_window_ms at the latest power refresh."""
        return self._mean_power_mw(t_ns, self.power_window_ms)

    def average_power_mw(self, t_ns: int) -> float:
        """Field 185 / nvmlDeviceGetPowerUsage before flooring: mean over average_window_ms."""
        return self._mean_power_mw(t_ns, self.average_window_ms)

    def directives(self) -> list[str]:
        lines = [
            "gpu",
            f"name {self.name}",
            f"uuid {self.uuid}",
            f"t0_ns {self.t0_ns}",
            self.waveform.directive(),
        ]
        lines += [
            f"energy_offset_mj {self.energy_offset_mj}",
            f"counter_refresh_ms {self.counter_refresh_ms!r}",
            f"power_refresh_ms {self.power_refresh_ms!r}",
            f"power_phase_ms {self.power_phase_ms!r}",
            f"power_window_ms {self.power_window_ms!r}",
            f"average_window_ms {self.average_window_ms!r}",
            f"power_delay_ms {self.power_delay_ms!r}",
            f"counter_delay_ms {self.counter_delay_ms!r}",
            f"latency_us {self.latency_us}",
            f"field_types {self.field_types[0]} {self.field_types[1]}",
            f"power_limit_w {self.power_limit_w!r}",
            f"arch {self.arch}",
            f"persistence {self.persistence}",
            "mig unsupported" if self.mig is None else f"mig {self.mig[0]} {self.mig[1]}",
            f"temperature_c {self.temperature_c}",
            "utilization {} {}".format(*self.utilization),
            "clocks_mhz {} {} {}".format(*self.clocks_mhz),
            "max_clocks_mhz {} {} {}".format(*self.max_clocks_mhz),
            "memory_mib {} {}".format(*self.memory_mib),
        ]
        lines += [f"process {pid} {used}" for pid, used in self.processes]
        if self.fail_after_calls is not None:
            lines.append("fail_after_calls {} {}".format(*self.fail_after_calls))
        if self.refresh_jump is not None:
            lines.append(f"refresh_jump {self.refresh_jump[0]!r} {self.refresh_jump[1]!r}")
        if self.stall_at_call is not None:
            lines.append(f"stall_at_call {self.stall_at_call[0]} {self.stall_at_call[1]!r}")
        for flag in (
            "no_energy_counter",
            "no_power_fields",
            "no_instant_power",
            "no_power_usage",
            "no_field_values",
        ):
            if getattr(self, flag):
                lines.append(flag)
        return lines


def write_config(
    path: Path,
    gpus: Sequence[GpuSpec],
    *,
    t0_ns: int,
    driver: str = "550.54.15",
    cuda_driver: int = 12040,
    init_error: int = 0,
) -> list[GpuSpec]:
    """Write a FAKE_NVML_CONFIG file; returns the GPUs with uuid and t0_ns filled in (ready to model)."""
    if len(gpus) > 16:
        raise ValueError("the emulator holds at most 16 GPUs")
    resolved = [
        dataclasses.replace(
            g,
            uuid=g.uuid or f"GPU-00000000-0000-0000-0000-{i:012d}",
            t0_ns=t0_ns if g.t0_ns is None else g.t0_ns,
        )
        for i, g in enumerate(gpus)
    ]
    for g in resolved:
        if g.field_types[0] not in VALUE_TYPES or g.field_types[1] not in VALUE_TYPES:
            raise ValueError(f"field_types must be among {VALUE_TYPES}")
    lines = [f"driver {driver}", f"cuda_driver {cuda_driver}", f"t0_ns {t0_ns}"]
    if init_error:
        lines.append(f"init_error {init_error}")
    for g in resolved:
        lines += g.directives()
    Path(path).write_text("\n".join(lines) + "\n")
    return resolved


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"fastmeter-test-cache-{os.getuid()}"


def build_fake_nvml(out_dir: Path) -> Path:
    """Compile the emulator (cached by a hash of its sources and flags); returns the .so path."""
    digest = hashlib.sha256(repr((CFLAGS, LDFLAGS)).encode())
    for name in (*C_SOURCES, "fake_nvml.h"):
        digest.update((HERE / name).read_bytes())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"fake_nvml-{digest.hexdigest()[:16]}.so"
    if not lib.exists():
        tmp = out_dir / f"{lib.name}.{os.getpid()}.tmp"
        cmd = ["gcc", *CFLAGS, "-Wall", "-Wextra", "-Werror", "-o", str(tmp)]
        cmd += [str(HERE / s) for s in C_SOURCES] + list(LDFLAGS)
        built = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"building the NVML emulator failed:\n{built.stderr}")
        os.replace(tmp, lib)  # atomic: concurrent sessions never see a half-written library
    return lib


@dataclass
class FakeNvml:
    """A configured emulator for one test: fastmeter finds it through FASTMETER_NVML_LIBRARY, and a subprocess
    started with `subprocess_env()` finds it as libnvidia-ml.so.1 through LD_LIBRARY_PATH (pynvml)."""

    library: Path
    work_dir: Path
    setenv: Callable[[str, str], None]
    gpus: list[GpuSpec] = field(default_factory=list)
    t0_ns: int = 0  # set by configure

    def __post_init__(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.work_dir / "fake_nvml.conf"
        self.loader_dir = self.work_dir / "lib"
        self.loader_dir.mkdir(exist_ok=True)
        (self.loader_dir / "libnvidia-ml.so.1").symlink_to(self.library)
        self.setenv("FASTMETER_NVML_LIBRARY", str(self.library))
        self.setenv("FAKE_NVML_CONFIG", str(self.config_path))
        self.configure([GpuSpec()])

    def configure(self, gpus: Sequence[GpuSpec], *, t0_ns: int | None = None, **system: object) -> list[GpuSpec]:
        """Write the config (t0_ns defaults to now); the emulator reads it at the next nvmlInit."""
        self.t0_ns = t0_ns if t0_ns is not None else time.monotonic_ns()
        self.gpus = write_config(self.config_path, gpus, t0_ns=self.t0_ns, **system)  # type: ignore[arg-type]
        return self.gpus

    def subprocess_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.loader_dir), env.get("LD_LIBRARY_PATH")) if p)
        env["FAKE_NVML_CONFIG"] = str(self.config_path)
        return env
