"""How tight is each request's `uncertainty_j`, and does it always hold: random overlapping requests on an emulated
GPU whose energy counter refreshes every 100 ms (power = average of the last 25 ms, also every 100 ms, as FACTS.md
describes A100/H100) under a bursty square wave (100/400 W, 170 ms period, 30% duty).

Each round records a fresh Meter run, lays random requests (50 ms to 1.5 s, a one-token chunk every 10-30 ms) on
its clock and attributes them as `fastmeter bench` does (`bench.energy.attribute_requests` on the Meter's curve and
its error bound). The truth is the same attribution on the emulator's exact integral at the same cuts. Per method:
the median over requests of uncertainty / |true error| (how much the bound overstates the error actually made), of
uncertainty / energy, and the share of requests whose error lies inside (must be 100%); the same for the old
update-period heuristic (the Meter's curve with its bound withheld), which the bound replaces. The figure is the
median over rounds, the note gives the range.
"""

from __future__ import annotations

import math
import time

import numpy as np

import fastmeter
from benchmarks.common import Emulator, Row, median
from fastmeter.adapters.base import RequestRecord
from fastmeter.attribution import BoundedCurve
from fastmeter.bench.energy import attribute_requests, meter_curve
from tests.emulators.nvml import GpuSpec, Square

WAVE = Square(100.0, 400.0, 0.17, 0.3)
METHODS = ("time-share", "token-weighted")
MARGIN_NS = 300_000_000  # requests stay this far inside the record: its ends are provisional


def random_requests(rng: np.random.Generator, lo_ns: int, hi_ns: int, count: int) -> list[RequestRecord]:
    out = []
    for i in range(count):
        length = int(rng.uniform(0.05, 1.5) * 1e9)
        start = int(rng.integers(lo_ns, hi_ns - length))
        gaps = rng.uniform(10e6, 30e6, size=int(length / 10e6)).astype(np.int64)
        chunks = [int(t) for t in start + np.cumsum(gaps) if t <= start + length] or [start + length]
        out.append(
            RequestRecord(
                f"r{i}",
                send_ns=start,
                first_token_ns=chunks[0],
                end_ns=start + length,
                chunk_t_ns=chunks,
                chunk_tokens=[1] * len(chunks),
            )
        )
    return out


def one_round(em: Emulator, run_s: float, count: int, seed: int) -> dict[str, dict[str, float]]:
    (gpu,) = em.configure(
        [GpuSpec(waveform=WAVE, counter_refresh_ms=100.0, power_refresh_ms=100.0, power_window_ms=25.0)]
    )
    with fastmeter.Meter("nvml", 1000) as m:
        time.sleep(run_s)
    span = (m.start_ns + MARGIN_NS, m.stop_ns - MARGIN_NS)
    records = random_requests(np.random.default_rng(seed), *span, count)
    period_s = m.stats()["update_period_s"]["gpu0"]  # type: ignore[index]
    measured = meter_curve(m)

    def truth(t_ns: np.ndarray) -> BoundedCurve:
        return BoundedCurve(np.array([gpu.energy_j(span[0], int(t)) for t in t_ns]), np.zeros(len(t_ns)), {})

    def withheld(t_ns: np.ndarray) -> BoundedCurve:
        c = measured(t_ns)
        return BoundedCurve(c.energy_j, np.full(len(t_ns), math.nan), {})

    out = {}
    for method in METHODS:
        true_j = attribute_requests(truth, records, span, method, None, 0.0)[0].energy_j
        for kind, curve in (("bound", measured), ("heuristic", withheld)):
            a, info = attribute_requests(curve, records, span, method, None, period_s)
            assert info["uncertainty"] == kind
            err = np.abs(a.energy_j - true_j)
            ratio = [u / e if e > 0 else math.inf for u, e in zip(a.uncertainty_j, err)]
            out[f"{method}, {kind}"] = {
                "ratio": median(ratio),
                "relative": median(a.uncertainty_j / a.energy_j) * 100,
                "inside": float(np.mean(err <= a.uncertainty_j)) * 100,
            }
    return out


def run(quick: bool) -> list[Row]:
    rounds, run_s, count = (3, 3.0, 20) if quick else (5, 8.0, 60)
    with Emulator(gpus=1) as em:
        results = [one_round(em, run_s, count, seed) for seed in range(rounds)]
    rows = []
    for case in results[0]:
        spread = f"{rounds} rounds of {run_s:g} s, {count} requests each; range"
        for metric, label, unit, target in (
            ("ratio", "uncertainty / |true error| median", "x", None),
            ("relative", "uncertainty / energy median", "%", None),
        ):
            xs = [r[case][metric] for r in results]
            rows.append(
                Row("request_bound", case, label, median(xs), unit, target, f"{spread} {min(xs):.3g}-{max(xs):.3g}")
            )
        inside = [r[case]["inside"] for r in results]
        target = (">=", 100.0) if case.endswith("bound") else None
        rows.append(
            Row("request_bound", case, "requests whose error is inside", min(inside), "%", target, "worst round")
        )
    return rows
