"""One benchmark point: meter + load + attribution, written as a run directory.

A run directory holds samples.arrow (the power trace), requests.arrow (one row per request, with its energy),
chunks.arrow (per-chunk arrival times), metrics.arrow (Prometheus scrapes) and run.json (config, fingerprint,
summary). See docs/format.md.

Lifecycle: everything is validated (scorer, calibration, sources; the CLI reads the workload file) before the run
directory is created or the meter started. Samples, finished requests and their chunks stream to disk while the
load runs, so a SIGKILL loses at most the last flush. SIGINT/SIGTERM stop the load at once: requests in flight
are closed at the signal's instant, attributed and marked `cancelled`; the run is written and
`interrupted_by_signal` says which signal (the CLI exits 128 + N). This module never prints: `notify(kind, text)`
and `on_request(record)` report.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fastmeter
from fastmeter.adapters.base import RequestRecord
from fastmeter.adapters.native import resolve_client
from fastmeter.adapters.prometheus import MetricRow
from fastmeter.adapters.ready import wait_until_ready
from fastmeter.analysis.accuracy import accuracy_summary, load_scorer
from fastmeter.analysis.carbon import carbon_cost_summary
from fastmeter.analysis.server_metrics import counter_deltas
from fastmeter.assess import measured_until_ns
from fastmeter.bench.activity_energy import update_instants_ns
from fastmeter.bench.energy import (
    attributable,
    attribute_requests,
    channel_delays_ns,
    counted_channels,
    meter_curve,
    span_energy_by_channel,
)
from fastmeter.bench.run_files import open_run_recorder, write_run_json
from fastmeter.bench.summary import RunEnergy, render_summary, requests_validity, summarize
from fastmeter.bench.tables import (
    CHUNKS_SCHEMA,
    METRICS_SCHEMA,
    REQUESTS_SCHEMA,
    STATUS_CANCELLED,
    chunks_table,
    metrics_table,
    requests_table,
    write_arrow,
)
from fastmeter.calibrate.result import calibration_for
from fastmeter.cluster.trace import cluster_metadata, validity_of
from fastmeter.load.config import BenchConfig
from fastmeter.load.runner import run_config
from fastmeter.recorder import Interrupt, Recorder
from fastmeter.validity import Validity, combine

RUN_FORMAT_VERSION = 1
# Over HTTP the first token's instant is when the client read it, never the server's own (no server reports it per
# request in its stream or /metrics): the prefill/decode split is shifted toward prefill by network and buffering.
CLIENT_SIDE_SPLIT = {
    "first_token": "client_side",
    "reason": "first-token instants are the client's reads of the stream, later than the server produced them by "
              "network and buffering delay: prefill_energy_j is an upper bound of the true prefill energy and "
              "decode_energy_j a lower bound; bunched responses have no split (NaN)",
}
ENERGY_COLUMNS = ("energy_j", "prefill_energy_j", "decode_energy_j", "net_energy_j", "uncertainty_j")


@dataclass(frozen=True)
class BenchHooks:
    """How a run reports: `notify(kind, text)` with kind "warning", "phase" or "summary"; `on_request(record)` as
    each request ends (progress). Both run on the caller's thread or the event loop's: keep them quick."""

    notify: Callable[[str, str], None] = lambda kind, text: None
    on_request: Callable[[RequestRecord], None] | None = None


def _make_meter(cfg: BenchConfig) -> fastmeter.Meter:
    b = cfg.bench
    options = {"nvml": {"gpus": ",".join(map(str, b.gpus))}} if b.gpus else {}
    sources = b.sources if b.sources != ("auto",) else "auto"
    if cfg.cluster.ray_address is not None:  # the whole cluster: same surface, channels node/channel
        from fastmeter.cluster import ClusterMeter

        cluster = ClusterMeter(sources, b.period_us, address=cfg.cluster.ray_address, source_options=options)
        return cluster  # type: ignore[return-value]
    return fastmeter.Meter(sources, b.period_us, source_options=options)


def run_point(
    cfg: BenchConfig,
    run_dir: Path,
    config_dict: dict[str, Any],
    *,
    force: bool = False,
    hooks: BenchHooks = BenchHooks(),
    launch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the load of `cfg` while measuring; write `run_dir`; return run.json's content. `launch`: the identity of
    the server fastmeter launched (a controlled variable of the fingerprint)."""
    from fastmeter.env import collect_fingerprint

    # Everything that can reject the input, before a directory or a meter exists.
    if cfg.bench.scorer is not None:
        load_scorer(cfg.bench.scorer)
    calibration = calibration_for(cfg.bench.calibration)
    # A server that is not there fails here, in one line, before a directory or a meter exists.
    wait_until_ready(cfg.server.base_url, cfg.server.ready_timeout_s)
    meter = _make_meter(cfg)
    fingerprint = collect_fingerprint(server=(cfg.server.base_url, cfg.server.kind), launch=launch)
    recorder = open_run_recorder(meter, run_dir, fingerprint, calibration, force=force, notify=hooks.notify)
    requests_stream = recorder.add_stream(run_dir / "requests.arrow", REQUESTS_SCHEMA)
    chunks_stream = recorder.add_stream(run_dir / "chunks.arrow", CHUNKS_SCHEMA)
    metrics: list[MetricRow] = []
    metrics_stream = recorder.add_stream(run_dir / "metrics.arrow", METRICS_SCHEMA)
    metrics_stream.follow(metrics, metrics_table)
    recorder.start()

    def finished(rec: RequestRecord) -> None:
        requests_stream.append(requests_table([rec]))
        chunks_stream.append(chunks_table([rec]))
        if hooks.on_request is not None:
            hooks.on_request(rec)

    records: list[RequestRecord] = []
    interrupt = Interrupt()
    measured = _Measured()
    try:
        asyncio.run(_measure(cfg, recorder, records, metrics, finished, interrupt, measured, hooks))
    except BaseException:
        recorder.stop()
        raise
    # From here on a further signal must not tear the run directory half-written: it is counted, and said.
    interrupt.on_signal = lambda s, n: hooks.notify("warning", "still writing the run directory (SIGKILL abandons it)")
    with interrupt.caught():
        if measured.stopped_ns is None and measured.span_ns[1] > measured.span_ns[0]:
            # validity: wait (bounded) for each counter's next update after the load, so the span's end is
            # measured, not extrapolated (`provisional_end`); a counter calibrated to lag by d is read at end + d.
            lag_ns = max(channel_delays_ns(meter, calibration).values(), default=0)
            end_ns = measured.span_ns[1] + lag_ns
            time.sleep(max(0, end_ns - time.monotonic_ns()) * 1e-9)
            meter.span(measured.span_ns[0], end_ns)
        recorder.stop()
        span = measured.span_ns
        if measured.stopped_ns is not None:
            why = "interrupted" if interrupt.signum is not None else "writing samples failed"
            hooks.notify("phase", f"{why}: writing what was measured")
            _close_in_flight(records, measured.stopped_ns)
            first = [r.scheduled_ns or r.send_ns for r in records if not r.warmup and (r.scheduled_ns or r.send_ns)]
            span = (min(first, default=measured.stopped_ns), measured.stopped_ns)
        # All are rewritten whole below (requests with their energy; cancelled requests trimmed to the interrupt).
        for stream in (requests_stream, chunks_stream, metrics_stream):
            stream.abandon()
        if recorder.error is None:
            recorder.close({"idle_baseline_w": measured.idle_w, "interrupted": interrupt.signum is not None,
                            "validity": validity_of(meter).to_dict()})  # the whole record's, for `show`
        context = {"fingerprint": fingerprint, "config": config_dict, "calibration": calibration,
                   "send_lag_ns": measured.send_lag_ns,
                   "load_client": resolve_client(cfg.load.client, cfg.server.base_url),
                   "load_client_sched_policy": measured.client_sched_policy, **cluster_metadata(meter)}
        run = _finish(cfg, run_dir, meter, records, metrics, span, measured.idle_w, context, hooks, interrupt.signum)
    if recorder.error is not None:  # everything else is written; the samples are kept up to the failure
        raise recorder.error
    return run


@dataclass
class _Measured:
    span_ns: tuple[int, int] = (0, 0)
    idle_w: dict[str, float] | None = None
    stopped_ns: int | None = None  # the load was stopped early (a signal, a failed write) at this instant
    send_lag_ns: dict[str, int | None] | None = None  # how late requests went out after their schedule
    client_sched_policy: str | None = None  # the native transport thread's scheduling (None: asyncio or unknown)


async def _measure(
    cfg: BenchConfig,
    recorder: Recorder,
    records: list[RequestRecord],
    metrics: list[MetricRow],
    finished: Callable[[RequestRecord], None],
    interrupt: Interrupt,
    out: _Measured,
    hooks: BenchHooks,
) -> None:
    """Idle baseline, then the load; the first SIGINT/SIGTERM cancels whichever is running."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop_load() -> None:
        if out.stopped_ns is None:
            out.stopped_ns = time.monotonic_ns()
            task.cancel()

    def on_signal(signum: int) -> None:
        interrupt.handle(signum)
        stop_load()

    for s in interrupt.signals:
        loop.add_signal_handler(s, on_signal, s)
    # A failed write (disk full) stops the load too: what was measured is then written while it can be.
    recorder.on_error = lambda e: loop.call_soon_threadsafe(stop_load)
    try:
        idle_s = cfg.bench.idle_baseline_s
        if idle_s > 0:
            hooks.notify("phase", f"measuring idle baseline for {idle_s:g} s")
            stopped = lambda: bool(interrupt.count or recorder.error)  # noqa: E731
            out.idle_w = await asyncio.to_thread(recorder.measure_idle, idle_s, stopped)
        result = await run_config(cfg, records=records, metrics=metrics, on_done=finished)
        out.span_ns = (result.start_ns, result.end_ns)
        out.send_lag_ns = result.send_lag_ns()
        out.client_sched_policy = result.client_sched_policy
    except asyncio.CancelledError:
        if out.stopped_ns is None:
            raise
    finally:
        recorder.on_error = None
        for s in interrupt.signals:
            loop.remove_signal_handler(s)


def _close_in_flight(records: list[RequestRecord], t_ns: int) -> None:
    """Requests unfinished at the interrupt instant end there, as `cancelled`; their energy up to it is theirs. One
    that completed after the instant, before the load stopped, keeps its record (attribution clips it to the span);
    one that failed after the instant failed because the load was stopped, so it is cancelled too."""
    for r in records:
        if r.end_ns is not None and (r.end_ns <= t_ns or r.ok):
            continue
        r.status, r.error = STATUS_CANCELLED, "the run was interrupted while this request was in flight"
        if r.send_ns is None or r.send_ns > t_ns:
            r.send_ns = r.first_token_ns = r.end_ns = None  # never reached the server
            continue
        r.end_ns = t_ns
        if r.first_token_ns is not None and r.first_token_ns > t_ns:
            r.first_token_ns = None
        kept = [i for i, c in enumerate(r.chunk_t_ns) if c <= t_ns]
        r.chunk_t_ns = [r.chunk_t_ns[i] for i in kept]
        r.chunk_tokens = [r.chunk_tokens[i] for i in kept]


def _finish(
    cfg: BenchConfig,
    run_dir: Path,
    meter: fastmeter.Meter,
    records: list[RequestRecord],
    metrics: list[MetricRow],
    span: tuple[int, int],
    idle_w: dict[str, float] | None,
    context: dict[str, Any],
    hooks: BenchHooks,
    signum: int | None,
) -> dict[str, Any]:
    idle_w = idle_w or {}
    measured = [r for r in records if not r.warmup]
    server_deltas = counter_deltas(metrics, span)  # the load's span: the baseline scrape follows the warm-up
    # --- validity: a counted channel lost mid-run ends the measured span at its last sample; requests that had
    # not ended by then get no energy (NaN) and their tokens and time are not in the figures. Judged on the span
    # the load asked for: a lost channel may have stopped the record (stop_ns) before the load ended.
    validity = validity_of(meter, (max(span[0], meter.start_ns), span[1]))
    span = (max(span[0], meter.start_ns), min(span[1], meter.stop_ns or span[1]))
    lost_ns = min((t for n, t in measured_until_ns(meter).items() if n in counted_channels(meter)), default=None)
    if lost_ns is not None and lost_ns < span[1]:
        span = (span[0], max(span[0], lost_ns))
    unmeasured = [r for r in measured if r.end_ns is not None and r.end_ns > span[1]]
    measured = [r for r in measured if r.end_ns is None or r.end_ns <= span[1]]
    # --- end validity
    delays_ns = channel_delays_ns(meter, context["calibration"])
    unknown = {c.name: math.nan for c in meter.channels}  # nothing measured: unknown, not 0
    by_channel = span_energy_by_channel(meter, span, delays_ns) if span[1] > span[0] else unknown
    counted = counted_channels(meter)
    # A counted channel whose energy is unknown makes the total unknown: leaving it out would publish a part as
    # the whole.
    energy_j = math.fsum(by_channel[n] for n in counted)
    idle_total_w = math.fsum(idle_w.get(n, 0.0) for n in counted) if idle_w else None

    per_request = {k: np.full(len(records), np.nan) for k in ENERGY_COLUMNS}
    attr_info: dict[str, Any] = {"method": cfg.bench.attribution, "prefill_split": CLIENT_SIDE_SPLIT}
    targets = [i for i, r in enumerate(records) if not r.warmup and attributable([r]) and r.end_ns <= span[1]]
    failed_j = 0.0
    net_j = None
    if targets and span[1] > span[0]:
        # NaN when no counted channel has a known update period: the heuristic uncertainty is then unknown, not 0.
        periods = [p for p in meter.stats()["update_period_s"].values() if not math.isnan(p)]  # type: ignore[union-attr]
        a, uncertainty = attribute_requests(
            meter_curve(meter, delays_ns),
            [records[i] for i in targets],
            span,
            cfg.bench.attribution,
            idle_total_w,
            max(periods, default=math.nan),
            update_instants_ns(meter, span, delays_ns, run_dir / "samples.arrow")
            if cfg.bench.attribution == "activity"
            else None,
        )
        # --- activity attribution: the fit goes to run.json; a rejected fit (time-share served) degrades the run
        if (fit := uncertainty.pop("activity_fit", None)) is not None:
            attr_info["activity_fit"] = fit.to_dict()
            if fit.rejected is not None:
                validity = combine([validity, Validity((fit.rejected,))])
        # --- end activity attribution
        for k in ENERGY_COLUMNS:
            per_request[k][targets] = getattr(a, k)
        # A bunched response's first token was read with its last: the split would call it all prefill. Unknown.
        bunched = [i for i in targets if records[i].bunched]
        per_request["prefill_energy_j"][bunched] = np.nan
        per_request["decode_energy_j"][bunched] = np.nan
        failed_j = math.fsum(a.energy_j[j] for j, i in enumerate(targets) if not records[i].ok)
        attr_info.update(
            total_j=a.total_j,
            idle_j=a.idle_j,
            idle_s=a.idle_s,
            requests_j=math.fsum(a.energy_j),
            update_period_s=a.update_period_s,
            **uncertainty,
        )
        if idle_total_w is not None:
            # The run's net energy is the sum of its parts, so requests' net + idle net == run net exactly.
            idle_net_j = a.idle_j - idle_total_w * a.idle_s
            net_j = math.fsum(a.net_energy_j) + idle_net_j
            attr_info["idle_net_energy_j"] = idle_net_j

    duration_s = (span[1] - span[0]) * 1e-9
    summary = summarize(measured, RunEnergy(energy_j, by_channel, duration_s, failed_j, idle_total_w, net_j))
    validity = combine([validity, requests_validity(measured, signum is not None)])
    summary["requests_unmeasured"] = len(unmeasured)
    # The error bound of the measured span's energy (docs/methodology.md, "Error bound"); NaN when unknown.
    summary["energy_bound_j"] = meter.span(*span).total_bound_j if span[1] > span[0] else math.nan

    write_arrow(requests_table(records, per_request), run_dir / "requests.arrow")
    write_arrow(chunks_table(records), run_dir / "chunks.arrow")
    write_arrow(metrics_table(metrics), run_dir / "metrics.arrow")
    # accuracy, carbon, cost: after the tables are written, so a failing scorer loses nothing
    summary.update(accuracy_summary(cfg.bench, measured, energy_j))
    summary.update(carbon_cost_summary(cfg.bench, summary))
    if "accuracy_error" in summary:
        hooks.notify("warning", f"the scorer failed, no accuracy recorded: {summary['accuracy_error']}")
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
        "interrupted": signum is not None,
        "interrupted_by_signal": signum,
        "validity": validity.to_dict(),
        "server_metrics": server_deltas,
        "send_lag_ns": context["send_lag_ns"],
        "load_client": context["load_client"],
        "load_client_sched_policy": context["load_client_sched_policy"],
        **({"cluster": context["cluster"]} if "cluster" in context else {}),
    }
    write_run_json(run_dir, run)
    hooks.notify("summary", render_summary(summary, validity))
    return run
