"""The validity model: every figure fastmeter publishes is a measurement, a degraded one, an invalid one, or the
synthetic waveform, and says why (docs/methodology.md, "Validity").

A `Validity` is a verdict plus machine-readable reasons. Verdicts combine by severity: a run is as bad as its worst
part. Thresholds are named constants here, each with the reason for its value, so every check in the package uses
the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Verdict(str, Enum):
    """Ordered by severity (see `SEVERITY`)."""

    MEASURED = "measured"  # every input was read from hardware as expected
    DEGRADED = "degraded"  # measured, but with a named flaw that widens the error (reasons say which)
    SYNTHETIC = "synthetic"  # the documented synthetic waveform or an emulator, not a measurement of this machine
    INVALID = "invalid"  # the figure cannot be trusted at all (a channel lost inside the span, nothing measured)


SEVERITY = {Verdict.MEASURED: 0, Verdict.DEGRADED: 1, Verdict.SYNTHETIC: 2, Verdict.INVALID: 3}

# --- thresholds ----------------------------------------------------------------------------------------------------
# A poll gap longer than the counter's update period means an update may have gone unseen at its true instant: the
# change point is then placed with an error up to the gap, so the span's edge error grows with it.
MAX_GAP_UPDATE_PERIODS = 1.0
# Missed deadlines above this share mean the sampler was starved (CPU contention): timing of change points is off.
# 1% tolerates the occasional scheduler hiccup on a busy host; above it the rate the user asked for was not kept.
MAX_MISSED_SHARE = 0.01
# A stream whose chunks all arrived within this interval of each other was delivered bunched (buffered by a proxy
# or a loaded host): its inter-token latencies measure the client's reads, not the server's generation.
BUNCHED_WINDOW_NS = 1_000_000
# A request needs this many content chunks before bunching can be told apart from a one-token answer.
BUNCHED_MIN_CHUNKS = 3
# A run where more than this share of streamed requests were bunched has untrustworthy ITL figures.
MAX_BUNCHED_SHARE = 0.05
# Relative error bound above which an energy figure is flagged degraded (not invalid: the bound is still honest).
MAX_RELATIVE_BOUND = 0.10
# The error bound assumes true power never exceeds this multiple of the largest power seen on the channel: every
# reading is an average (NVML's over 25 ms to 1 s), so short peaks lie above it. Mirrors the native
# kPowerBoundMargin (csrc/fastmeter/bound.h); a test keeps the two equal.
POWER_BOUND_MARGIN = 2.0


@dataclass(frozen=True)
class Reason:
    """One machine-readable reason. `code` is a stable identifier (documented in docs/methodology.md)."""

    code: str
    message: str
    verdict: Verdict = Verdict.DEGRADED
    channel: str | None = None
    t_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "verdict": self.verdict.value, "message": self.message}
        if self.channel is not None:
            d["channel"] = self.channel
        if self.t_ns is not None:
            d["t_ns"] = int(self.t_ns)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reason:
        return cls(
            code=str(d["code"]),
            message=str(d.get("message", "")),
            verdict=Verdict(d.get("verdict", Verdict.DEGRADED.value)),
            channel=d.get("channel"),
            t_ns=d.get("t_ns"),
        )


@dataclass(frozen=True)
class Validity:
    """A verdict and the reasons for it. `Validity()` is a clean measurement."""

    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> Verdict:
        return max((r.verdict for r in self.reasons), key=SEVERITY.__getitem__, default=Verdict.MEASURED)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.MEASURED

    def with_reasons(self, reasons: Iterable[Reason]) -> Validity:
        return combine([self, Validity(tuple(reasons))])

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "reasons": [r.to_dict() for r in self.reasons]}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Validity:
        if not d:
            return cls()
        return cls(tuple(Reason.from_dict(r) for r in d.get("reasons", ())))

    def summary(self) -> str:
        """One line for a terminal: 'measured' or 'degraded: reason; reason'."""
        if not self.reasons:
            return self.verdict.value
        return f"{self.verdict.value}: " + "; ".join(r.message for r in self.reasons)


def combine(parts: Iterable[Validity]) -> Validity:
    """The union of the parts' reasons (deduplicated, in order): the verdict is the worst of them."""
    seen: dict[Reason, None] = {}
    for p in parts:
        for r in p.reasons:
            seen.setdefault(r, None)
    return Validity(tuple(seen))


# --- thresholds added with the checks in fastmeter/assess.py ---------------------------------------------------
# A gap of up to this many sampling periods is ordinary poll jitter (a few late or skipped deadlines in a row), not
# starvation: below it, a counter updating every poll (RAPL, 1 ms) would flag every run on a shared host, while a
# starved sampler's gaps are tens to hundreds of periods (366 ms at 1 kHz under a CPU-bound neighbour, issue 9).
GAP_JITTER_PERIODS = 5.0
# Exit codes of `fastmeter bench` by verdict (0 only for `measured`); 130/143 (interrupts) belong to the recorder.
EXIT_CODES = {Verdict.MEASURED: 0, Verdict.DEGRADED: 3, Verdict.INVALID: 4, Verdict.SYNTHETIC: 5}
# Reasons that make a figure synthetic because the user chose it (the synthetic source, or an emulator named by a
# FASTMETER_* override): `--allow-degraded` accepts these, never an "auto" run that found no hardware.
CHOSEN_SYNTHETIC_CODES = frozenset({"synthetic_source", "emulated_source"})


def exit_code(validity: Validity, allow_degraded: bool = False) -> int:
    """The exit code a command that publishes figures of this validity returns (see EXIT_CODES)."""
    v = validity.verdict
    if allow_degraded and v is Verdict.DEGRADED:
        return 0
    if allow_degraded and v is Verdict.SYNTHETIC:
        chosen = all(r.code in CHOSEN_SYNTHETIC_CODES for r in validity.reasons if r.verdict is Verdict.SYNTHETIC)
        return 0 if chosen else EXIT_CODES[v]
    return EXIT_CODES[v]


# --- thresholds added with cluster measurement (fastmeter/cluster) -------------------------------------------------
# A node's clock offset to the driver is known to +-RTT/2 of the best round trip. Beyond 1 ms the node's span edges
# are placed coarser than a 1 kHz sampler places its own (a poll each ms), so its figures are flagged degraded; the
# energy this uncertainty can move is in the span's error bound either way.
MAX_CLOCK_BOUND_NS = 1_000_000

# --- thresholds of the activity power-model fit (fastmeter/activity_fit.py, docs/attribution.md "Activity") -----
# Fewer sensor intervals than this per fitted coefficient leave the confidence intervals too wide to shape by: with
# 4 coefficients that is 2 s of a 100 ms counter, the shortest run in which prefill, decode and idle all vary.
ACTIVITY_MIN_INTERVALS_PER_COEF = 5
# Above this condition number of the column-normalised design, two activity terms move together (e.g. decode rate
# and sequences in flight at a constant step time) and the fit can trade one for the other: shaping is then an
# arbitrary choice among equally good models. 1e4 still leaves ~4 significant digits in float64 normal equations.
ACTIVITY_MAX_CONDITION = 1e4
# Below this R^2 the model explains too little of how the measured energy varies between intervals to place energy
# inside them better than time-share; half the variance is the point where the model is more signal than noise.
ACTIVITY_MIN_R2 = 0.5

# --- matrix cool-down (fastmeter/matrix/cooldown.py) ---------------------------------------------------------------
# Between matrix cells the GPUs must return to their idle baseline, or the next cell starts on a warmer, differently
# clocked GPU (and pays for the previous cell's heat). "Returned" allows for reading noise and for the server's own
# idle draw (a loaded model keeps clocks and memory up): power within 10% + 5 W of the baseline, temperature within
# 2 °C. Measured baselines of one idle GPU vary by a few watts between readings; a degree is the sensor's resolution.
COOLDOWN_POWER_TOLERANCE = 0.10
COOLDOWN_POWER_SLACK_W = 5.0
COOLDOWN_TEMPERATURE_SLACK_C = 2.0
# A launched server's exit is stamped when fastmeter's watcher thread wakes from waitpid: on a loaded host that can be
# well after the server's sockets closed, the remaining requests failed at once and the load ended. A run whose span
# ended up to this long before the stamped exit is treated as having measured a dying server (`server_exited`):
# wrongly flagging a run that ended just before an unrelated crash costs a rerun; missing a crash publishes it.
SERVER_EXIT_NOTICE_SLACK_NS = 5_000_000_000
