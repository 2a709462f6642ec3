"""Sweeps: one benchmark point per concurrency or rate, ending with tokens/J against latency and the best
operating point that meets the latency SLOs (the highest tokens/J among points whose p99s are within them)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastmeter.bench.point import BenchHooks, run_point
from fastmeter.bench.run_files import prepare_run_dir, write_run_json
from fastmeter.bench.summary import bunched_note
from fastmeter.load.config import BenchConfig, BenchSettings, config_to_dict
from fastmeter.validity import Validity, Verdict, combine


def sweep_points(cfg: BenchConfig) -> list[tuple[str, BenchConfig]]:
    """(label, config) per point; a single point when no sweep is configured."""
    b = cfg.bench
    if b.sweep_concurrency:
        return [(f"concurrency-{c}", replace(cfg, load=replace(cfg.load, concurrency=c))) for c in b.sweep_concurrency]
    if b.sweep_rate:
        return [(f"rate-{r:g}", replace(cfg, load=replace(cfg.load, rate=r))) for r in b.sweep_rate]
    return [("run", cfg)]


def meets_slo(summary: dict[str, Any], b: BenchSettings) -> bool:
    for key, slo in (("ttft_ms_p99", b.slo_ttft_p99_ms), ("itl_ms_p99", b.slo_itl_p99_ms)):
        value = summary.get(key)
        if slo is not None and (value is None or math.isnan(value) or value > slo):
            return False
    return True


def best_point(rows: list[dict[str, Any]]) -> str | None:
    """The highest tokens/J among points within the SLO; an invalid point cannot be best."""
    ok = [r for r in rows if r["meets_slo"] and not math.isnan(r["output_tokens_per_j"])
          and r.get("verdict") != Verdict.INVALID.value]
    return max(ok, key=lambda r: r["output_tokens_per_j"])["point"] if ok else None


def render_sweep(rows: list[dict[str, Any]], best: str | None) -> str:
    head = (f"{'point':<18}{'tok/s':>9}{'avg W':>9}{'J/tok':>9}{'tok/J':>9}{'TTFT p99':>10}{'ITL p99':>9}  SLO"
            "  validity")
    lines = [head]
    for r in rows:
        mark = "  <- best" if r["point"] == best else ""
        lines.append(
            f"{r['point']:<18}{r['output_tokens_per_s']:>9.1f}{r['avg_power_w']:>9.1f}"
            f"{r['energy_per_output_token_j']:>9.4f}{r['output_tokens_per_j']:>9.2f}{r['ttft_ms_p99']:>10.1f}"
            f"{r['itl_ms_p99']:>9.2f}  {'yes' if r['meets_slo'] else 'no'}  {r.get('verdict', '?')}{mark}"
        )
        if note := bunched_note(r):
            lines.append(f"{'':<18}{note} (and out of the ITL SLO check)")
    return "\n".join(lines)


def run_sweep(cfg: BenchConfig, out_dir: Path, *, force: bool = False, hooks: BenchHooks = BenchHooks(),
              launch: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run directory per point under `out_dir`, plus sweep.json; a single point writes `out_dir` itself.
    Stops after a point interrupted by a signal (`interrupted_by_signal` in the result)."""
    points = sweep_points(cfg)
    if len(points) == 1:
        return run_point(cfg, out_dir, config_to_dict(cfg), force=force, hooks=hooks, launch=launch)
    prepare_run_dir(out_dir, force=force)
    rows = []
    signum = None
    validities: list[Validity] = []
    for label, point_cfg in points:
        hooks.notify("phase", f"== {label}")
        run = run_point(point_cfg, out_dir / label, config_to_dict(point_cfg), force=force, hooks=hooks,
                        launch=launch)
        s = run["summary"]
        rows.append({"point": label, **{k: (math.nan if v is None else v) for k, v in s.items()},
                     "meets_slo": meets_slo({k: (math.nan if v is None else v) for k, v in s.items()}, cfg.bench)})
        validities.append(Validity.from_dict(run["validity"]))
        rows[-1]["verdict"] = validities[-1].verdict.value
        if run["interrupted_by_signal"] is not None:
            signum = run["interrupted_by_signal"]
            break
    best = best_point(rows)
    hooks.notify("summary", "\n" + render_sweep(rows, best))
    if best is None and (cfg.bench.slo_ttft_p99_ms or cfg.bench.slo_itl_p99_ms):
        hooks.notify("warning", "no point meets the SLO")
    sweep = {"points": rows, "best": best,
             "slo": {"slo_ttft_p99_ms": cfg.bench.slo_ttft_p99_ms, "slo_itl_p99_ms": cfg.bench.slo_itl_p99_ms},
             "interrupted_by_signal": signum,
             "validity": combine(validities).to_dict()}  # the sweep is as trustworthy as its worst point
    write_run_json(out_dir, sweep, "sweep.json")
    return sweep

