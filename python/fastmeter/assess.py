"""Judge a meter's record: which `Validity` its figures carry (docs/methodology.md, "Validity").

Three questions, each answered from what was actually observed, never from what was asked for:
- Where did the numbers come from? The synthetic waveform, an emulator or fake tree named by a FASTMETER_* override,
  or hardware.
- Did every counted channel keep working? A channel that failed stops contributing at its last sample; a span that
  runs past that instant has no measurement for the rest.
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
    from fastmeter.sources import SourceInfo

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
    sources: Sequence[str], skipped: Sequence[SourceInfo] = (), overrides: Mapping[str, str] | None = None
) -> Validity:
    """Synthetic when a source is the synthetic waveform (asked for, or "auto" found no hardware) or reads an
    emulator through an override; measured otherwise."""
    overrides = overrides_in_effect() if overrides is None else overrides
    reasons = []
    if "synthetic" in sources:
        if skipped:  # "auto" fell back: say what hardware was missing and why
            why = "; ".join(f"{s.name}: {s.reason.splitlines()[0]}" for s in skipped)
            reasons.append(
                Reason(
                    "synthetic_fallback",
                    "no hardware source is available, so these numbers are "
                    f"the synthetic waveform, not a measurement ({why})",
                    Verdict.SYNTHETIC,
                )
            )
        else:
            reasons.append(
                Reason(
                    "synthetic_source",
                    "the synthetic source was asked for: these numbers are a synthetic waveform, not a measurement",
                    Verdict.SYNTHETIC,
                )
            )
    for source in sources:
        for name in EMULATING_OVERRIDES.get(source, ()):
            if name in overrides:
                reasons.append(
                    Reason(
                        "emulated_source",
                        f"{source} reads {name}={overrides[name]}: an emulator "
                        "or a fake tree, not this machine's hardware",
                        Verdict.SYNTHETIC,
                    )
                )
    return Validity(tuple(reasons))


def _channel_times(meter: Meter) -> dict[str, np.ndarray]:
    t = meter.samples()
    t_ns = t.column("t_ns").to_numpy()
    idx = t.column("channel").combine_chunks().indices.to_numpy(zero_copy_only=False)
    names = meter.channel_names
    return {n: np.sort(t_ns[idx == i]) for i, n in enumerate(names)}


def channel_failures(meter: Meter) -> dict[str, int]:
    """{channel: instant of its last good sample} for each channel that failed: nothing is known after it."""
    errors = meter.stats()["errors"]
    if not errors:
        return {}
    times = _channel_times(meter)
    return {n: int(times[n][-1]) if len(times[n]) else meter.start_ns for n in errors}


def sampler_validity(stats: Mapping[str, Any], period_us: int) -> Validity:
    """Missed deadlines and dropped samples, from the sampler's own statistics."""
    reasons = []
    missed, polls = int(stats.get("missed") or 0), int(stats.get("polls") or 0)
    if missed + polls and missed / (missed + polls) > MAX_MISSED_SHARE:
        share = missed / (missed + polls)
        reasons.append(
            Reason(
                "missed_deadlines",
                f"the sampler skipped {missed} of {missed + polls} deadlines "
                f"({share:.1%} > {MAX_MISSED_SHARE:.0%}) at {period_us} us: the host starved it",
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


def record_validity(meter: Meter, span_ns: tuple[int, int] | None = None) -> Validity:
    """Channel failures, stale counters and poll gaps inside `span_ns` (default: the whole record), plus the
    sampler's statistics. Only counted channels (`in_total`) decide: the others are shown, not summed."""
    stats = meter.stats()
    lo, hi = span_ns if span_ns is not None else (meter.start_ns, meter.stop_ns or time.monotonic_ns())
    times = _channel_times(meter)
    periods = stats["update_period_s"]
    reasons: list[Reason] = []
    failed = channel_failures(meter)
    for c in meter.channels:
        if not c.in_total:
            continue
        # Over the whole record any failure loses data: the record ends at the stop, after the channel's last sample.
        if c.name in failed and (span_ns is None or failed[c.name] < hi):
            reasons.append(
                Reason(
                    "channel_failed",
                    f"channel {c.name} failed ({stats['errors'][c.name]}); nothing is measured after its last sample",
                    Verdict.INVALID,
                    c.name,
                    failed[c.name],
                )
            )
            continue
        t = times[c.name]
        inside = t[(t >= lo) & (t <= hi)]
        period_s = periods.get(c.name, math.nan)
        if c.has_counter and math.isnan(period_s):
            reasons.append(
                Reason(
                    "counter_stale",
                    f"channel {c.name}'s counter did not update (twice) while it was read: its energy is not measured",
                    Verdict.INVALID,
                    c.name,
                )
            )
            continue
        # Gaps around the span's edges count too: they decide where the edges' energy lies.
        around = t[max(0, np.searchsorted(t, lo) - 1) : np.searchsorted(t, hi, side="right") + 1]
        gap_ns = int(np.max(np.diff(around))) if len(around) > 1 else 0
        # A power-only channel has no observed update period: its readings are due every poll.
        update_ns = meter.period_us * 1e3 if math.isnan(period_s) else period_s * 1e9
        limit_ns = max(MAX_GAP_UPDATE_PERIODS * update_ns, GAP_JITTER_PERIODS * meter.period_us * 1e3)
        if gap_ns > limit_ns:
            reasons.append(
                Reason(
                    "poll_gap",
                    f"channel {c.name} went {gap_ns / 1e6:.1f} ms unread (it updates every "
                    f"{update_ns / 1e6:.1f} ms): an update's instant may be off by the gap",
                    channel=c.name,
                )
            )
        if c.has_counter and len(inside) and period_s * 1e9 > (hi - lo):
            reasons.append(
                Reason(
                    "counter_stale",
                    f"the span ({(hi - lo) / 1e6:.1f} ms) is shorter than channel "
                    f"{c.name}'s update period ({period_s * 1e3:.1f} ms): its energy is interpolated "
                    "between updates outside it",
                    channel=c.name,
                )
            )
    return combine([Validity(tuple(reasons)), sampler_validity(stats, meter.period_us)])


def meter_validity(meter: Meter, span_ns: tuple[int, int] | None = None) -> Validity:
    """Everything the meter alone can say about the figures of `span_ns`: source, channels, sampler."""
    return combine([source_validity(meter.sources, meter.skipped_sources), record_validity(meter, span_ns)])
