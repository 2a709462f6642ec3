"""One benchmark point: meter + load + attribution, written as a run directory.

A run directory holds samples.arrow (the power trace), requests.arrow (one row per request, with its energy),
chunks.arrow (per-chunk arrival times), metrics.arrow (Prometheus scrapes) and run.json (config, fingerprint,
summary). See docs/format.md."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import numpy as np

import fastmeter
from fastmeter.adapters.base import RequestRecord
from fastmeter.adapters.prometheus import MetricRow
from fastmeter.analysis.accuracy import accuracy_summary, load_scorer
from fastmeter.analysis.carbon import carbon_cost_summary
from fastmeter.bench.energy import (
    attributable,
    attribute_requests,
    channel_delays_ns,
    counted_channels,
    span_energy_by_channel,
)
from fastmeter.bench.recorder import StreamingRecorder
from fastmeter.bench.summary import RunEnergy, render_summary, summarize
from fastmeter.bench.tables import chunks_table, metrics_table, requests_table, write_arrow
from fastmeter.calibrate.result import calibration_for
from fastmeter.errors import ConfigError
from fastmeter.load.config import BenchConfig
from fastmeter.load.runner import run_config
from fastmeter.sources import permission_warnings

RUN_FORMAT_VERSION = 1
ENERGY_COLUMNS = ("energy_j", "prefill_energy_j", "decode_energy_j", "net_energy_j", "uncertainty_j")


def prepare_run_dir(path: Path) -> Path:
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"run directory {path} already exists and is not empty; choose another --output-dir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _make_meter(cfg: BenchConfig) -> fastmeter.Meter:
    b = cfg.bench
    options = {"nvml": {"gpus": ",".join(map(str, b.gpus))}} if b.gpus else {}
    sources = b.sources if b.sources != ("auto",) else "auto"
    return fastmeter.Meter(sources, b.period_us, source_options=options)


class _Progress:
    def __init__(self, total: int | None) -> None:
        self.done = 0
        self.failed = 0
        self.total = total
        self.live = sys.stderr.isatty()

    def __call__(self, rec: RequestRecord) -> None:
        self.done += 1
        self.failed += not rec.ok
        if self.live:
            total = f"/{self.total}" if self.total else ""
            click.echo(f"\r  requests {self.done}{total}  failed {self.failed} ", nl=False, err=True)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_point(cfg: BenchConfig, run_dir: Path, config_dict: dict[str, Any]) -> dict[str, Any]:
    """Run the load of `cfg` while measuring; write `run_dir`; return run.json's content."""
    from fastmeter.env import collect_fingerprint, noise_warnings

    if cfg.bench.scorer is not None:  # a scorer that cannot load fails before measuring
        load_scorer(cfg.bench.scorer)
    calibration = calibration_for(cfg.bench.calibration)
    prepare_run_dir(run_dir)
    meter = _make_meter(cfg)
    fingerprint = collect_fingerprint()
    for w in noise_warnings(fingerprint):
        click.echo(f"warning: {w.message}", err=True)
    for text in permission_warnings(meter.skipped_sources):
        click.echo(f"warning: {text}", err=True)
    recorder = StreamingRecorder(meter, run_dir / "samples.arrow", {
        "fingerprint": fingerprint,
        "sampler": {"period_us": meter.period_us, "sources": meter.sources},
        "channels": [asdict(c) for c in meter.channels],
        "fastmeter_version": fastmeter.__version__,
        "calibration": calibration,
    })
    records: list[RequestRecord] = []
    metrics: list[MetricRow] = []
    n_total = (cfg.load.num_requests or 0) + cfg.load.warmup_requests or None
    progress = _Progress(n_total)
    idle_w: dict[str, float] = {}
    interrupted = False
    span = (0, 0)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    recorder.start()
    try:
        if cfg.bench.idle_baseline_s > 0:
            idle_w = _idle_baseline(meter, cfg.bench.idle_baseline_s)
        result = asyncio.run(run_config(cfg, records=records, metrics=metrics, on_done=progress))
        span = (result.start_ns, result.end_ns)
    except KeyboardInterrupt:
        interrupted = True
        click.echo("\ninterrupted: writing what was measured", err=True)
        measured = [r for r in records if not r.warmup]
        start = min((r.scheduled_ns or r.send_ns or 0 for r in measured), default=meter.start_ns)
        span = (max(start, meter.start_ns), time.monotonic_ns())
    finally:
        signal.signal(signal.SIGTERM, previous)
        if progress.live:
            click.echo("", err=True)
        recorder.close({"idle_baseline_w": idle_w, "interrupted": interrupted})
    context = {"fingerprint": fingerprint, "config": config_dict, "calibration": calibration}
    return _finish(cfg, run_dir, meter, records, metrics, span, idle_w, context, interrupted)


def _idle_baseline(meter: fastmeter.Meter, seconds: float) -> dict[str, float]:
    click.echo(f"measuring idle baseline for {seconds:g} s ...", err=True)
    with meter.window("idle") as w:
        time.sleep(seconds)
    return {n: e / w.duration_s for n, e in w.by_channel.items() if not math.isnan(e)}


def _finish(cfg: BenchConfig, run_dir: Path, meter: fastmeter.Meter, records: list[RequestRecord],
            metrics: list[MetricRow], span: tuple[int, int], idle_w: dict[str, float],
            context: dict[str, Any], interrupted: bool) -> dict[str, Any]:
    measured = [r for r in records if not r.warmup]
    span = (max(span[0], meter.start_ns), min(span[1], meter.stop_ns or span[1]))
    delays_ns = channel_delays_ns(meter, context["calibration"])
    by_channel = (span_energy_by_channel(meter, span, delays_ns) if span[1] > span[0]
                  else {c.name: 0.0 for c in meter.channels})
    counted = counted_channels(meter)
    energy_j = math.fsum(by_channel[n] for n in counted if not math.isnan(by_channel[n]))
    idle_total_w = math.fsum(idle_w.get(n, 0.0) for n in counted) if idle_w else None

    per_request = {k: np.full(len(records), np.nan) for k in ENERGY_COLUMNS}
    attr_info: dict[str, Any] = {"method": cfg.bench.attribution}
    targets = [i for i, r in enumerate(records) if not r.warmup and attributable([r])]
    failed_j = 0.0
    if targets and span[1] > span[0]:
        a = attribute_requests(meter, [records[i] for i in targets], span, cfg.bench.attribution, idle_total_w,
                               delays_ns)
        for k in ENERGY_COLUMNS:
            per_request[k][targets] = getattr(a, k)
        failed_j = math.fsum(a.energy_j[j] for j, i in enumerate(targets) if not records[i].ok)
        attr_info.update(total_j=a.total_j, idle_j=a.idle_j, requests_j=math.fsum(a.energy_j),
                         update_period_s=a.update_period_s)

    duration_s = (span[1] - span[0]) * 1e-9
    summary = summarize(measured, RunEnergy(energy_j, by_channel, duration_s, failed_j, idle_total_w))

    write_arrow(requests_table(records, per_request), run_dir / "requests.arrow")
    write_arrow(chunks_table(records), run_dir / "chunks.arrow")
    write_arrow(metrics_table(metrics), run_dir / "metrics.arrow")
    # accuracy, carbon, cost: after the tables are written, so a failing scorer loses nothing
    summary.update(accuracy_summary(cfg.bench, measured, energy_j))
    summary.update(carbon_cost_summary(cfg.bench, summary))
    if "accuracy_error" in summary:
        click.echo(f"warning: the scorer failed, no accuracy recorded: {summary['accuracy_error']}", err=True)
    run = {
        "format_version": RUN_FORMAT_VERSION,
        "fastmeter_version": fastmeter.__version__,
        "config": context["config"],
        "fingerprint": context["fingerprint"],
        "calibration": context["calibration"],
        "counter_delay_ns": delays_ns,
        "summary": summary,
        "energy_by_channel_j": by_channel,
        "counted_channels": counted,
        "idle_baseline_w": idle_w,
        "span_ns": list(span),
        "attribution": attr_info,
        "sampler_stats": meter.stats(),
        "interrupted": interrupted,
    }
    (run_dir / "run.json").write_text(json.dumps(_finite(run), indent=2, default=_json_default) + "\n")
    click.echo(render_summary(summary))
    return run


def _finite(o: Any) -> Any:
    """NaN and infinities become null: run.json stays strict JSON that any tool (and a browser) parses."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
