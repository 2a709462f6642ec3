"""Drive the activity engine directly (no HTTP) under a real Meter on the NVML emulator, and score per-request
attribution against the engine's exact truth: shared by tests/integration/test_activity_truth.py and
benchmarks/bench_activity.py, so every method is compared on the same run, the same curve and the same requests.

A "client" here submits to the engine at real instants and observes each request as a streaming client would:
sent when submitted, first token and chunks at the instants the engine streams them, ended at its last token.
"""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import fastmeter
from fastmeter.activity import attribute_activity
from fastmeter.attribution import Attribution, attribute, bounded_total_curve
from fastmeter.bench.activity_energy import update_instants_ns
from tests.emulators.activity_server import ActivityEngine, PowerModel
from tests.emulators.nvml import FakeNvml, FileSteps, GpuSpec

SENSOR = {"counter_refresh_ms": 100.0, "power_refresh_ms": 100.0, "power_window_ms": 25.0}


@dataclass(frozen=True)
class Pattern:
    """A workload: closed loop at `concurrency` (or bursts of `burst` requests every `burst_gap_s`), prompts drawn
    from `prompt_tokens`, outputs from `output_tokens` (inclusive ranges)."""

    name: str
    n_requests: int
    concurrency: int = 8
    burst: int = 0
    burst_gap_s: float = 1.0
    prompt_tokens: tuple[tuple[int, int], ...] = ((8, 64), (800, 2000))
    output_tokens: tuple[int, int] = (4, 40)


@dataclass(frozen=True)
class Observed:
    start_ns: np.ndarray
    end_ns: np.ndarray
    first_ns: np.ndarray
    offsets: np.ndarray
    chunk_t_ns: np.ndarray
    chunk_tokens: np.ndarray
    prompt_tokens: np.ndarray
    ids: list[str]


@dataclass(frozen=True)
class Scores:
    """Per method: median over requests of |energy_j - truth| / truth, and of |prefill_energy_j - true prefill| /
    true energy (the split error); whether the activity fit was used, and its report."""

    per_request: dict[str, float]
    split: dict[str, float]
    fit_used: bool
    fit: dict
    activity: Attribution
    poll_gap_max_ms: float  # the sampler's longest gap between polls: a starved sampler places updates late
    covered: float  # share of requests whose activity error lies within their uncertainty_j


def drive(engine: ActivityEngine, pattern: Pattern, seed: int = 0) -> Observed:
    rng = random.Random(seed)
    obs: list[tuple[str, int, list[int], int]] = []
    busy: list[int] = []  # end instants of requests in flight (closed loop)
    next_burst = time.monotonic_ns()
    for i in range(pattern.n_requests):
        if pattern.burst:
            if i % pattern.burst == 0:
                _sleep_until(next_burst)
                next_burst = time.monotonic_ns() + round(pattern.burst_gap_s * 1e9)
        else:
            while len(busy) >= pattern.concurrency:
                _sleep_until(heapq.heappop(busy))
        lo, hi = rng.choice(pattern.prompt_tokens)
        prompt, out = rng.randint(lo, hi), rng.randint(*pattern.output_tokens)
        rid = f"{pattern.name}-{seed}-{i}"
        start = time.monotonic_ns()
        due = engine.submit(rid, prompt, out)
        obs.append((rid, start, due, prompt))
        heapq.heappush(busy, due[-1])
    _sleep_until(max(d[-1] for _, _, d, _ in obs) + 50_000_000)
    return Observed(
        start_ns=np.array([s for _, s, _, _ in obs], dtype=np.int64),
        end_ns=np.array([d[-1] for _, _, d, _ in obs], dtype=np.int64),
        first_ns=np.array([d[0] for _, _, d, _ in obs], dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum([len(d) for _, _, d, _ in obs])]).astype(np.int64),
        chunk_t_ns=np.array([t for _, _, d, _ in obs for t in d], dtype=np.int64),
        chunk_tokens=np.ones(sum(len(d) for _, _, d, _ in obs), dtype=np.int64),
        prompt_tokens=np.array([p for *_, p in obs], dtype=np.int64),
        ids=[rid for rid, *_ in obs],
    )


def _sleep_until(t_ns: int) -> None:
    time.sleep(max(0.0, (t_ns - time.monotonic_ns()) * 1e-9))


def measure(
    fake_nvml: FakeNvml, work_dir: Path, pattern: Pattern, *, model: PowerModel = PowerModel(), seed: int = 0
) -> tuple[Scores, ActivityEngine]:
    """One run: engine + emulator (100 ms counter, 25 ms power windows) + Meter at 1 kHz; all three methods on the
    Meter's curve at the same cuts; errors against the engine's truth."""
    slug = "".join(c if c.isalnum() else "-" for c in pattern.name)  # the config directive splits on blanks
    engine = ActivityEngine(work_dir / f"power-{slug}-{seed}.txt", model, seed=seed)
    spec = GpuSpec(waveform=FileSteps(engine.power_file, engine.t0_ns), **SENSOR)
    fake_nvml.configure([spec], t0_ns=engine.t0_ns)
    engine.start()
    try:
        with fastmeter.Meter(sources="nvml", period_us=1000) as meter:
            time.sleep(0.3)  # a few counter updates before the first request: the span starts measured
            obs = drive(engine, pattern, seed)
            span = (int(obs.start_ns.min()), int(obs.end_ns.max()))
            knots = update_instants_ns(meter, span, {})
            events = np.unique(np.concatenate([span, obs.start_ns, obs.end_ns, obs.chunk_t_ns, knots]))
            curve = bounded_total_curve(meter, events)
        gap_ms = float(meter.stats()["poll_gap_max_ns"]) * 1e-6  # type: ignore[arg-type]
    finally:
        engine.stop()
    common = (events, curve.energy_j, obs.start_ns, obs.end_ns, obs.first_ns)
    chunks = {"chunk_offsets": obs.offsets, "chunk_t_ns": obs.chunk_t_ns, "chunk_tokens": obs.chunk_tokens}
    got = {
        m: attribute(*common, **chunks, method=m, update_period_s=0.1, bound_j=curve.bound_j)
        for m in ("time-share", "token-weighted")
    }
    act = attribute_activity(
        events, curve.energy_j, knots, *common[2:], **chunks, prompt_tokens=obs.prompt_tokens, bound_j=curve.bound_j
    )
    got["activity"] = act.attribution
    truth = [engine.truth(rid) for rid in obs.ids]
    true_e = np.array([t.energy_j for t in truth])
    true_pre = np.array([t.prefill_energy_j for t in truth])
    per_request = {m: float(np.median(np.abs(a.energy_j - true_e) / true_e)) for m, a in got.items()}
    # Energy put on the wrong side of the first token, relative to the request's energy.
    split = {m: float(np.median(np.abs(a.prefill_energy_j - true_pre) / true_e)) for m, a in got.items()}
    fit = act.fit
    covered = float(np.mean(np.abs(act.attribution.energy_j - true_e) <= act.attribution.uncertainty_j))
    return Scores(per_request, split, fit.rejected is None, fit.to_dict(), act.attribution, gap_ms, covered), engine
