"""Judge a meter's record: which `Validity` its figures carry (docs/methodology.md, "Validity").

Three questions, each answered from what was actually observed, never from what was asked for:
- Where did the numbers come from? The synthetic waveform, an emulator or fake tree named by a FASTMETER_* override,
  or hardware.
- Did every counted channel keep working, and did its counter update? `Meter.span` answers for a span (with its
  error bound); a whole record is judged here. A channel that failed has no measurement after its last sample.
- Did the GPU throttle, or its temperature drift, inside the span (fastmeter/telemetry.py)?
- Was the sampler able to keep time? Missed deadlines, dropped samples and poll gaps longer than the counter's
  update period each widen the error of the span's edges.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fastmeter.errors import SpanError
from fastmeter.span import synthetic_reason
from fastmeter.telemetry import meter_telemetry_validity
from fastmeter.validity import (
    GAP_JITTER_PERIODS,
    MAX_GAP_UPDATE_PERIODS,
    MAX_MISSED_SHARE,
    Reason,
    Validity,
    Verdict,
    combine,
)

if TYPE_CHECKING:
    from fastmeter.meter import Meter
    from fastmeter.sources import Channel, SourceInfo

OVERRIDE_PREFIX = "FASTMETER_"
# Which overrides replace the hardware a source reads: with one set, that source reads an emulator or a fake tree.
EMULATING_OVERRIDES: dict[str, tuple[str, ...]] = {
    "nvml": ("FASTMETER_NVML_LIBRARY",),
    "rapl": ("FASTMETER_POWERCAP_ROOT",),
    "rapl-msr": ("FASTMETER_MSR_ROOT", "FASTMETER_SYSFS_CPU_ROOT", "FASTMETER_CPUINFO"),
}


def overrides_in_effect(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every FASTMETER_* variable set in the environment, by name (recorded with each run)."""
    env = os.environ if environ is None else environ
    return {k: env[k] for k in sorted(env) if k.startswith(OVERRIDE_PREFIX)}


def source_validity(
    sources: Sequence[str],
    skipped: Sequence[SourceInfo] = (),
    overrides: Mapping[str, str] | None = None,
    channels: Sequence[Channel] = (),
) -> Validity:
    """Synthetic when a counted channel is the synthetic waveform (asked for, or "auto" found no hardware; the
    reason is the one `Meter.span` gives) or a source reads an emulator through an override; measured otherwise."""
    overrides = overrides_in_effect() if overrides is None else overrides
    reasons = [synthetic_reason(c) for c in channels if c.in_total and c.domain == "synthetic"]
    if "synthetic" in sources and skipped:  # "auto" fell back: say what hardware was missing and why
        why = "; ".join(f"{s.name}: {s.reason.splitlines()[0]}" for s in skipped)
        reasons.append(
            Reason(
                "synthetic_fallback",
                f"no hardware source is available, so these numbers are the synthetic waveform, not a measurement "
                f"({why})",
                Verdict.SYNTHETIC,
            )
        )
    for source in sources:
        for name in EMULATING_OVERRIDES.get(source, ()):
            if name in overrides:
                reasons.append(
                    Reason(
                        "emulated_source",
                        f"{source} reads {name}={overrides[name]}: an emulator or a fake tree, not this machine's "
                        "hardware",
                        Verdict.SYNTHETIC,
                    )
                )
    return Validity(tuple(reasons))


def _channel_times(meter: Meter) -> dict[str, np.ndarray]:
    """Sample instants per channel, of the samples the Meter still holds (its keep_samples_s window): older ones
    left RAM (a long trace or bench run has them on disk only). Where a span reaches before them, the poll-gap check
    takes the sampler's largest gap over the whole record instead (`stats()["channels"]`)."""
    while True:
        try:
            t = meter.samples(int(meter.stats()["samples_dropped_from_ram"]))
            break
        except SpanError:  # more left RAM between the two calls (a running meter): read from the new start
            continue
    t_ns = t.column("t_ns").to_numpy()
    idx = t.column("channel").combine_chunks().indices.to_numpy(zero_copy_only=False)
    names = meter.channel_names
    return {n: np.sort(t_ns[idx == i]) for i, n in enumerate(names)}


def measured_until_ns(meter: Meter) -> dict[str, int]:
    """{channel: instant of its last good sample} for each channel that failed: the record of it ends there
    (`Meter.failed_at_ns` is the first failed reading, a poll later)."""
    failed = {n: t for n, t in meter.failed_at_ns.items() if t is not None}
    if not failed:
        return {}
    times = _channel_times(meter)
    # A failure before the RAM window: its last good sample has left RAM; it was the poll before the failed one.
    before = {
        n: int(t - meter.period_us * 1000) if meter.stats()["samples_dropped_from_ram"] else meter.start_ns
        for n, t in failed.items()
    }
    return {n: int(times[n][times[n] < t][-1]) if np.any(times[n] < t) else before[n] for n, t in failed.items()}


def sampler_validity(stats: Mapping[str, Any], period_us: int) -> Validity:
    """Missed deadlines and dropped samples, from the sampler's own statistics."""
    reasons = []
    share = float(stats["missed_share"])  # missed / deadlines due (an adaptive schedule skips some by design)
    if share > MAX_MISSED_SHARE:
        reasons.append(
            Reason(
                "missed_deadlines",
                f"the sampler missed {stats['missed']} deadlines ({share:.1%} > {MAX_MISSED_SHARE:.0%}) at "
                f"{period_us} us (scheduling {stats.get('sched_policy', '?')}): the host starved it",
            )
        )
    dropped = int(stats.get("dropped") or 0)
    if dropped:
        reasons.append(
            Reason(
                "samples_dropped",
                f"{dropped} samples were dropped (the ring was full): the curve is interpolated across the gaps",
            )
        )
    return Validity(tuple(reasons))


def _record_channel_reasons(meter: Meter, c: Channel, period_s: float) -> list[Reason]:
    """A whole record's channel verdicts (Meter.span judges spans): a failure anywhere loses the rest of the
    record; a counter seen to change less than twice has no measured energy."""
    failed_at = meter.failed_at_ns[c.name]
    if failed_at is not None:
        error = meter.stats()["errors"].get(c.name, "")
        return [
            Reason(
                "channel_failed",
                f"{c.name} failed at t_ns={failed_at} ({error}): nothing is measured after its last sample",
                Verdict.INVALID,
                c.name,
                failed_at,
            )
        ]
    if c.has_counter and math.isnan(period_s):
        return [
            Reason(
                "counter_not_updated",
                f"{c.name}'s counter did not update (twice) while it was read: its energy is unknown",
                Verdict.INVALID,
                c.name,
            )
        ]
    return []


def record_validity(meter: Meter, span_ns: tuple[int, int] | None = None) -> Validity:
    """Channel verdicts of `span_ns` (`Meter.span`: failure, counter not updated, provisional end, error bound) or,
    without a span, of the whole record; poll gaps in and around it; the sampler's statistics. Only counted
    channels (`in_total`) decide: the others are shown, not summed."""
    stats = meter.stats()
    stop_ns = meter.stop_ns or time.monotonic_ns()
    lo, hi = span_ns if span_ns is not None else (meter.start_ns, stop_ns)
    times = _channel_times(meter)
    periods = stats["update_period_s"]
    reasons: list[Reason] = []
    # The record may end before the span does (a lost channel, a stop): Meter.span judges the part inside it.
    judged_by_span = span_ns is not None and min(hi, stop_ns) > lo
    if judged_by_span:
        reasons += meter.span(lo, min(hi, stop_ns)).validity.reasons
    for c in meter.channels:
        if not c.in_total:
            continue
        period_s = periods.get(c.name, math.nan)
        if not judged_by_span:
            reasons += _record_channel_reasons(meter, c, period_s)
        # Gaps around the span's edges count too: they decide where the edges' energy lies.
        t = times[c.name]
        around = t[max(0, np.searchsorted(t, lo) - 1) : np.searchsorted(t, hi, side="right") + 1]
        gap_ns = int(np.max(np.diff(around))) if len(around) > 1 else 0
        if stats["samples_dropped_from_ram"] and (len(t) == 0 or lo < t[0]):
            # Samples of the span left RAM: their gaps are known only as the record's largest, which counts then.
            gap_ns = max(gap_ns, int(stats["channels"].get(c.name, {}).get("poll_gap_max_ns", 0) or 0))
        # A power-only channel has no observed update period: its readings are due every poll.
        update_ns = meter.period_us * 1e3 if math.isnan(period_s) else period_s * 1e9
        limit_ns = max(MAX_GAP_UPDATE_PERIODS * update_ns, GAP_JITTER_PERIODS * meter.period_us * 1e3)
        planned_ns = _planned_gap_ns(stats, c.name)
        if planned_ns is not None:  # adaptive: a gap between planned bands is the plan, not starvation
            limit_ns = max(limit_ns, planned_ns + GAP_JITTER_PERIODS * meter.period_us * 1e3)
        if gap_ns > limit_ns:
            reasons.append(
                Reason(
                    "poll_gap",
                    f"channel {c.name} went {gap_ns / 1e6:.1f} ms unread (it updates every "
                    f"{update_ns / 1e6:.1f} ms): an update's instant may be off by the gap",
                    channel=c.name,
                )
            )
    reasons += _schedule_notes(stats)
    return combine([Validity(tuple(reasons)), sampler_validity(stats, meter.period_us)])


def _planned_gap_ns(stats: Mapping[str, Any], channel: str) -> float | None:
    """The longest gap the adaptive schedule plans between a channel's polls: its locked update period, when every
    field of the channel is locked or quiet (else some field keeps it on every period: None)."""
    fields = stats.get("schedule", {}).get(channel, {}).get("fields", {})
    periods = [f["period_s"] for f in fields.values() if f["state"] == "locked"]
    if not periods or any(f["state"] not in ("locked", "quiet") for f in fields.values()):
        return None
    return max(periods) * 1e9


def _schedule_notes(stats: Mapping[str, Any]) -> list[Reason]:
    """Misses and re-locks of the adaptive schedule, reported without changing the verdict: after a miss the
    channel is polled every period until it re-locks, and the poll-gap check above judges any update that may
    have gone unseen at its instant."""
    notes = []
    for channel, sched in stats.get("schedule", {}).items():
        if sched["misses"] or sched["relocks"]:
            notes.append(
                Reason(
                    "schedule_relock",
                    f"channel {channel}: the adaptive schedule missed {sched['misses']} expected updates and "
                    f"re-locked {sched['relocks']} times (polled every period in between)",
                    Verdict.MEASURED,
                    channel,
                )
            )
    return notes


def meter_validity(meter: Meter, span_ns: tuple[int, int] | None = None) -> Validity:
    """Everything the meter alone can say about the figures of `span_ns`: source, channels, sampler."""
    sources = source_validity(meter.sources, meter.skipped_sources, channels=meter.channels)
    lo, hi = span_ns if span_ns is not None else (meter.start_ns, meter.stop_ns or time.monotonic_ns())
    return combine([sources, record_validity(meter, span_ns), meter_telemetry_validity(meter, lo, hi)])
