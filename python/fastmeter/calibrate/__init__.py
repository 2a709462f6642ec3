"""Sensor calibration: play a jittered square load on each GPU, poll NVML fields 83/186/185 fast, and estimate
each field's update period, averaging window and delay, plus counter vs integrated-power agreement."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import fastmeter
from fastmeter.calibrate.estimate import calibrate_gpu
from fastmeter.calibrate.load import LoadThread, emulator_schedule, resolve_kind
from fastmeter.calibrate.poll import NvmlFields, poll
from fastmeter.calibrate.result import (
    SCHEMA,
    default_calibration_path,
    field_delay_ns,
    load_calibration,
    save_calibration,
)
from fastmeter.calibrate.schedule import jittered_square
from fastmeter.errors import SourceUnavailableError

LEAD_S = 1.5  # idle polling before the load starts: the 1 s average field needs an idle past to compare with


def run_calibration(
    gpus: list[int] | None = None,
    *,
    period_ms: float = 400.0,
    duty: float = 0.5,
    duration_s: float = 10.0,
    poll_us: int = 500,
    load: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Runs the load and the poller together; returns a result in the SCHEMA format."""
    # The GPU first: without one, advice on how to load it (build with CUDA, install torch) would mislead.
    with NvmlFields() as nvml:
        if nvml.count() == 0:
            raise SourceUnavailableError("no NVIDIA driver/GPU found: NVML sees no GPU (`nvidia-smi -L` lists none)")
        indices = list(range(nvml.count())) if not gpus else list(gpus)
        identity = {g: nvml.identity(g) for g in indices}
    kind = resolve_kind(load)
    durations = jittered_square(period_ms, duty, duration_s, seed)
    lead_s = 0.0 if kind == "none" else LEAD_S
    start_ns = time.monotonic_ns() + round(lead_s * 1e9)
    threads = [] if kind == "none" else [LoadThread(kind, g, durations, start_ns) for g in indices]
    for t in threads:
        t.start()
    streams = poll(indices, lead_s + duration_s, poll_us)
    for t in threads:
        t.join()
    gpus_out = []
    for i, g in enumerate(indices):
        s = streams[g]
        sched = threads[i].schedule() if threads else emulator_schedule(g, int(s.t_ns[0]) - 2 * 10**9, int(s.t_ns[-1]))
        est = calibrate_gpu(s.t_ns, s.counter_mj, s.instant_w, s.average_w, sched)
        gpus_out.append(
            {
                "index": g,
                **identity[g],
                "n_polls": int(s.t_ns.size),
                "poll_interval_us": float(np.median(np.diff(s.t_ns))) * 1e-3,
                **est,
            }
        )
    return {
        "schema": SCHEMA,
        "created_unix_s": time.time(),
        "fastmeter_version": fastmeter.__version__,
        "load": {
            "kind": kind,
            "period_ms": period_ms,
            "duty": duty,
            "duration_s": duration_s,
            "poll_us": poll_us,
            "seed": seed,
        },
        "gpus": gpus_out,
    }


__all__ = [
    "SCHEMA",
    "default_calibration_path",
    "field_delay_ns",
    "load_calibration",
    "run_calibration",
    "save_calibration",
]
