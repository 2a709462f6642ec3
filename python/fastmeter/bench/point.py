"""One benchmark point: meter + load + attribution, written as a run directory.

A run directory holds samples.arrow (the power trace), requests.arrow (one row per request, with its energy),
chunks.arrow (per-chunk arrival times), metrics.arrow (Prometheus scrapes) and run.json (config, fingerprint,
summary). See docs/format.md.

Lifecycle: everything is validated (scorer, calibration, sources; the CLI reads the workload file) before the run
directory is created or the meter started. Samples, finished requests and their chunks stream to disk while the
load runs, so a SIGKILL loses at most the last flush; a finished request leaves RAM once its rows are written, and
the end of the run reads them back (bench/request_log.py, bench/readback.py). SIGINT/SIGTERM stop the load at
once: requests in flight are closed at the signal's instant, attributed and marked `cancelled`; the run is written and
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
from fastmeter.bench.attribute_columns import attribute_columns
from fastmeter.bench.column_figures import figures_of_columns
from fastmeter.bench.energy import channel_delays_ns, counted_channels, meter_curve, span_energy_by_channel
from fastmeter.bench.readback import NO_NS, RequestColumns, read_columns, write_chunks, write_requests
from fastmeter.bench.request_log import RequestLog, Staged
from fastmeter.bench.run_files import open_run_recorder, write_run_json
from fastmeter.bench.summary import RunEnergy, render_summary, requests_validity_of, summarize
from fastmeter.bench.tables import CHUNKS_SCHEMA, METRICS_SCHEMA, REQUESTS_SCHEMA, metrics_table, write_arrow
from fastmeter.calibrate.result import calibration_for
from fastmeter.cluster.trace import cluster_metadata, validity_of
from fastmeter.control import GpuControl, control_request
from fastmeter.load.config import BenchConfig
from fastmeter.load.live import LiveRecords
from fastmeter.load.runner import run_config, send_lag_summary_ns
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
    return fastmeter.Meter(sources, b.period_us, source_options=options, telemetry_hz=b.telemetry_hz)


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
    the server fastmeter launched (a controlled variable of the fingerprint). GPU settings asked for
    (`lock_clocks_mhz`, `power_limit_w`) hold from before the meter opens until the run directory is written, and
    are restored whatever ends the run (fastmeter/control.py)."""
    b = cfg.bench
    with GpuControl(control_request(b.lock_clocks_mhz, b.power_limit_w, tuple(map(str, b.gpus)))) as control:
        return _run_point(cfg, run_dir, config_dict, force=force, hooks=hooks, launch=launch, control=control)


def _run_point(
    cfg: BenchConfig,
    run_dir: Path,
    config_dict: dict[str, Any],
    *,
    force: bool,
    hooks: BenchHooks,
    launch: dict[str, Any] | None,
    control: GpuControl,
) -> dict[str, Any]:
    from fastmeter.env import collect_fingerprint

    # Everything that can reject the input, before a directory or a meter exists.
    if cfg.bench.scorer is not None:
        load_scorer(cfg.bench.scorer)
    calibration = calibration_for(cfg.bench.calibration)
    # A server that is not there fails here, in one line, before a directory or a meter exists.
    wait_until_ready(cfg.server.base_url, cfg.server.ready_timeout_s)
    meter = _make_meter(cfg)
    fingerprint = collect_fingerprint(server=(cfg.server.base_url, cfg.server.kind), launch=launch)
    recorder = open_run_recorder(
        meter, run_dir, fingerprint, calibration, force=force, notify=hooks.notify, control=control.record()
    )
    log = RequestLog(
        recorder.add_stream(run_dir / "requests.arrow", REQUESTS_SCHEMA),
        recorder.add_stream(run_dir / "chunks.arrow", CHUNKS_SCHEMA),
        keep_texts=cfg.bench.scorer is not None,
        on_request=hooks.on_request,
    )
    metrics: list[MetricRow] = []
    metrics_stream = recorder.add_stream(run_dir / "metrics.arrow", METRICS_SCHEMA)
    metrics_stream.follow(metrics, metrics_table)
    recorder.start()
    interrupt = Interrupt()
    measured = _Measured()

    def finished(rec: RequestRecord) -> None:
        # Once the load is stopped, requests that end are closed at the stop instant with those in flight.
        log.stopped = measured.stopped_ns is not None
        log.finished(rec)

    try:
        asyncio.run(_measure(cfg, recorder, log.live, metrics, finished, interrupt, measured, hooks))
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
        if measured.stopped_ns is not None:
            why = "interrupted" if interrupt.signum is not None else "writing samples failed"
            hooks.notify("phase", f"{why}: writing what was measured")
        # All are rewritten whole below from what streamed (requests with their energy; cancelled requests trimmed
        # to the interrupt, after the others).
        staged = log.close(measured.stopped_ns)
        metrics_stream.abandon()
        if recorder.error is None:
            recorder.close({"idle_baseline_w": measured.idle_w, "interrupted": interrupt.signum is not None,
                            "validity": validity_of(meter).to_dict()})  # the whole record's, for `show`
        context = {"fingerprint": fingerprint, "config": config_dict, "calibration": calibration,
                   "load_client": resolve_client(cfg.load.client, cfg.server.base_url),
                   "load_client_sched_policy": measured.client_sched_policy, "control": control.record(),
                   **cluster_metadata(meter)}
        run = _finish(cfg, run_dir, meter, staged, log.texts, metrics, measured, context, hooks, interrupt.signum)
    if recorder.error is not None:  # everything else is written; the samples are kept up to the failure
        raise recorder.error
    return run


@dataclass
class _Measured:
    span_ns: tuple[int, int] = (0, 0)
    idle_w: dict[str, float] | None = None
    stopped_ns: int | None = None  # the load was stopped early (a signal, a failed write) at this instant
    client_sched_policy: str | None = None  # the native transport thread's scheduling (None: asyncio or unknown)


async def _measure(
    cfg: BenchConfig,
    recorder: Recorder,
    records: LiveRecords,
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
        result = await run_config(cfg, records=records, metrics=metrics, on_done=finished, keep_records=False)
        out.span_ns = (result.start_ns, result.end_ns)
        out.client_sched_policy = result.client_sched_policy
    except asyncio.CancelledError:
        if out.stopped_ns is None:
            raise
    finally:
        recorder.on_error = None
        for s in interrupt.signals:
            loop.remove_signal_handler(s)


def _finish(
    cfg: BenchConfig,
    run_dir: Path,
    meter: fastmeter.Meter,
    staged: Staged,
    texts: list[RequestRecord],
    metrics: list[MetricRow],
    load: _Measured,
    context: dict[str, Any],
    hooks: BenchHooks,
    signum: int | None,
) -> dict[str, Any]:
    """The run directory's final files and run.json, from what the run streamed (bench/readback.py): a few int64
    per request in RAM, chunks read back from chunks.arrow."""
    idle_w = load.idle_w or {}
    cols = read_columns(staged)
    span = load.span_ns if load.stopped_ns is None else _interrupted_span(cols, load.stopped_ns)
    chunks = write_chunks(staged, run_dir / "chunks.arrow")
    server_deltas = counter_deltas(metrics, span)  # the load's span: the baseline scrape follows the warm-up
    # --- validity: a counted channel lost mid-run ends the measured span at its last sample; requests that had
    # not ended by then get no energy (NaN) and their tokens and time are not in the figures. Judged on the span
    # the load asked for: a lost channel may have stopped the record (stop_ns) before the load ended.
    validity = validity_of(meter, (max(span[0], meter.start_ns), span[1]))
    span = (max(span[0], meter.start_ns), min(span[1], meter.stop_ns or span[1]))
    lost_ns = min((t for n, t in measured_until_ns(meter).items() if n in counted_channels(meter)), default=None)
    if lost_ns is not None and lost_ns < span[1]:
        span = (span[0], max(span[0], lost_ns))
    has_end = cols.end_ns != NO_NS
    unmeasured = ~cols.warmup & has_end & (cols.end_ns > span[1])
    measured = ~cols.warmup & ~unmeasured
    # --- end validity
    delays_ns = channel_delays_ns(meter, context["calibration"])
    unknown = {c.name: math.nan for c in meter.channels}  # nothing measured: unknown, not 0
    by_channel = span_energy_by_channel(meter, span, delays_ns) if span[1] > span[0] else unknown
    counted = counted_channels(meter)
    # A counted channel whose energy is unknown makes the total unknown: leaving it out would publish a part as
    # the whole.
    energy_j = math.fsum(by_channel[n] for n in counted)
    idle_total_w = math.fsum(idle_w.get(n, 0.0) for n in counted) if idle_w else None

    per_request = {k: np.full(len(cols), np.nan) for k in ENERGY_COLUMNS}
    attr_info: dict[str, Any] = {"method": cfg.bench.attribution, "prefill_split": CLIENT_SIDE_SPLIT}
    targets = np.flatnonzero(measured & (cols.send_ns != NO_NS) & has_end)  # attributable: sent and ended
    failed_j = 0.0
    net_j = None
    if len(targets) and span[1] > span[0]:
        # NaN when no counted channel has a known update period: the heuristic uncertainty is then unknown, not 0.
        periods = [p for p in meter.stats()["update_period_s"].values() if not math.isnan(p)]  # type: ignore[union-attr]
        a, uncertainty = attribute_columns(
            meter_curve(meter, delays_ns),
            cols,
            targets,
            chunks,
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
        bunched = targets[cols.bunched[targets]]
        per_request["prefill_energy_j"][bunched] = np.nan
        per_request["decode_energy_j"][bunched] = np.nan
        failed_j = math.fsum(a.energy_j[~cols.ok[targets]])
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
    figures = figures_of_columns(cols, measured, chunks)
    summary = summarize(figures, RunEnergy(energy_j, by_channel, duration_s, failed_j, idle_total_w, net_j))
    validity = combine([validity, requests_validity_of(figures.ok, figures.bunched, signum is not None)])
    summary["requests_unmeasured"] = int(np.count_nonzero(unmeasured))
    # The error bound of the measured span's energy (docs/methodology.md, "Error bound"); NaN when unknown.
    summary["energy_bound_j"] = meter.span(*span).total_bound_j if span[1] > span[0] else math.nan

    write_requests(staged, run_dir / "requests.arrow", per_request)
    write_arrow(metrics_table(metrics), run_dir / "metrics.arrow")
    # accuracy, carbon, cost: after the tables are written, so a failing scorer loses nothing
    summary.update(accuracy_summary(cfg.bench, [r for r in texts if r.end_ns <= span[1]], energy_j))
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
        "send_lag_ns": send_lag_summary_ns(_send_lags_ns(cols)),
        "load_client": context["load_client"],
        "load_client_sched_policy": context["load_client_sched_policy"],
        "control": context["control"],
        **({"cluster": context["cluster"]} if "cluster" in context else {}),
    }
    write_run_json(run_dir, run)
    hooks.notify("summary", render_summary(summary, validity))
    return run


def _interrupted_span(cols: RequestColumns, stopped_ns: int) -> tuple[int, int]:
    """An interrupted run's span: from the first measured request's release (or send) to the stop instant."""
    known = (cols.scheduled_ns != NO_NS) & (cols.scheduled_ns != 0)
    first = np.where(known, cols.scheduled_ns, cols.send_ns)[~cols.warmup]
    first = first[(first != NO_NS) & (first != 0)]
    return (int(first.min()) if len(first) else stopped_ns, stopped_ns)


def _send_lags_ns(cols: RequestColumns) -> np.ndarray:
    """How late each measured request went out after its scheduled instant."""
    sent = ~cols.warmup & (cols.send_ns != NO_NS) & (cols.scheduled_ns != NO_NS)
    return cols.send_ns[sent] - cols.scheduled_ns[sent]
