"""The figures of a task run: energy-to-solution, per item, per kWh, batch latency and accuracy per energy.

Energy-to-solution is the measured span's energy, from the first measured batch's start to the last one's end:
it includes preparing the data between batches. `batches_energy_j` is the part inside the batches' windows; the
items of a batch share its energy equally (text generation: the attribution kernel splits it by token instants)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastmeter.analysis.accuracy import accuracy_figures
from fastmeter.bench.summary import J_PER_KWH, verdict_line
from fastmeter.tasks.record import Batch, BatchEnergy
from fastmeter.validity import MAX_RELATIVE_BOUND, Reason, Validity, Verdict


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def _pct(values: Sequence[float], q: float) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.percentile(v, q)) if v else math.nan


def task_summary(
    measured: Sequence[Batch],
    energy: BatchEnergy,
    energy_j: float,
    duration_s: float,
    figures: dict[str, Any],
    idle_power_w: float | None,
) -> dict[str, Any]:
    """Summary of the measured batches. `energy` is aligned with `measured`; `figures` are the kind's (accuracy,
    tokens...)."""
    items = sum(b.items for b in measured)
    s: dict[str, Any] = {
        "items": items,
        "batches": len(measured),
        "duration_s": duration_s,
        "energy_j": energy_j,
        "avg_power_w": _div(energy_j, duration_s),
        "energy_per_item_j": _div(energy_j, items),
        "inferences_per_kwh": _div(items, energy_j / J_PER_KWH),
        "items_per_s": _div(items, duration_s),
        # NaN (not a partial sum) when any batch's energy is unknown.
        "batches_energy_j": math.fsum(energy.energy_j) if len(measured) else math.nan,
        "batch_latency_ms_p50": _pct([b.latency_ms for b in measured], 50),
        "batch_latency_ms_p99": _pct([b.latency_ms for b in measured], 99),
        "batch_energy_j_p50": _pct(list(energy.energy_j), 50),
    }
    tokens = figures.get("output_tokens")
    if tokens is not None:
        s["output_tokens_per_s"] = _div(tokens, duration_s)
        s["energy_per_output_token_j"] = _div(energy_j, tokens)
        s["output_tokens_per_j"] = _div(tokens, energy_j)
    s.update({k: v for k, v in figures.items() if k != "accuracy"})
    if figures.get("accuracy") is not None:
        s.update(accuracy_figures(float(figures["accuracy"]), energy_j))
    if idle_power_w is not None:
        s["idle_power_w"] = idle_power_w
        s["net_energy_j"] = energy_j - idle_power_w * duration_s
    return s


def batches_validity(measured: Sequence[Batch], energy: BatchEnergy, stopped: str | None) -> Validity:
    """What the batches say about the figures: none measured (invalid); per-batch bounds too wide for per-batch and
    per-item figures (degraded; the run's total has its own bound); stopped early by a signal or an error."""
    reasons = []
    if not measured:
        reasons.append(
            Reason(
                "no_measured_batch",
                "no batch ran after warm-up: there is no work to divide the "
                "energy by (lower [task].warmup_batches or give more data)",
                Verdict.INVALID,
            )
        )
    rel = energy.energy_bound_j / np.where(energy.energy_j > 0, energy.energy_j, np.nan)
    known = rel[~np.isnan(rel)]
    if known.size and float(np.median(known)) > MAX_RELATIVE_BOUND:
        ms = _pct([b.latency_ms for b in measured], 50)
        reasons.append(
            Reason(
                "batch_bound_above_limit",
                f"the median batch's energy bound is "
                f"{100 * float(np.median(known)):.0f}% of its energy (limit "
                f"{100 * MAX_RELATIVE_BOUND:.0f}%): batches of {ms:.3g} ms are short for the counters' "
                "update period, so per-batch and per-item energies are coarse (the run's total is "
                "bounded on its own)",
            )
        )
    if stopped:
        reasons.append(
            Reason(
                "interrupted" if stopped == "signal" else "task_error",
                "the run was interrupted: figures cover part of the task"
                if stopped == "signal"
                else f"a batch failed ({stopped}): figures cover the batches before it",
            )
        )
    return Validity(tuple(reasons))


SUMMARY_LINES = (
    ("items / batches", "{items} / {batches}"),
    ("duration", "{duration_s:.2f} s"),
    ("energy-to-solution", "{energy_j:.2f} J"),
    ("average power", "{avg_power_w:.1f} W"),
    ("J / item", "{energy_per_item_j:.4g}"),
    ("inferences / kWh", "{inferences_per_kwh:.4g}"),
    ("items / s", "{items_per_s:.1f}"),
    ("batch latency p50 / p99", "{batch_latency_ms_p50:.1f} / {batch_latency_ms_p99:.1f} ms"),
    ("J / output token", "{energy_per_output_token_j:.4g}"),
    ("TTFT p50 / p99", "{ttft_ms_p50:.1f} / {ttft_ms_p99:.1f} ms"),
    ("ITL p50 / p99", "{itl_ms_p50:.2f} / {itl_ms_p99:.2f} ms"),
    ("top-1 / top-5 accuracy", "{top1_accuracy:.4f} / {top5_accuracy:.4f}"),
    ("COCO mAP / mAP@.5", "{map:.4f} / {map_50:.4f}"),
    ("accuracy", "{accuracy:.4g}  ({accuracy_per_kwh:.4g} per kWh)"),
    ("idle baseline", "{idle_power_w:.1f} W"),
    ("net energy (above idle)", "{net_energy_j:.2f} J"),
)


def render_task_summary(s: dict[str, Any], validity: Validity) -> str:
    lines = [verdict_line(validity)]
    for label, fmt in SUMMARY_LINES:
        try:
            lines.append(f"{label:<26}{fmt.format(**s)}")
        except (KeyError, TypeError, ValueError):
            continue  # a figure this task does not have
    return "\n".join(lines)
