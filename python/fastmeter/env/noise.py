"""Warnings about conditions that add noise to an energy measurement, checked before a run.

Rules (each documented so a reader can tell why a warning fired):
- gpu-processes: a process other than this one holds a context on a GPU; it draws power we would count.
- load-average: the 1-minute load average exceeds max(1.0, 25% of the logical CPUs); other work competes
  for CPU time and adds CPU package power.
- gpu-warm: a GPU is above GPU_WARM_C (50 C). Idle data-centre GPUs sit around 25-40 C; a warmer one is still
  shedding heat from earlier work, and its power at the same load rises with temperature (leakage), so the
  first measurements differ from later ones. Wait for it to cool or run a deliberate warm-up.
- governor: a cpufreq policy whose governor is not "performance"; frequency then follows load, which changes
  both speed and CPU power during the run.
Items that are unavailable raise no warning: there is nothing to judge.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastmeter.env.fingerprint import Fingerprint
from fastmeter.env.readers import is_unavailable

GPU_WARM_C = 50
LOAD_FRACTION_OF_CPUS = 0.25
LOAD_FLOOR = 1.0


@dataclass(frozen=True)
class NoiseWarning:
    """`code` is one of gpu-processes, load-average, gpu-warm, governor; `message` is for people."""

    code: str
    message: str


def _gpu_warnings(fp: Fingerprint, own_pid: int) -> list[NoiseWarning]:
    gpu = fp["observed"].get("gpu")
    if not isinstance(gpu, dict):
        return []
    out = []
    for index, device in enumerate(gpu.get("devices", [])):
        procs = device.get("processes")
        if isinstance(procs, list):
            others = [p for p in procs if p.get("pid") != own_pid]
            if others:
                names = ", ".join(f"{p['pid']} ({p.get('name')})" for p in others)
                out.append(
                    NoiseWarning("gpu-processes", f"GPU {index} is in use by other processes: {names}")
                )
        temp_c = device.get("temperature_c")
        if isinstance(temp_c, (int, float)) and temp_c > GPU_WARM_C:
            out.append(
                NoiseWarning(
                    "gpu-warm",
                    f"GPU {index} is at {temp_c} C (> {GPU_WARM_C} C): still warm from earlier work; "
                    "let it cool or run a warm-up first",
                )
            )
    return out


def _load_warning(fp: Fingerprint) -> list[NoiseWarning]:
    load = fp["observed"].get("load_average")
    cpus = fp["controlled"].get("cpu", {}).get("logical_cpus")
    if is_unavailable(load) or not isinstance(load, list) or not isinstance(cpus, int):
        return []
    limit = max(LOAD_FLOOR, LOAD_FRACTION_OF_CPUS * cpus)
    if load[0] <= limit:
        return []
    return [
        NoiseWarning(
            "load-average",
            f"1-minute load average {load[0]:.2f} exceeds {limit:.2f} ({cpus} logical CPUs): "
            "other work is running on this machine",
        )
    ]


def _governor_warnings(fp: Fingerprint) -> list[NoiseWarning]:
    governors = fp["controlled"].get("cpu", {}).get("governors")
    if not isinstance(governors, dict):
        return []
    slow = sorted(
        {g for g in governors.values() if not is_unavailable(g) and g != "performance"},
    )
    if not slow:
        return []
    policies = [p for p, g in governors.items() if g in slow]
    return [
        NoiseWarning(
            "governor",
            f"cpufreq governor {', '.join(slow)} on {len(policies)} of {len(governors)} policies "
            "(not 'performance'): CPU frequency will follow load",
        )
    ]


def noise_warnings(fp: Fingerprint, own_pid: int | None = None) -> list[NoiseWarning]:
    """Noise warnings for a fingerprint; processes with pid `own_pid` (default: this process) are not 'other'."""
    pid = os.getpid() if own_pid is None else own_pid
    return _gpu_warnings(fp, pid) + _load_warning(fp) + _governor_warnings(fp)
