"""Window energy error on a stepped counter as a function of the power sensor's phase: fastmeter (`Meter.span` on
1 kHz polls) vs Zeus (the counter read at the window's edges), in the same windows of the same runs.

Every emulated GPU is an A100/H100-like sensor (FACTS.md): an energy counter that refreshes every 100 ms and an
instant power that is the mean of the last 25 ms, refreshed every 100 ms but `power_phase_ms` after the counter.
GPU k of the bursty set runs at phase 10k ms (0..90) under a square wave (100/400 W, 170 ms period, 30% duty); two
more run a steady 300 W at phases 0 and 50 ms. One round is a fresh interpreter (`accuracy_worker.py`) in which Zeus
opens windows of 10 ms, 100 ms, 1 s and 10 s at random instants (so at random placements relative to the counter's
refreshes) while fastmeter samples; each window is then measured at every phase at once, and rounds are sequential
runs of every phase together. A second part of each round is the reference without any refresh grid: one GPU with
a continuous counter under the bursty load, windows of 1 ms to 1 s. Per (case, length): the median over rounds of
each round's median and p90 |error| (range across rounds), the median bound / |true error| of
`Meter.span(...).bound_j`, and the median error by where the window starts within the counter's 100 ms interval.

Writes accuracy-<date>.json and accuracy-<date>.png to benchmarks/results (build/benchmarks with --quick).
"""

from __future__ import annotations

import datetime
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, Emulator, Row, median, run_worker
from tests.emulators.nvml import Constant, GpuSpec, Square

BURSTY = Square(100.0, 400.0, 0.17, 0.3)
STEADY = Constant(300.0)
COUNTER_MS, POWER_WINDOW_MS = 100.0, 25.0
PHASES_MS = tuple(range(0, 100, 10))
STEADY_PHASES_MS = (0, 50)
# Per part: round length and window length (s, as text) -> windows per round. The continuous counter is the
# reference without any refresh grid (one GPU, so Zeus reads one counter at each edge, as a user with one GPU would).
FULL = {
    "rounds": 5,
    "stepped": {"round_s": 40.0, "windows": {"0.01": 300, "0.1": 300, "1.0": 100, "10.0": 20}},
    "continuous": {"round_s": 10.0, "windows": {"0.001": 200, "0.01": 200, "0.1": 100, "1.0": 20}},
}
QUICK = {
    "rounds": 1,
    "stepped": {"round_s": 4.0, "windows": {"0.01": 30, "0.1": 30, "1.0": 5}},
    "continuous": {"round_s": 2.0, "windows": {"0.001": 20, "0.01": 20, "0.1": 5}},
}
WARMUP_S = 0.5  # the meter sees a few counter refreshes before the first window opens
SMALL_SAMPLE = 15  # windows per length that the README's earlier 100 ms figure rested on (one round)
PLACEMENT_BINS = 10  # window start within the counter's interval, in bins of COUNTER_MS / PLACEMENT_BINS


@dataclass(frozen=True)
class Case:
    load: str  # "bursty" | "steady"
    phase_ms: int | None  # None: a continuous counter and power exact at every poll (no refresh grid)

    def spec(self) -> GpuSpec:
        waveform = BURSTY if self.load == "bursty" else STEADY
        if self.phase_ms is None:
            return GpuSpec(waveform=waveform)
        return GpuSpec(
            waveform=waveform,
            counter_refresh_ms=COUNTER_MS,
            power_refresh_ms=COUNTER_MS,
            power_window_ms=POWER_WINDOW_MS,
            power_phase_ms=float(self.phase_ms),
        )

    @property
    def label(self) -> str:
        return f"{self.load}, continuous counter" if self.phase_ms is None else f"{self.load}, phase {self.phase_ms} ms"


PARTS = {
    "stepped": [Case("bursty", p) for p in PHASES_MS] + [Case("steady", p) for p in STEADY_PHASES_MS],
    "continuous": [Case("bursty", None)],
}


def size_label(size_s: float) -> str:
    return f"{size_s * 1e3:g} ms" if size_s < 1 else f"{size_s:g} s"


def pct(x: float) -> str:
    return f"{x:.3g}%"


@dataclass
class RoundErrors:
    """One round, one (case, window length): |relative error| in % per tool, bound ratios, placement bins."""

    fastmeter: list[float]
    zeus: list[float]
    bound_ratio: list[float]  # bound / |fastmeter error|, windows with a nonzero error
    relative_bound: list[float]  # bound / true energy, %
    placement: list[tuple[int, float]]  # (bin of the window's start in the counter interval, fastmeter error %)
    failed: int = 0
    inside: int = 0  # windows whose truth lies within fastmeter's bound


def one_round(
    em: Emulator, cases: list[Case], config: dict, seed: int
) -> tuple[dict[tuple[Case, float], RoundErrors], dict]:
    gpus = em.configure([c.spec() for c in cases])
    load_before = os.getloadavg()
    spec = {"gpus": len(cases), "round_s": config["round_s"], "windows": config["windows"], "seed": seed}
    spec["warmup_s"] = WARMUP_S
    result = run_worker(spec, em.env(), timeout_s=config["round_s"] + 120, module="benchmarks.accuracy_worker")
    out: dict[tuple[Case, float], RoundErrors] = defaultdict(lambda: RoundErrors([], [], [], [], []))
    interval_ns = round(COUNTER_MS * 1e6)
    for length_s, t0, t1, zeus_j, fm_j, bound_j in result["windows"]:
        for g, (case, gpu) in enumerate(zip(cases, gpus)):
            e = out[(case, length_s)]
            truth = gpu.energy_j(t0, t1)
            if zeus_j is not None:
                e.zeus.append(abs(zeus_j[g] - truth) / truth * 100)
            if fm_j[g] is None:
                e.failed += 1
                continue
            err = abs(fm_j[g] - truth)
            e.fastmeter.append(err / truth * 100)
            if bound_j[g] is not None:
                e.relative_bound.append(bound_j[g] / truth * 100)
                e.inside += err <= bound_j[g]
                if err > 0:
                    e.bound_ratio.append(bound_j[g] / err)
            if case.phase_ms is not None:
                where = (t0 - gpu.t0_ns) % interval_ns * PLACEMENT_BINS // interval_ns
                e.placement.append((int(where), err / truth * 100))
    meta = {"load_avg_before": load_before, "load_avg_after": os.getloadavg(), "sampler": result["stats"]}
    meta["skipped"] = result["skipped"]
    return out, meta


def q(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) if xs else math.nan


def small_sample_spread(errors: list[float], seed: int = 0) -> list[float]:
    """5th and 95th percentile of the median of SMALL_SAMPLE windows drawn (with replacement) from `errors`."""
    if not errors:
        return [math.nan, math.nan]
    draws = np.random.default_rng(seed).choice(errors, (2000, SMALL_SAMPLE))
    medians = np.median(draws, axis=1)
    return [float(np.percentile(medians, 5)), float(np.percentile(medians, 95))]


def summarize(rounds: list[dict[tuple[Case, float], RoundErrors]]) -> list[dict]:
    """Per (case, length): each statistic per round, then the median over rounds and the range."""
    table = []
    for key in rounds[0]:
        case, length_s = key
        per = [r[key] for r in rounds]

        def over(f, per=per):  # noqa: ANN001, ANN202 - a statistic of one round -> [median, min, max] over rounds
            vals = [f(e) for e in per]
            vals = [v for v in vals if not math.isnan(v)]
            return [median(vals), min(vals), max(vals)] if vals else [math.nan] * 3

        bins = [[err for b, err in (p for e in per for p in e.placement) if b == k] for k in range(PLACEMENT_BINS)]
        table.append(
            {
                "label": case.label,
                "load": case.load,
                "phase_ms": case.phase_ms,
                "length_s": length_s,
                "windows_per_round": len(per[0].fastmeter) + per[0].failed,
                "failed": sum(e.failed for e in per),
                "fastmeter_median_pct": over(lambda e: q(e.fastmeter, 50)),
                "fastmeter_p90_pct": over(lambda e: q(e.fastmeter, 90)),
                "zeus_median_pct": over(lambda e: q(e.zeus, 50)),
                "zeus_p90_pct": over(lambda e: q(e.zeus, 90)),
                "bound_over_error_median": over(lambda e: q(e.bound_ratio, 50)),
                "relative_bound_median_pct": over(lambda e: q(e.relative_bound, 50)),
                "truth_inside_bound_pct": over(
                    lambda e: 100 * e.inside / len(e.fastmeter) if e.fastmeter else math.nan
                ),
                # what a small sample could have shown: the median of SMALL_SAMPLE windows drawn from this pool
                "fastmeter_small_sample_median_5_95_pct": small_sample_spread([x for e in per for x in e.fastmeter]),
                # pooled over rounds: the median fastmeter error of windows starting in each tenth of the interval
                "fastmeter_median_pct_by_start": [q(b, 50) for b in bins],
            }
        )
    return table


def rows_of(table: list[dict], rounds: int) -> list[Row]:
    rows: list[Row] = []
    lengths = sorted({t["length_s"] for t in table})
    span = f"median of {rounds} rounds"
    for length_s in lengths:
        at = [t for t in table if t["length_s"] == length_s]
        bursty = [t for t in at if t["load"] == "bursty" and t["phase_ms"] is not None]
        for tool in ("fastmeter", "zeus"):
            meds = [t[f"{tool}_median_pct"][0] for t in bursty]
            if not bursty or all(math.isnan(m) for m in meds):
                continue
            worst = max(bursty, key=lambda t, tool=tool: t[f"{tool}_median_pct"][0])
            case = f"bursty, {size_label(length_s)} windows, phases 0-90 ms"
            rows.append(Row("accuracy", case, f"{tool} |error| median over phases", median(meds), "%", None, span))
            w = worst[f"{tool}_median_pct"]
            note = f"phase {worst['phase_ms']} ms; {span}, range {pct(w[1])}-{pct(w[2])}"
            rows.append(Row("accuracy", case, f"{tool} |error| median, worst phase", w[0], "%", None, note))
        for t in at:
            case = f"{t['label']}, {size_label(length_s)} windows"
            fm, z, r = t["fastmeter_median_pct"], t["zeus_median_pct"], t["bound_over_error_median"]
            note = (
                f"{span}, range {pct(fm[1])}-{pct(fm[2])}; p90 {pct(t['fastmeter_p90_pct'][0])}; "
                f"zeus {pct(z[0])} (p90 {pct(t['zeus_p90_pct'][0])}); bound/|error| {r[0]:.3g}x; "
                f"{t['windows_per_round']} windows/round, {t['failed']} failed"
            )
            rows.append(Row("accuracy", case, "fastmeter |error| median", fm[0], "%", None, note))
    return rows


def run(quick: bool) -> list[Row]:
    from benchmarks.run import code_version  # run.py imports this module lazily: no cycle at load time

    config = QUICK if quick else FULL
    started = datetime.datetime.now(datetime.timezone.utc)
    results = []
    with Emulator(gpus=1) as em:
        for seed in range(config["rounds"]):  # each round runs every part, so parts interleave across rounds
            parts = [one_round(em, cases, config[name], seed) for name, cases in PARTS.items()]
            results.append(({k: v for r, _ in parts for k, v in r.items()}, {n: m for n, (_, m) in zip(PARTS, parts)}))
    table = summarize([r for r, _ in results])
    rows = rows_of(table, config["rounds"])
    for tool, why in results[0][1]["stepped"]["skipped"].items():
        rows.append(Row("accuracy", "all cases", f"{tool} skipped", math.nan, "", None, why))
    out_dir = ROOT / ("build/benchmarks" if quick else "benchmarks/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"accuracy-{started.date().isoformat()}"
    report = {
        "started_utc": started.isoformat(timespec="seconds"),
        "quick": quick,
        "code": code_version(),
        "config": {**config, "phases_ms": PHASES_MS, "steady_phases_ms": STEADY_PHASES_MS},
        "sensor": {
            "counter_refresh_ms": COUNTER_MS,
            "power_refresh_ms": COUNTER_MS,
            "power_window_ms": POWER_WINDOW_MS,
        },
        "loads": {"bursty": BURSTY.directive(), "steady": STEADY.directive()},
        "rounds": [m for _, m in results],
        "table": table,
    }
    write_json(stem.with_suffix(".json"), report)
    from benchmarks.accuracy_figure import draw  # matplotlib only here: the rows above never need it

    why = draw(table, stem.with_suffix(".png"))
    if why:
        rows.append(Row("accuracy", "figure", "png skipped", math.nan, "", None, why))
    return rows


def write_json(path: Path, report: dict) -> None:
    import json

    def clean(x: object) -> object:  # strict JSON has no NaN
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(report), indent=1) + "\n")
    os.replace(tmp, path)
