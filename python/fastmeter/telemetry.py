"""Telemetry beside energy: the long-format table (t_ns, channel, metric, value) the native sampler records on its
slower schedule, the names of NVML clocks-event (throttle) reasons, and the summaries and validity checks built on
it (docs/methodology.md, "Telemetry"; docs/format.md, "telemetry").
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastmeter.errors import SpanError
from fastmeter.validity import MAX_TEMPERATURE_DRIFT_C, Reason, Validity, Verdict

if TYPE_CHECKING:
    from fastmeter.meter import Meter

# 20 Hz: clocks, temperatures and utilization change over tens of ms at the fastest (NVML's utilization is itself a
# mean over 1/6 to 1 s), and nine NVML calls per GPU per poll stay a small share of a 1 kHz energy sampler's time.
DEFAULT_TELEMETRY_HZ = 20.0
MAX_TELEMETRY_HZ = 1000.0

TELEMETRY_SCHEMA = pa.schema(
    [
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("channel", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("metric", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)

# nvmlClocksEventReasons bits (nvml.h; FACTS.md "GPU telemetry fields").
REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Bits that do not slow a busy GPU below what was asked: idle (nothing to run), the application-clock and display
# settings (what the user configured). Every other bit is throttling.
NOT_THROTTLING = 0x1 | 0x2 | 0x100


def telemetry_path_for(trace: Path) -> Path:
    """Where a trace's telemetry goes: `run.arrow` -> `run-telemetry.arrow`, `run.parquet` -> `run-telemetry.parquet`
    (a rotated trace has one telemetry file for all its parts). Not `run.telemetry.arrow`: that would match the
    numbered parts' `run.*.arrow`."""
    return trace.with_name(f"{trace.stem}-telemetry{trace.suffix}")


def reason_names(mask: int) -> list[str]:
    """Named reasons of a clocks-event bitmask; unknown bits as hex."""
    names = [name for bit, name in REASON_BITS.items() if mask & bit]
    rest = mask & ~sum(REASON_BITS)
    if rest:
        names.append(f"0x{rest:x}")
    return names


def telemetry_table(
    series: Sequence[tuple[str, str]], t_ns: np.ndarray, index: np.ndarray, value: np.ndarray
) -> pa.Table:
    """Long-format table from native columns (index = position in `series`)."""
    idx = np.asarray(index, dtype=np.int64)
    columns = []
    for k in (0, 1):  # channel, metric: dictionary-encoded over their distinct names (pandas needs them unique)
        names = list(dict.fromkeys(s[k] for s in series))
        code_of = np.array([names.index(s[k]) for s in series], dtype=np.int32)
        codes = code_of[idx] if len(series) else np.zeros(0, dtype=np.int32)
        columns.append(pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.string())))
    return pa.Table.from_arrays(
        [pa.array(np.asarray(t_ns, dtype=np.int64)), *columns, pa.array(np.asarray(value, dtype=np.float64))],
        schema=TELEMETRY_SCHEMA,
    )


def series_of(table: pa.Table, channel: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(t_ns, value) of one series, in time order."""
    mask = pc.and_(
        pc.equal(table["channel"].cast(pa.string()), channel), pc.equal(table["metric"].cast(pa.string()), metric)
    )
    sub = table.filter(mask)
    t = sub["t_ns"].to_numpy()
    order = np.argsort(t, kind="stable")
    return t[order], sub["value"].to_numpy()[order]


def channels_with(table: pa.Table, metric: str) -> list[str]:
    sub = table.filter(pc.equal(table["metric"].cast(pa.string()), metric))
    return sorted(set(sub["channel"].cast(pa.string()).to_pylist()))


@dataclass(frozen=True)
class ThrottleInterval:
    """A stretch of consecutive polls whose clocks-event reasons held throttling bits. start_ns/stop_ns are the
    first and last poll that saw them (a throttle shorter than a poll period between two polls is not seen here;
    the cumulative throttle_*_ns counters catch those)."""

    channel: str
    start_ns: int
    stop_ns: int
    mask: int

    @property
    def reasons(self) -> list[str]:
        return reason_names(self.mask)


def throttle_intervals(table: pa.Table, t0_ns: int | None = None, t1_ns: int | None = None) -> list[ThrottleInterval]:
    """Intervals of throttling per GPU channel from `clocks_event_reasons`, within [t0_ns, t1_ns]."""
    out: list[ThrottleInterval] = []
    for ch in channels_with(table, "clocks_event_reasons"):
        t, v = series_of(table, ch, "clocks_event_reasons")
        keep = np.ones(len(t), dtype=bool)
        if t0_ns is not None:
            keep &= t >= t0_ns
        if t1_ns is not None:
            keep &= t <= t1_ns
        t, v = t[keep], v[keep]
        start = None
        mask = 0
        last = 0
        for ti, vi in zip(t.tolist(), v.tolist()):
            bits = int(vi) & ~NOT_THROTTLING
            if bits:
                if start is None:
                    start, mask = ti, 0
                mask |= bits
                last = ti
            elif start is not None:
                out.append(ThrottleInterval(ch, start, last, mask))
                start = None
        if start is not None:
            out.append(ThrottleInterval(ch, start, last, mask))
    return out


def throttle_counter_ns(table: pa.Table, t0_ns: int, t1_ns: int) -> dict[str, dict[str, float]]:
    """{channel: {metric: ns throttled}} from the cumulative throttle_*_ns counters: the difference between the last
    reading at or before t1_ns and the first at or after t0_ns (NaN with fewer than two readings)."""
    out: dict[str, dict[str, float]] = {}
    metrics = sorted(set(table["metric"].cast(pa.string()).to_pylist()))
    for metric in (m for m in metrics if m.startswith("throttle_") and m.endswith("_ns")):
        for ch in channels_with(table, metric):
            t, v = series_of(table, ch, metric)
            inside = (t >= t0_ns) & (t <= t1_ns)
            vals = v[inside]
            out.setdefault(ch, {})[metric] = float(vals[-1] - vals[0]) if len(vals) >= 2 else math.nan
    return out


def telemetry_validity(table: pa.Table, t0_ns: int, t1_ns: int) -> Validity:
    """Degraded when a GPU throttled (clocks-event reasons other than idle and the configured clocks, or a
    cumulative throttle counter that moved) or its temperature drifted by more than MAX_TEMPERATURE_DRIFT_C inside
    [t0_ns, t1_ns]. Each reason names the channel, the first instant and what happened."""
    reasons: list[Reason] = []
    seen: set[str] = set()
    for iv in throttle_intervals(table, t0_ns, t1_ns):
        seen.add(iv.channel)
        reasons.append(
            Reason(
                "gpu_throttled",
                f"{iv.channel} throttled ({', '.join(iv.reasons)}) from t={(iv.start_ns - t0_ns) / 1e9:.3f} s to "
                f"t={(iv.stop_ns - t0_ns) / 1e9:.3f} s into the span (the first and last poll that saw it): its "
                "clocks were held below what the work asked for, so energy and speed are not those of an "
                "unthrottled GPU",
                Verdict.DEGRADED,
                channel=iv.channel,
                t_ns=iv.start_ns,
            )
        )
    for ch, counters in throttle_counter_ns(table, t0_ns, t1_ns).items():
        moved = {m: ns for m, ns in counters.items() if ns > 0}
        if ch in seen or not moved:
            continue
        total_ms = sum(moved.values()) / 1e6
        names = ", ".join(m.removeprefix("throttle_").removesuffix("_ns") for m in moved)
        reasons.append(
            Reason(
                "gpu_throttled",
                f"{ch} throttle counters ({names}) grew by {total_ms:.1f} ms inside the span although no poll saw a "
                "throttle reason: it throttled between polls",
                Verdict.DEGRADED,
                channel=ch,
                t_ns=t0_ns,
            )
        )
    for ch in channels_with(table, "gpu_temp_c"):
        t, v = series_of(table, ch, "gpu_temp_c")
        inside = (t >= t0_ns) & (t <= t1_ns)
        if inside.sum() < 2:
            continue
        tv, vv = t[inside], v[inside]
        drift = float(vv.max() - vv.min())
        if drift > MAX_TEMPERATURE_DRIFT_C:
            first = int(tv[np.argmax(np.abs(vv - vv[0]) > MAX_TEMPERATURE_DRIFT_C)])
            reasons.append(
                Reason(
                    "gpu_temperature_drift",
                    f"{ch} temperature moved {drift:.0f} C inside the span ({vv.min():.0f}-{vv.max():.0f} C, past "
                    f"{MAX_TEMPERATURE_DRIFT_C:.0f} C by t={(first - t0_ns) / 1e9:.3f} s): leakage power grows with "
                    "temperature, so the GPU was not in a steady state; warm it up before measuring",
                    Verdict.DEGRADED,
                    channel=ch,
                    t_ns=first,
                )
            )
    return Validity(tuple(reasons))


def meter_telemetry_validity(meter: Meter, t0_ns: int, t1_ns: int) -> Validity:
    """`telemetry_validity` over what the meter still holds of [t0_ns, t1_ns]. When older readings have left RAM
    (a span longer than keep_samples_s) the rest is judged and a `telemetry_partly_judged` note (verdict measured)
    says from when: throttling before it is not seen here (the telemetry file has it)."""
    if not meter.telemetry_series:
        return Validity()
    try:
        return telemetry_validity(meter.telemetry(t0_ns, t1_ns), t0_ns, t1_ns)
    except SpanError:
        # What is still in RAM, from the oldest kept reading on (judged after the meter stopped, nothing moves).
        kept = meter.telemetry_range(int(meter.stats()["telemetry_dropped_from_ram"]))
        kept = kept.filter(pc.less_equal(kept["t_ns"], t1_ns))
        first = int(kept["t_ns"].to_numpy().min()) if kept.num_rows else t1_ns
        note = Reason(
            "telemetry_partly_judged",
            f"throttling and temperature were judged from t={(first - t0_ns) / 1e9:.1f} s into the span on (the "
            "meter keeps keep_samples_s of telemetry in RAM); the telemetry file holds the rest",
            Verdict.MEASURED,
            t_ns=first,
        )
        return telemetry_validity(kept, first, t1_ns).with_reasons([note])


TELEMETRY_FIX = "it was not written by fastmeter, or is damaged; record it again"


def open_telemetry(path: str | Path) -> tuple[dict[str, Any], Iterator[pa.RecordBatch]]:
    """A telemetry file's fastmeter metadata ({format_version, realtime_anchor, telemetry: {hz, series,
    unavailable}, complete?}) and its record batches, read one at a time (a finished IPC or Parquet file, or the
    stream of a killed recorder up to its last flush)."""
    from fastmeter.errors import FastmeterError
    from fastmeter.io.read import read_batches
    from fastmeter.io.schema import METADATA_KEY
    from fastmeter.io.shape import FLOAT, INT64, STRINGS, check_columns

    p = Path(path)
    try:
        batches = read_batches(p)
        first = next(batches, None)
    except (OSError, pa.ArrowInvalid) as e:
        raise FastmeterError(f"{p} is not a readable telemetry file: {e}") from None
    if first is None or METADATA_KEY not in (first.schema.metadata or {}):
        raise FastmeterError(f"{p} is not a fastmeter telemetry file (no fastmeter metadata); {TELEMETRY_FIX}")
    columns = {"t_ns": INT64, "channel": STRINGS, "metric": STRINGS, "value": FLOAT}
    check_columns(pa.Table.from_batches([first]), columns, str(p), TELEMETRY_FIX)
    return json.loads(first.schema.metadata[METADATA_KEY]), itertools.chain([first], batches)


def read_telemetry(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """A telemetry file loaded whole: its table and metadata (see `open_telemetry`)."""
    meta, batches = open_telemetry(path)
    rows = [b for b in batches if b.num_rows]
    table = pa.Table.from_batches(rows) if rows else TELEMETRY_SCHEMA.empty_table()
    return table, meta
