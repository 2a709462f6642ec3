"""The `Meter`: what other harnesses import. A thin layer over the native sampler in `fastmeter._core`."""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa

from fastmeter import _core
from fastmeter.env.readers import procfs_root
from fastmeter.errors import ConfigError, MeterStateError, SourceUnavailableError, SpanError
from fastmeter.sources import (
    HARDWARE_SOURCES,
    Channel,
    SourceInfo,
    auto_options,
    check_source_name,
    probe_source,
)
from fastmeter.span import SpanResult, span_result
from fastmeter.telemetry import DEFAULT_TELEMETRY_HZ, MAX_TELEMETRY_HZ, telemetry_table
from fastmeter.window import Window

MIN_PERIOD_US = 50
MAX_PERIOD_US = 10_000_000
SCHEDULES = ("fixed", "adaptive")
# How long a window's result waits for the counters' next update at most, whatever their observed period.
MAX_WAIT_FINAL_S = 1.0
# Until a channel's update period has been observed, a result waits for this one (by channel domain) before calling
# a counter unknown: A100/H100 energy counters refresh about every 100 ms (FACTS.md); others at the poll period.
NOMINAL_UPDATE_PERIOD_S = {"gpu": 0.1}
# Added to every wait: on a loaded host the sampler's polls come tens of ms late, and a result that gives up before
# the next poll would be provisional for nothing. The wait ends as soon as every counter has updated.
SCHEDULING_SLACK_S = 0.1
# Raw samples kept in RAM by default: a minute is enough for a recorder that flushes every few seconds to fall
# behind without losing anything, and 10 channels at 1 kHz cost ~17 MB (28 bytes a sample).
KEEP_SAMPLES_S = 60.0

# Beyond that window, knots are thinned to this resolution (100 knots/s/channel, ~2.5 kB/s/channel).
KNOT_RESOLUTION_US = 10_000
# A year: bounds keep_samples_s so its nanoseconds fit an int64 with room to spare.
MAX_KEEP_SAMPLES_S = 365 * 86400.0

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("channel", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("energy_j", pa.float64(), nullable=False),
        pa.field("power_w", pa.float64()),
    ]
)


def _resolve_sources(
    sources: str | Iterable[str], options: Mapping[str, Mapping[str, str]]
) -> tuple[list[tuple[str, dict[str, str]]], list[SourceInfo]]:
    """(sources to open, hardware sources "auto" left out and why). "auto" = every hardware source that works
    here, else the synthetic one."""
    if isinstance(sources, str):
        sources = (sources,)
    names = list(sources)
    if not names:
        raise ConfigError('no sources given; pass e.g. sources=("nvml", "rapl") or sources="auto"')
    for n in names:
        if n != "auto":
            check_source_name(n)
    for n in options:
        check_source_name(n)
    skipped: list[SourceInfo] = []
    if names == ["auto"]:
        given = options
        options = {n: auto_options(n, options.get(n)) for n in HARDWARE_SOURCES}
        infos = [probe_source(n, options[n]) for n in HARDWARE_SOURCES]
        # Hardware asked for is hardware required: a source the caller configured (e.g. nvml gpus="5") or one
        # rejecting its options must not quietly drop out of "auto" and leave the synthetic waveform measuring.
        for i in infos:
            if not i.available and (i.kind == "config" or given.get(i.name)):
                raise SourceUnavailableError(f"{i.name} was asked for but cannot be used: {i.reason}")
        found = [i.name for i in infos if i.available]
        skipped = [i for i in infos if not i.available or i.left_out]
        # rapl-msr reads the same counters as rapl: prefer the sysfs interface when both work.
        if "rapl" in found and "rapl-msr" in found:
            found.remove("rapl-msr")
        names = found or ["synthetic"]
    elif "auto" in names:
        raise ConfigError('"auto" cannot be combined with named sources')
    return [(n, {k: str(v) for k, v in options.get(n, {}).items()}) for n in dict.fromkeys(names)], skipped


class Meter:
    """Samples power/energy counters on a native thread and answers energy questions on CLOCK_MONOTONIC ns.

    >>> with Meter(sources="synthetic", period_us=1000) as m:
    ...     with m.window("work") as w:
    ...         pass
    >>> w.energy_j >= 0
    True

    sources: "auto" (every hardware source that works here, else "synthetic") or names from
        `fastmeter.sources.SOURCE_NAMES`. source_options: {source: {option: value}}, e.g.
        {"nvml": {"gpus": "0,GPU-8f3e..."}}.
    period_us: sampling period, 50 (20 kHz) to 10_000_000.
    spin_us: busy-wait before each deadline; default 40 us below a 200 us period, else 0 (sleep only, the cheap
        choice). 50 at 1 kHz trades ~5% of a core for p99 deadline lateness of tens of us.
    ring_capacity: samples the ring holds between drains (at every query, and on a timer that wakes when a
        quarter of it, or 16k samples, should have arrived); a full ring drops and counts.
    keep_samples_s: raw samples stay readable through `samples()` for this long (also bounded by the count the
        nominal rate gives for it); older ones leave RAM, a chunk of 8192 samples at a time, so up to 8192 more stay
        (8 s of one channel at 1 kHz). 0 keeps none. Long runs stream samples to a file with the
        recorder (`fastmeter trace`) instead of keeping them here.
    knot_resolution_us: knots (what energy queries read) older than keep_samples_s are thinned to this
        resolution, keeping each kept knot's cumulative energy exact (docs/methodology.md, "Knot decimation");
        0 keeps every knot.
    history_dir: where that thinned history (and the error bound's change points) goes, as an unlinked file, so a
        run of any length keeps flat RSS (docs/architecture.md, "What stays in RAM"). Default:
        $FASTMETER_HISTORY_DIR, else the system temp directory; "" keeps it in RAM. A directory given here that
        cannot hold the file is an error; when the default one cannot, the history stays in RAM and
        stats()["history_error"] says why.
    wait_final_s: how long a window's result waits for the counters' next update after its end, 0 to 1 s
        (default: 1.5 update periods, observed or else nominal, at most 1 s); then the value is provisional.
    schedule: "fixed" polls every source at every period; "adaptive" learns when each hardware field (NVML
        counter, power) updates and polls only within a guard band around expected updates, falling back to every
        period on a miss (stats()["schedule"] shows lock states); continuous counters (RAPL) stay on every period.
        None (the default): "adaptive" when an NVML source is read, else "fixed" (RAPL and the synthetic source
        change at every poll, so there is nothing to skip); `Meter.schedule` says which.
    telemetry_hz: rate of the telemetry schedule (utilization, clocks, temperatures, power limit, throttle reasons of
        each NVML GPU; CPU utilization and frequency), read by the same sampler thread on its own grid, between
        energy deadlines; 0 turns it off. `telemetry()` returns the readings.
    realtime: ask for SCHED_FIFO (lowest real-time priority) for the sampler thread, so CPU-bound neighbours
        cannot starve it; without the privilege it stays SCHED_OTHER. stats()["sched_policy"] says which.

    Lifecycle: new -> running -> stopping -> stopped -> closed (`state`). start/stop/close may be called from any
    thread; concurrent stops all return once the record is complete. In a child forked while the meter runs, the
    child's copy is stopped at the fork (the record up to the fork stays readable).
    """

    def __init__(
        self,
        sources: str | Iterable[str] = "auto",
        period_us: int = 1000,
        *,
        source_options: Mapping[str, Mapping[str, str]] | None = None,
        spin_us: int | None = None,
        ring_capacity: int = 1 << 20,
        wait_final_s: float | None = None,
        schedule: str | None = None,
        realtime: bool = True,
        keep_samples_s: float = KEEP_SAMPLES_S,
        knot_resolution_us: int = KNOT_RESOLUTION_US,
        telemetry_hz: float = DEFAULT_TELEMETRY_HZ,
        history_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(period_us, (int, np.integer)) or not MIN_PERIOD_US <= period_us <= MAX_PERIOD_US:
            raise ConfigError(
                f"period_us={period_us!r} is out of range; use an integer from {MIN_PERIOD_US} (20 kHz) "
                f"to {MAX_PERIOD_US} (0.1 Hz)"
            )
        if spin_us is not None and not 0 <= spin_us <= period_us:
            raise ConfigError(f"spin_us={spin_us!r} must be within 0..period_us ({period_us})")
        if schedule is not None and schedule not in SCHEDULES:
            raise ConfigError(f"schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")
        if ring_capacity < 1024:
            raise ConfigError(f"ring_capacity={ring_capacity} is too small; use at least 1024 samples")
        if wait_final_s is not None and not 0 <= wait_final_s <= MAX_WAIT_FINAL_S:
            raise ConfigError(f"wait_final_s={wait_final_s!r} must be within 0..{MAX_WAIT_FINAL_S} s")
        if not isinstance(keep_samples_s, (int, float)) or not 0 <= keep_samples_s <= MAX_KEEP_SAMPLES_S:
            raise ConfigError(
                f"keep_samples_s={keep_samples_s!r} must be a number of seconds from 0 to {MAX_KEEP_SAMPLES_S:.0f}; "
                "stream longer runs to a file with the recorder (`fastmeter trace`)"
            )
        if not isinstance(knot_resolution_us, (int, np.integer)) or knot_resolution_us < 0:
            raise ConfigError(f"knot_resolution_us={knot_resolution_us!r} must be an integer >= 0 (0 = keep all)")
        if not isinstance(telemetry_hz, (int, float)) or not 0 <= telemetry_hz <= MAX_TELEMETRY_HZ:
            raise ConfigError(
                f"telemetry_hz={telemetry_hz!r} must be a rate from 0 (off) to {MAX_TELEMETRY_HZ:.0f} Hz, e.g. 20"
            )
        self.telemetry_hz = float(telemetry_hz)
        specs, skipped = _resolve_sources(sources, source_options or {})
        # With sources="auto": hardware sources left out, or partly left out (SourceInfo.left_out), and why
        # ("permission" ones name the fix).
        self.skipped_sources: list[SourceInfo] = skipped
        self.period_us = int(period_us)
        self.keep_samples_s = float(keep_samples_s)
        self._wait_final_s = wait_final_s
        if schedule is None:
            schedule = "adaptive" if any(n == "nvml" for n, _ in specs) else "fixed"
        self.schedule: str = schedule
        self._history_error = ""
        if history_dir is None:
            history_dir, self._history_error = _default_history_dir()
        try:
            self._core = _core.Meter(
                specs,
                self.period_us * 1000,
                -1 if spin_us is None else spin_us * 1000,
                ring_capacity,
                schedule=schedule,
                realtime=bool(realtime),
                keep_samples_ns=round(keep_samples_s * 1e9),
                knot_resolution_ns=int(knot_resolution_us) * 1000,
                telemetry_period_ns=round(1e9 / telemetry_hz) if telemetry_hz > 0 else 0,
                history_dir=os.fspath(history_dir),
            )
        except _core.SourceError as e:
            message, kind = e.args
            raise SourceUnavailableError(str(message)) from None
        except _core.MeterError as e:
            raise ConfigError(str(e)) from None
        self.sources = [n for n, _ in specs]
        self.channels: list[Channel] = [Channel.from_core(c) for c in self._core.channels]
        self._names = [c.name for c in self.channels]

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> Meter:
        try:
            self._core.start()
        except _core.MeterError as e:
            raise MeterStateError(str(e)) from None
        return self

    def stop(self) -> None:
        """Stops at once: one last poll at the stop instant, then the record is complete. Safe from any thread;
        a stop already under way is waited for. Stopping a meter that never started makes it unusable."""
        self._core.stop()

    def close(self) -> None:
        """Stops (if running) and releases the sampler's hardware; the record stays readable."""
        self._core.close()

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return bool(self._core.running)

    @property
    def state(self) -> str:
        """"new", "running", "stopping", "stopped" or "closed"."""
        return str(self._core.state)

    @property
    def channel_names(self) -> list[str]:
        return list(self._names)

    # --- clock and windows -----------------------------------------------------------------------------------
    @staticmethod
    def now_ns() -> int:
        """CLOCK_MONOTONIC ns: the clock of every sample (same as time.monotonic_ns())."""
        return time.monotonic_ns()

    def window(self, name: str = "window") -> Window:
        if not self._core.running:
            raise MeterStateError(
                "windows need a running meter; open them inside `with Meter(...)` or after start()"
            )
        return Window(self, name)

    # --- energy ----------------------------------------------------------------------------------------------
    def totals(self) -> dict[str, float]:
        """Joules per channel since start, as of the latest poll (O(1))."""
        self._check_started()
        return dict(zip(self._names, self._core.totals()))

    def energy_between(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        """Joules per channel between two CLOCK_MONOTONIC instants inside the record; NaN for a channel that failed
        before t1_ns or whose counter never updated inside or after the span. Waits at most MAX_WAIT_FINAL_S for
        counters to update past t1_ns. `span()` gives the same values with error bounds and a verdict."""
        return self.span(t0_ns, t1_ns).energy_j

    async def energy_between_async(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        """`energy_between` for asyncio: the bounded wait runs in the loop's executor, not on the loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.energy_between, t0_ns, t1_ns)

    def span(self, t0_ns: int, t1_ns: int) -> SpanResult:
        """Energy, error bound and finality per channel over [t0_ns, t1_ns], the counted total and its verdict."""
        return self._span(t0_ns, t1_ns, clamp_to_stop=False)

    def _span(self, t0_ns: int, t1_ns: int, clamp_to_stop: bool) -> SpanResult:
        self._check_started()
        try:
            raw = self._core.energy_between(int(t0_ns), int(t1_ns), self._wait_ns(), clamp_to_stop)
        except _core.MeterError as e:
            raise SpanError(str(e)) from None
        return span_result(self.channels, raw, self.failed_at_ns)

    def cumulative_at(self, t_ns: np.ndarray, with_bound: bool = False) -> dict[str, np.ndarray] | dict[
        str, tuple[np.ndarray, np.ndarray]
    ]:
        """Cumulative joules since start of every channel at each instant of `t_ns` (int64 CLOCK_MONOTONIC ns),
        on the same interpolated curve as `energy_between`. For many instants at once (per-request attribution).
        NaN outside the record (before start, after the newest poll or the stop), after the channel's failure and
        while it has not updated yet: never extrapolated. While the meter runs, an instant the sampler has not
        polled past yet is waited for first (bounded, as a window's result waits), so "not polled yet" is not
        read as unknown. with_bound: {channel: (values, error bounds)}."""
        self._check_started()
        t = np.ascontiguousarray(t_ns, dtype=np.int64)
        if t.size and self._core.running:
            latest = int(t.max())
            if self.start_ns <= latest <= time.monotonic_ns():
                self._core.energy_between(latest, latest, self._wait_ns(), True)
        return {n: self._core.cumulative_at(i, t, with_bound) for i, n in enumerate(self._names)}

    @property
    def failed_at_ns(self) -> dict[str, int | None]:
        """Per channel: t_ns of its first failed reading (it gives no energy after that), None while it works."""
        return dict(zip(self._names, self._core.failed_at_ns()))

    def _wait_ns(self) -> int:
        """The longest a result waits for the sampler and the counters: 1.5 update periods (observed, or else the
        channel's nominal one) plus two polls and SCHEDULING_SLACK_S, at most MAX_WAIT_FINAL_S, whatever the
        period."""
        if self._wait_final_s is not None:
            return int(self._wait_final_s * 1e9)
        poll_s = self.period_us * 1e-6
        periods = [
            NOMINAL_UPDATE_PERIOD_S.get(c.domain, poll_s) if math.isnan(p) else p
            for c, p in zip(self.channels, self._core.update_periods_s())
        ]
        wait_s = 1.5 * max(periods, default=poll_s) + 2 * poll_s + SCHEDULING_SLACK_S
        return int(min(wait_s, MAX_WAIT_FINAL_S) * 1e9)

    def _stop_ns(self) -> int | None:
        return int(self._core.stop_ns) if self._core.stopped else None

    # --- record ----------------------------------------------------------------------------------------------
    def sample_count(self) -> int:
        """Samples recorded since start (absolute: includes those that have left RAM since)."""
        return int(self._core.sample_count())

    def samples(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Samples [start, stop) in poll order: t_ns, channel, energy_j (cumulative J), power_w (nullable).
        start/stop are absolute sequence numbers (`sample_count()` is the next one). Only the last keep_samples_s
        stay in RAM: asking for older ones raises SpanError (stream long runs to a file with the recorder)."""
        try:
            t, ch, e, p = self._core.samples(start, self.sample_count() if stop is None else stop)
        except _core.MeterError as err:
            raise SpanError(str(err)) from None
        channel = pa.DictionaryArray.from_arrays(
            pa.array(ch.astype(np.int32, copy=False)), pa.array(self._names, pa.string())
        )
        power = pa.array(p, mask=np.isnan(p))
        return pa.Table.from_arrays([pa.array(t), channel, pa.array(e), power], schema=SAMPLES_SCHEMA)

    def telemetry(self, start_ns: int | None = None, stop_ns: int | None = None) -> pa.Table:
        """Telemetry readings with start_ns <= t_ns <= stop_ns (default: the whole record kept in RAM) in long
        format: t_ns, channel ("gpu0", "cpu", "cpu-policy0"), metric (unit in the name), value. Items this machine
        cannot read are absent here and listed once in stats()["telemetry_unavailable"]. Only the last
        keep_samples_s stay in RAM: asking for older ones raises SpanError."""
        self._check_started()
        lo = self.start_ns if start_ns is None else int(start_ns)
        hi = np.iinfo(np.int64).max if stop_ns is None else int(stop_ns)
        try:
            t, idx, value = self._core.telemetry_between(lo, hi)
        except _core.MeterError as err:
            raise SpanError(str(err)) from None
        return telemetry_table(self.telemetry_series, t, idx, value)

    def telemetry_count(self) -> int:
        """Telemetry readings recorded since start (absolute: includes those that have left RAM since)."""
        return int(self._core.telemetry_count())

    def telemetry_range(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Telemetry readings [start, stop) by absolute sequence number (what a recorder streams)."""
        try:
            t, idx, value = self._core.telemetry_range(start, self.telemetry_count() if stop is None else stop)
        except _core.MeterError as err:
            raise SpanError(str(err)) from None
        return telemetry_table(self.telemetry_series, t, idx, value)

    @property
    def telemetry_unavailable(self) -> list[str]:
        """Telemetry items this machine cannot give, one line each with the reason (fixed when the meter opened)."""
        return list(self._core.telemetry_unavailable)

    @property
    def telemetry_series(self) -> list[tuple[str, str]]:
        """Every (channel, metric) the telemetry schedule reads, decided when the meter opened."""
        return [tuple(s) for s in self._core.telemetry_series]  # type: ignore[misc]

    def stats(self) -> dict[str, object]:
        """Sampler quality: rate_hz, jitter_p50_us, jitter_p99_us, jitter_max_us, missed, missed_share (missed /
        scheduled deadlines), poll_gap_max_ns (largest interval between wake-ups), dropped, polls, sched_policy,
        channels ({channel: {polls, read_errors, poll_gap_max_ns}}), schedule ({channel: {state, period_s, misses,
        relocks, fields}} with schedule="adaptive"), errors ({channel: text} for failed channels),
        update_period_s ({channel: observed s between updates}), failed_at_ns ({channel: t_ns of its first failed
        reading, or None}).
        Memory and queries: samples_kept (raw samples in RAM), samples_dropped_from_ram (older ones, no longer
        readable through samples()), knots and change_points (what energy queries and their error bounds read,
        over all channels), samples_bytes / knots_bytes / change_points_bytes (RAM they take, the recent ones),
        history_disk_bytes / history_ram_bytes (the thinned history, in the history file / in RAM), history_error
        (why the history is not on disk, "" while it is), rss_bytes (this process; NaN if unreadable),
        queries, query_p50_us / query_p99_us (latency of energy_between / cumulative_at calls, ~1% resolution;
        NaN before the first). schedule_mode: "fixed" or "adaptive", the schedule this meter runs.
        Telemetry: telemetry_hz, telemetry_series (how many series are read), telemetry_unavailable (one line per
        item this machine cannot give, and why), telemetry_polls, telemetry_missed, telemetry_dropped,
        telemetry_read_errors (item reads that gave no value), telemetry_read_p99_us (one telemetry poll),
        telemetry_kept / telemetry_dropped_from_ram (readings in RAM / older ones)."""
        s = dict(self._core.stats())
        s["schedule_mode"] = self.schedule
        s["errors"] = {n: err for i, n in enumerate(self._names) if (err := self._core.channel_error(i))}
        s["update_period_s"] = dict(zip(self._names, self._core.update_periods_s()))
        s["failed_at_ns"] = self.failed_at_ns
        s.update(self._core.record_stats())
        s["history_error"] = s["history_error"] or self._history_error
        s["telemetry_hz"] = self.telemetry_hz
        s["telemetry_series"] = len(self._core.telemetry_series)
        s["telemetry_unavailable"] = self.telemetry_unavailable
        s["rss_bytes"] = rss_bytes()
        return s

    @property
    def start_ns(self) -> int:
        return int(self._core.start_ns)

    @property
    def stop_ns(self) -> int | None:
        """Instant of the final poll, once stopped."""
        return self._stop_ns()

    @property
    def realtime_anchor(self) -> tuple[int, int]:
        """(monotonic_ns, realtime_ns) read together at start: wall time of t = realtime + (t - monotonic)."""
        return tuple(self._core.anchor)  # type: ignore[return-value]

    def _check_started(self) -> None:
        if self._core.start_ns == 0:
            raise MeterStateError("the meter has not been started; use `with Meter(...)` or call start()")

    def __repr__(self) -> str:
        return f"<Meter {self.state} sources={self.sources} period_us={self.period_us} channels={self._names}>"


def _default_history_dir() -> tuple[str, str]:
    """$FASTMETER_HISTORY_DIR or the temp directory, and "" when it cannot hold the history file: then ("", why).
    Only memory is at stake, so the Meter measures anyway with the history in RAM and says why in stats()."""
    d = os.environ.get("FASTMETER_HISTORY_DIR") or tempfile.gettempdir()
    if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
        return d, ""
    return "", f"cannot keep the run's history in {d}: not a writable directory; the history is kept in RAM"


def rss_bytes() -> int | float:
    """Resident set size of this process from procfs (FASTMETER_PROCFS_ROOT-aware); NaN when it cannot be read."""
    try:
        # Bytes, not text: no codec lookup, so it works after a process dropped the privilege to read the stdlib.
        with open(procfs_root() / "self" / "statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return math.nan
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
