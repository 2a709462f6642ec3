"""The result of one energy question over a span: values, error bounds, finality and a verdict (`SpanResult`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastmeter.sources import Channel
from fastmeter.validity import MAX_RELATIVE_BOUND, Reason, Validity, Verdict


@dataclass(frozen=True)
class SpanResult:
    """Energy per channel over [t0_ns, t1_ns] with each value's error bound (|energy_j - truth| <= bound_j; see
    docs/methodology.md, "Error bound"). `total_j` and `total_bound_j` count each physical quantity once (in_total
    channels) and are NaN when any counted channel is unknown or failed (`unknown_channels` names them).
    `validity` judges the total: the counted channels' reasons plus a too-wide bound."""

    t0_ns: int
    t1_ns: int
    energy_j: dict[str, float]
    bound_j: dict[str, float]
    final: dict[str, bool]  # the value will not change any more (a counter update after the end has been seen)
    total_j: float
    total_bound_j: float
    validity: Validity
    unknown_channels: tuple[str, ...] = ()
    truncated: bool = False  # the span was cut at the meter's stop instant

    @property
    def provisional(self) -> bool:
        """Some channel's end is extrapolated past its newest update (inside its bound)."""
        return not all(self.final.values())


def total_bound_reasons(total_j: float, total_bound_j: float) -> list[Reason]:
    """`bound_above_limit` when the counted total's error bound is above MAX_RELATIVE_BOUND of it (none when either
    is unknown: the unknown total has its own reasons)."""
    if math.isnan(total_j) or math.isnan(total_bound_j) or total_bound_j <= MAX_RELATIVE_BOUND * total_j:
        return []
    share = f"{100 * total_bound_j / total_j:.0f}%" if total_j > 0 else "unbounded"
    return [
        Reason(
            "bound_above_limit",
            f"error bound {total_bound_j:.3g} J is {share} of {total_j:.3g} J (limit {100 * MAX_RELATIVE_BOUND:.0f}%)",
            Verdict.DEGRADED,
        )
    ]


def synthetic_reason(c: Channel) -> Reason:
    """The one reason a synthetic channel gives, wherever it is judged (spans here, records in fastmeter.assess)."""
    message = f"{c.name} is the synthetic waveform, not a measurement"
    return Reason("synthetic_source", message, Verdict.SYNTHETIC, c.name)


def _channel_reasons(c: Channel, status: str, bound_j: float, failed_at_ns: int | None) -> list[Reason]:
    reasons = []
    if c.domain == "synthetic":
        reasons.append(synthetic_reason(c))
    if status == "failed":
        return reasons + [
            Reason(
                "channel_failed",
                f"{c.name} failed at t_ns={failed_at_ns}, before the span ended: its energy is unknown",
                Verdict.INVALID,
                c.name,
                failed_at_ns,
            )
        ]
    if status == "unknown":
        return reasons + [
            Reason(
                "counter_not_updated",
                f"{c.name}'s counter did not update inside or after the span: its energy is unknown",
                Verdict.INVALID,
                c.name,
            )
        ]
    if status == "provisional":
        reasons.append(
            Reason(
                "provisional_end",
                f"{c.name} has not updated since the span ended: its end is extrapolated, within the bound",
                Verdict.DEGRADED,
                c.name,
            )
        )
    if math.isnan(bound_j):
        reasons.append(
            Reason(
                "bound_unavailable",
                f"{c.name} has no energy counter: no error bound can be derived",
                Verdict.DEGRADED,
                c.name,
            )
        )
    return reasons


def span_result(
    channels: Sequence[Channel], raw: Mapping[str, Any], failed_at_ns: Mapping[str, int | None]
) -> SpanResult:
    """Build a SpanResult from `_core.Meter.energy_between`'s dict."""
    names = [c.name for c in channels]
    energy = dict(zip(names, map(float, raw["energy_j"])))
    bound = dict(zip(names, map(float, raw["bound_j"])))
    status = dict(zip(names, raw["status"]))
    counted = [c for c in channels if c.in_total]
    unknown = tuple(c.name for c in counted if math.isnan(energy[c.name]))
    total_j = math.nan if unknown else math.fsum(energy[c.name] for c in counted)
    total_bound_j = math.nan if unknown else math.fsum(bound[c.name] for c in counted)
    reasons = [r for c in counted for r in _channel_reasons(c, status[c.name], bound[c.name], failed_at_ns[c.name])]
    reasons += total_bound_reasons(total_j, total_bound_j)
    return SpanResult(
        t0_ns=int(raw["t0_ns"]),
        t1_ns=int(raw["t1_ns"]),
        energy_j=energy,
        bound_j=bound,
        final={n: s in ("final", "failed") for n, s in status.items()},
        total_j=total_j,
        total_bound_j=total_bound_j,
        validity=Validity(tuple(reasons)),
        unknown_channels=unknown,
        truncated=bool(raw["truncated"]),
    )
