"""Run an in-process task while measuring: the run directory `fastmeter bench task.toml` writes.

Lifecycle: the config, the model and the data are loaded first (a bad input fails in one line before a directory
or a meter exists). Then the meter records to samples.arrow while an optional idle baseline and the batches run;
each batch's timing streams to batches.arrow as it ends, so a SIGKILL loses at most the last flush. SIGINT/SIGTERM
stop the task after the batch in progress, and a batch that raises stops it too: what was measured is written
(batches.arrow, items.arrow, run.json) before the CLI exits 128 + N or reports the error. This module never
prints: `hooks.notify(kind, text)` and `hooks.on_batch(batch)` report.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fastmeter
from fastmeter.analysis.carbon import carbon_cost_summary
from fastmeter.assess import meter_validity
from fastmeter.bench.energy import channel_delays_ns, counted_channels, span_energy_by_channel
from fastmeter.bench.run_files import open_run_recorder, write_run_json
from fastmeter.bench.tables import write_arrow
from fastmeter.calibrate.result import calibration_for
from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.recorder import Interrupt, Recorder
from fastmeter.tasks.base import BatchResult, Task, TaskFailedError, TaskScore
from fastmeter.tasks.config import TaskConfig, task_config_to_dict
from fastmeter.tasks.items import items_table
from fastmeter.tasks.record import BATCH_TIMES_SCHEMA, Batch, BatchEnergy, BatchRecorder, times_table
from fastmeter.tasks.summary import batches_validity, render_task_summary, task_summary
from fastmeter.validity import combine

RUN_FORMAT_VERSION = 1
KINDS = {
    "image-classification": ("fastmeter.tasks.vision", "ImageClassification"),
    "object-detection": ("fastmeter.tasks.detection", "ObjectDetection"),
    "text-generation": ("fastmeter.tasks.textgen", "TextGeneration"),
    "callable": ("fastmeter.tasks.callable_task", "CallableTask"),
}


@dataclass(frozen=True)
class TaskHooks:
    """`notify(kind, text)` with kind "warning", "phase" or "summary"; `on_batch(batch)` as each batch ends."""

    notify: Callable[[str, str], None] = lambda kind, text: None
    on_batch: Callable[[Batch], None] | None = None


def load_task(cfg: TaskConfig) -> Task:
    """The kind's Task with its model and data loaded (heavy imports happen here, only for this kind)."""
    module, name = KINDS[cfg.task.kind]
    try:
        return getattr(importlib.import_module(module), name)(cfg)  # type: ignore[no-any-return]
    except FastmeterError:
        raise
    except Exception as exc:  # the library refused the model or data as configured: one line, nothing created
        raise ConfigError(
            f'[task]: cannot set up kind = "{cfg.task.kind}": {type(exc).__name__}: {str(exc)[:400]}'
        ) from None


def _make_meter(cfg: TaskConfig) -> fastmeter.Meter:
    b = cfg.bench
    options = {"nvml": {"gpus": ",".join(map(str, b.gpus))}} if b.gpus else {}
    return fastmeter.Meter(b.sources if b.sources != ("auto",) else "auto", b.period_us, source_options=options)


@dataclass
class _Loop:
    results: list[BatchResult]
    idle_w: dict[str, float] | None = None
    stopped: str | None = None  # "signal", or the error of the batch that failed
    error: BaseException | None = None


def run_task(cfg: TaskConfig, run_dir: Path, *, force: bool = False, hooks: TaskHooks = TaskHooks()) -> dict[str, Any]:
    """Run the task of `cfg` while measuring; write `run_dir`; return run.json's content. A batch that raised is
    reported as TaskFailedError after everything measured is written (run.json's task.error says which)."""
    from fastmeter.env import collect_fingerprint

    calibration = calibration_for(cfg.bench.calibration)
    task = load_task(cfg)
    meter = _make_meter(cfg)
    fingerprint = collect_fingerprint()
    recorder = open_run_recorder(meter, run_dir, fingerprint, calibration, force=force, notify=hooks.notify)
    stream = recorder.add_stream(run_dir / "batches.arrow", BATCH_TIMES_SCHEMA)

    def ended(b: Batch) -> None:
        stream.append(times_table([b]))
        if hooks.on_batch is not None:
            hooks.on_batch(b)

    recorder.start()
    delays_ns = channel_delays_ns(meter, calibration)
    rec = BatchRecorder(meter, warmup_batches=cfg.task.warmup_batches, on_batch=ended, delays_ns=delays_ns)
    interrupt = Interrupt()
    loop = _Loop([])
    # Signals are caught where Python allows it (the main thread); a library caller elsewhere handles its own.
    catching = interrupt.caught() if threading.current_thread() is threading.main_thread() else contextlib.nullcontext()
    with catching:
        try:
            _run_batches(cfg, task, recorder, rec, interrupt, loop, hooks)
        except BaseException:
            recorder.stop()
            raise
        interrupt.on_signal = lambda s, n: hooks.notify(
            "warning", "still writing the run directory (SIGKILL abandons it)"
        )
        if loop.stopped is not None:
            hooks.notify("phase", "stopped early: writing what was measured")
        measured = [b for b in rec.batches if not b.warmup]
        span = rec.span_ns()
        if span is not None:
            # Wait (bounded) for each counter's next update after the last batch, so the span's end is measured.
            end_ns = span[1] + max(delays_ns.values(), default=0)
            time.sleep(max(0, end_ns - time.monotonic_ns()) * 1e-9)
            meter.span(span[0], end_ns)
        energy = rec.energies()  # read while the meter runs: each edge is waited for, never extrapolated
        batches = rec.table(energy)
        is_warmup = np.array([b.warmup for b in rec.batches], dtype=bool)
        recorder.stop()
        stream.abandon()  # rewritten whole below, with the energy columns
        if recorder.error is None:
            recorder.close(
                {
                    "idle_baseline_w": loop.idle_w,
                    "interrupted": interrupt.signum is not None,
                    "validity": meter_validity(meter).to_dict(),
                }
            )
        write_arrow(batches, run_dir / "batches.arrow")
        run = _finish(
            cfg,
            run_dir,
            task,
            meter,
            BatchEnergy(energy.energy_j[~is_warmup], energy.energy_bound_j[~is_warmup]),
            measured,
            span,
            loop,
            delays_ns,
            {"fingerprint": fingerprint, "calibration": calibration, "signum": interrupt.signum},
            hooks,
        )
    if recorder.error is not None:
        raise recorder.error
    if loop.error is not None:
        raise TaskFailedError(
            f"the task failed in {loop.stopped}; the run directory {run_dir} holds the batches measured before it"
        ) from loop.error
    return run


def _run_batches(
    cfg: TaskConfig,
    task: Task,
    recorder: Recorder,
    rec: BatchRecorder,
    interrupt: Interrupt,
    loop: _Loop,
    hooks: TaskHooks,
) -> None:
    """Idle baseline, then warm-up and measured batches until the data, max_batches, a signal or an error ends."""
    stop = lambda: bool(interrupt.count or recorder.error)  # noqa: E731
    if cfg.bench.idle_baseline_s > 0:
        hooks.notify("phase", f"measuring idle baseline for {cfg.bench.idle_baseline_s:g} s")
        loop.idle_w = recorder.measure_idle(cfg.bench.idle_baseline_s, stop)
    limit = None if cfg.task.max_batches is None else cfg.task.warmup_batches + cfg.task.max_batches
    prepared_batches = iter(task.batches())
    while True:
        if stop():
            loop.stopped = "signal" if interrupt.count else "writing samples failed"
            return
        index = len(loop.results)
        try:
            prepared = next(prepared_batches, None)  # reading, decoding: outside the batch's window
            if prepared is None:
                return
            with rec.batch(prepared.items) as b:
                output = task.run(prepared.payload)
        except Exception as exc:  # the data, the model or the user's code failed: keep what was measured, then say it
            loop.stopped = f"batch {index}: {type(exc).__name__}: {exc}"
            loop.error = exc
            return
        batch = rec.batches[index]
        loop.results.append(BatchResult(index, batch.warmup, batch.t0_ns, batch.t1_ns, b.items, output))
        if limit is not None and len(loop.results) >= limit:
            return


def _finish(
    cfg: TaskConfig,
    run_dir: Path,
    task: Task,
    meter: fastmeter.Meter,
    energy: BatchEnergy,
    measured: list[Batch],
    span: tuple[int, int] | None,
    loop: _Loop,
    delays_ns: dict[str, int],
    context: dict[str, Any],
    hooks: TaskHooks,
) -> dict[str, Any]:
    results = [r for r in loop.results if not r.warmup]
    unknown = {c.name: math.nan for c in meter.channels}  # nothing measured: unknown, not 0
    by_channel = span_energy_by_channel(meter, span, delays_ns) if span and span[1] > span[0] else unknown
    energy_j = math.fsum(by_channel[n] for n in counted_channels(meter))
    duration_s = (span[1] - span[0]) * 1e-9 if span else math.nan
    idle_w = loop.idle_w or {}
    idle_total_w = math.fsum(idle_w.get(n, 0.0) for n in counted_channels(meter)) if loop.idle_w else None
    info: dict[str, Any] = {"kind": cfg.task.kind, **task.describe()}
    figures: dict[str, Any] = {}
    item_columns: dict[str, list[Any]] = {}
    try:
        score = task.score(results) if results else TaskScore()
        figures, item_columns = score.figures, score.item_columns
    except Exception as exc:  # a failing scorer loses no measurement: the figures without accuracy are written
        figures["accuracy_error"] = f"{type(exc).__name__}: {exc}"
        hooks.notify("warning", f"scoring failed, no accuracy recorded: {figures['accuracy_error']}")
    items, attribution = items_table(task, meter, results, energy, span, delays_ns, idle_total_w, item_columns)
    summary = task_summary(measured, energy, energy_j, duration_s, figures, idle_total_w)
    summary["energy_bound_j"] = meter.span(*span).total_bound_j if span and span[1] > span[0] else math.nan
    summary.update(
        carbon_cost_summary(
            cfg.bench,
            {"energy_j": energy_j, "requests_ok": summary["items"], "output_tokens": summary.get("output_tokens") or 0},
        )
    )
    validity = combine(
        [
            meter_validity(meter, span) if span else meter_validity(meter),
            batches_validity(measured, energy, loop.stopped),
        ]
    )
    if loop.stopped and loop.stopped != "signal":
        info["error"] = loop.stopped
    write_arrow(items, run_dir / "items.arrow")
    run = {
        "format_version": RUN_FORMAT_VERSION,
        "fastmeter_version": fastmeter.__version__,
        "config": task_config_to_dict(cfg),
        "task": info,
        "fingerprint": context["fingerprint"],
        "calibration": context["calibration"],
        "counter_delay_ns": delays_ns,
        "summary": summary,
        "energy_by_channel_j": by_channel,
        "counted_channels": counted_channels(meter),
        "idle_baseline_w": idle_w,
        "span_ns": list(span) if span else None,
        "attribution": attribution,
        "sampler_stats": meter.stats(),
        "interrupted": context["signum"] is not None,
        "interrupted_by_signal": context["signum"],
        "validity": validity.to_dict(),
    }
    write_run_json(run_dir, run)
    hooks.notify("summary", render_task_summary(summary, validity))
    return run
