"""What every benchmark shares: result rows, repetition, the NVML emulator and the subprocess worker."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.emulators.nvml import FakeNvml, GpuSpec, Square, build_fake_nvml, default_cache_dir

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One measured quantity. `target` is (">=" | "<=", bound); verdict is PASS/MISS, never an assertion."""

    bench: str
    case: str
    metric: str
    value: float
    unit: str
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        op, bound = self.target
        ok = self.value >= bound if op == ">=" else self.value <= bound
        return "PASS" if ok else "MISS"

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["target"] = None if self.target is None else f"{self.target[0]} {self.target[1]:g}"
        d["verdict"] = self.verdict
        if math.isnan(self.value):
            d["value"] = None  # strict JSON has no NaN
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Row:
        target = None
        if d["target"]:
            op, bound = str(d["target"]).split()
            target = (op, float(bound))
        return cls(
            str(d["bench"]),
            str(d["case"]),
            str(d["metric"]),
            float("nan" if d["value"] is None else d["value"]),  # type: ignore[arg-type]
            str(d["unit"]),
            target,
            str(d["note"]),
        )


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


class Emulator:
    """The NVML emulator wired for this process (fastmeter: FASTMETER_NVML_LIBRARY + FAKE_NVML_CONFIG) and for
    subprocesses (pynvml: LD_LIBRARY_PATH on a directory holding a libnvidia-ml.so.1 symlink)."""

    def __init__(self, gpus: int = 2, *, counter_refresh_ms: float = 0.0) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fastmeter-bench-")
        library = build_fake_nvml(default_cache_dir())
        self.fake = FakeNvml(library, Path(self._tmp.name), os.environ.__setitem__)
        self.configure(
            [GpuSpec(waveform=Square(100.0, 400.0, 0.17, 0.3), counter_refresh_ms=counter_refresh_ms)] * gpus
        )

    def configure(self, gpus: Sequence[GpuSpec], t0_ns: int | None = None) -> list[GpuSpec]:
        return self.fake.configure(gpus, t0_ns=t0_ns)

    def env(self) -> dict[str, str]:
        return self.fake.subprocess_env()

    def close(self) -> None:
        for key in ("FASTMETER_NVML_LIBRARY", "FAKE_NVML_CONFIG"):
            os.environ.pop(key, None)
        self._tmp.cleanup()

    def __enter__(self) -> Emulator:  # noqa: PYI034 - Self needs Python 3.11; we support 3.10
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_worker(
    spec: dict[str, object],
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
    module: str = "benchmarks.worker",
) -> dict:
    """Runs a worker module in a fresh interpreter (pynvml must find the emulator at load time)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
