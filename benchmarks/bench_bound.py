"""How tight is the error bound, and is the truth always inside it: fastmeter spans on an emulated GPU whose energy
counter refreshes every 100 ms (instant power = average of the last 25 ms, also every 100 ms, as FACTS.md describes
A100/H100) under a bursty square wave (100/400 W, 170 ms period, 30% duty), against the emulator's exact integral.

Per window length: the median relative bound (bound / true energy), the median of bound / |true error| (how much
the bound overstates the error actually made), and the share of spans whose truth lies inside the bound (must be
100%). Each round is a fresh Meter run; the figure is the median over rounds, the note gives the range.
"""

from __future__ import annotations

import math
import time

import numpy as np

import fastmeter
from benchmarks.common import Emulator, Row, median
from tests.emulators.nvml import GpuSpec, Square

WAVE = Square(100.0, 400.0, 0.17, 0.3)
WINDOWS_MS = {10: 200, 100: 100, 1000: 30}  # window length -> spans per round


def one_round(em: Emulator, run_s: float, seed: int) -> dict[int, tuple[float, float, float]]:
    (gpu,) = em.configure(
        [GpuSpec(waveform=WAVE, counter_refresh_ms=100.0, power_refresh_ms=100.0, power_window_ms=25.0)]
    )
    with fastmeter.Meter("nvml", 1000) as m:
        time.sleep(run_s)
    rng = np.random.default_rng(seed)
    out = {}
    for length_ms, count in WINDOWS_MS.items():
        length_ns = length_ms * 1_000_000
        rel, ratio, inside = [], [], 0
        t0s = rng.integers(m.start_ns + 300_000_000, m.stop_ns - 300_000_000 - length_ns, count)
        for t0 in map(int, t0s):
            span = m.span(t0, t0 + length_ns)
            value, bound = span.energy_j["gpu0"], span.bound_j["gpu0"]
            truth = gpu.energy_j(t0, t0 + length_ns)
            err = abs(value - truth)
            inside += err <= bound
            rel.append(bound / truth)
            ratio.append(bound / err if err > 0 else math.inf)
        out[length_ms] = (median(rel), median(ratio), inside / count)
    return out


def run(quick: bool) -> list[Row]:
    rounds, run_s = (3, 2.5) if quick else (5, 6.0)
    with Emulator(gpus=1) as em:
        results = [one_round(em, run_s, seed) for seed in range(rounds)]
    rows = []
    for length_ms in WINDOWS_MS:
        case = f"100 ms counter, {length_ms} ms windows"
        rel = [r[length_ms][0] * 100 for r in results]
        ratio = [r[length_ms][1] for r in results]
        inside = [r[length_ms][2] * 100 for r in results]
        spread = f"{rounds} rounds of {run_s:g} s, {WINDOWS_MS[length_ms]} spans each; range"
        rows += [
            Row(
                "bound",
                case,
                "relative bound median",
                median(rel),
                "%",
                None,
                f"{spread} {min(rel):.3g}-{max(rel):.3g}",
            ),
            Row(
                "bound",
                case,
                "bound / |true error| median",
                median(ratio),
                "x",
                None,
                f"{spread} {min(ratio):.3g}-{max(ratio):.3g}",
            ),
            Row("bound", case, "truth inside the bound", min(inside), "%", (">=", 100.0), "worst round"),
        ]
    return rows
