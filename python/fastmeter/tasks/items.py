"""items.arrow: one row per item of the measured batches, with its share of the energy.

Items share their batch's energy equally ("batch-share"). A kind that stamps each item's tokens (text generation)
has its items attributed by the same kernel as server requests ("time-share" over the measured span, with
prefill/decode split at the first token), so the items' energies plus the idle time between them add up to the
span's energy. The columns `warmup, send_ns, end_ns, completion_tokens, energy_j, prefill_energy_j,
decode_energy_j` are those `fastmeter report` and `compare` read from requests.arrow, with the same meaning."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from fastmeter.bench.energy import attribute_requests, meter_curve
from fastmeter.bench.point import ENERGY_COLUMNS
from fastmeter.meter import Meter
from fastmeter.tasks.base import BatchResult, Task
from fastmeter.tasks.record import BatchEnergy

BATCH_SHARE = {
    "method": "batch-share",
    "reason": "each item is its batch's energy divided by the batch's items; "
    "energy between batches (preparing data) is in the run's energy_j, not in any item",
}


def _column(values: list[Any]) -> pa.Array:
    if any(isinstance(v, float) for v in values):
        x = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        return pa.array(x, pa.float64(), mask=np.isnan(x))
    return pa.array(values)


def items_table(
    task: Task,
    meter: Meter,
    results: Sequence[BatchResult],
    energy: BatchEnergy,
    span: tuple[int, int] | None,
    delays_ns: dict[str, int],
    idle_power_w: float | None,
    kind_columns: dict[str, list[Any]],
) -> tuple[pa.Table, dict[str, Any]]:
    """(items.arrow, run.json's `attribution`). `results` and `energy` are the measured batches, aligned."""
    n_items = [r.items for r in results]
    n = sum(n_items)
    batch = np.repeat([r.index for r in results], n_items).astype(np.int64)
    send = np.repeat([r.t0_ns for r in results], n_items).astype(np.int64)
    end = np.repeat([r.t1_ns for r in results], n_items).astype(np.int64)
    first: list[int | None] = [None] * n
    tokens: list[int | None] = [None] * n
    cols = {k: np.full(n, np.nan) for k in ENERGY_COLUMNS}
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["energy_j"] = np.repeat(energy.energy_j / np.maximum(n_items, 1), n_items) if n else np.zeros(0)
        cols["uncertainty_j"] = np.repeat(energy.energy_bound_j / np.maximum(n_items, 1), n_items) if n else np.zeros(0)
    if idle_power_w is not None and n:
        cols["net_energy_j"] = cols["energy_j"] - idle_power_w * (end - send) * 1e-9 / np.repeat(n_items, n_items)
    info: dict[str, Any] = dict(BATCH_SHARE)
    records = task.item_events(results)
    if records is not None and span is not None and span[1] > span[0] and records:
        periods = [p for p in meter.stats()["update_period_s"].values() if not math.isnan(p)]  # type: ignore[union-attr]
        a, uncertainty = attribute_requests(
            meter_curve(meter, delays_ns), records, span, "time-share", idle_power_w, max(periods, default=math.nan)
        )
        for k in ENERGY_COLUMNS:
            cols[k] = np.asarray(getattr(a, k), dtype=np.float64)
        send = np.array([r.send_ns for r in records], dtype=np.int64)
        end = np.array([r.end_ns for r in records], dtype=np.int64)
        first = [r.first_token_ns for r in records]
        tokens = [r.completion_tokens for r in records]
        info = {
            "method": "time-share",
            "total_j": a.total_j,
            "idle_j": a.idle_j,
            "idle_s": a.idle_s,
            "requests_j": math.fsum(a.energy_j),
            "update_period_s": a.update_period_s,
            **uncertainty,
        }
    table = {
        "item": pa.array(np.arange(n, dtype=np.int64)),
        "batch": pa.array(batch),
        "warmup": pa.array(np.zeros(n, dtype=bool)),
        "send_ns": pa.array(send, pa.int64()),
        "first_token_ns": pa.array(first, pa.int64()),
        "end_ns": pa.array(end, pa.int64()),
        "completion_tokens": pa.array(tokens, pa.int64()),
        **{k: pa.array(v, pa.float64(), mask=np.isnan(v)) for k, v in cols.items()},
    }
    for name, values in kind_columns.items():
        if len(values) == n and name not in table:
            table[name] = _column(values)
    return pa.table(table), info
