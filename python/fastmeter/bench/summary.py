"""The figures a serving benchmark prints: throughput, latency percentiles and energy per unit of work.

Per-token and per-request energy count only successful requests: the energy attributed to failed requests is
taken out of the numerator and their tokens are not in the denominator. Idle (unattributed) energy stays in: it
is part of what serving those requests cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastmeter.adapters.base import RequestRecord
from fastmeter.validity import (
    BUNCHED_WINDOW_NS,
    MAX_BUNCHED_SHARE,
    Reason,
    Validity,
    Verdict,
)

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class RunEnergy:
    energy_j: float  # measured span, each physical quantity once
    by_channel_j: dict[str, float]
    duration_s: float
    failed_energy_j: float = 0.0  # attributed to failed requests
    idle_power_w: float | None = None  # summed over counted channels
    # Sum of the requests' and the idle time's net energy when attributed (so the parts add up exactly); None:
    # energy_j - idle_power_w x duration_s.
    net_energy_j: float | None = None


@dataclass(frozen=True)
class RequestFigures:
    """What the summary needs of the measured requests: counts, token sums, and (p50, p99) of each latency in ms
    (`latencies_ms`' names; NaN without values). `of_records` computes them from records in RAM; a bench run from
    what it streamed (bench/column_figures.py)."""

    requests: int  # measured, failed ones included
    ok: int
    input_tokens: int
    output_tokens: int
    bunched: int  # of the ok ones
    latency_ms: dict[str, tuple[float, float]]

    @classmethod
    def of_records(cls, records: Sequence[RequestRecord]) -> RequestFigures:
        ok = [r for r in records if r.ok and r.end_ns is not None]
        return cls(
            requests=len(records),
            ok=len(ok),
            input_tokens=sum(r.prompt_tokens or 0 for r in ok),
            output_tokens=sum(r.completion_tokens or 0 for r in ok),
            bunched=sum(r.bunched for r in ok),
            latency_ms={k: (_pct(v, 50), _pct(v, 99)) for k, v in latencies_ms(records).items()},
        )


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def latencies_ms(records: Sequence[RequestRecord]) -> dict[str, list[float]]:
    """TTFT, inter-token gaps (between chunks that carried tokens; only of requests that really streamed, not
    bunched ones) and end-to-end latency of ok requests."""
    ttft, itl, e2e = [], [], []
    for r in records:
        if not r.ok or r.send_ns is None or r.end_ns is None:
            continue
        e2e.append((r.end_ns - r.send_ns) / 1e6)
        if r.first_token_ns is not None:
            ttft.append((r.first_token_ns - r.send_ns) / 1e6)
        if r.bunched:  # set by the client (adapters.base.is_bunched)
            continue
        times = [t for t, k in zip(r.chunk_t_ns, r.chunk_tokens) if k > 0]
        itl.extend((b - a) / 1e6 for a, b in zip(times, times[1:]))
    return {"ttft": ttft, "itl": itl, "e2e": e2e}


def requests_validity(records: Sequence[RequestRecord], interrupted: bool) -> Validity:
    """What the requests of a measured span say about its figures: none succeeded (invalid), streams bunched
    above MAX_BUNCHED_SHARE (degraded: ITL figures cover the rest), interrupted (degraded: part of the load)."""
    ok = [r for r in records if r.ok and r.end_ns is not None]
    return requests_validity_of(len(ok), sum(r.bunched for r in ok), interrupted)


def requests_validity_of(n_ok: int, n_bunched: int, interrupted: bool) -> Validity:
    """`requests_validity` from the counts: successful requests, and how many of them arrived bunched."""
    reasons = []
    if not n_ok:
        reasons.append(Reason("no_successful_request", "no request succeeded inside the measured span: there is "
                              "no work to divide the energy by", Verdict.INVALID))
    n = n_bunched
    if n_ok and n / n_ok > MAX_BUNCHED_SHARE:
        reasons.append(Reason("bunched_streams", f"{n} of {n_ok} responses arrived bunched (all chunks within "
                              f"{BUNCHED_WINDOW_NS / 1e6:g} ms): ITL figures cover only the {n_ok - n} that "
                              "streamed"))
    if interrupted:
        reasons.append(Reason("interrupted", "the run was interrupted: figures cover part of the workload"))
    return Validity(tuple(reasons))


def summarize(f: RequestFigures, energy: RunEnergy) -> dict[str, float | int | None]:
    """Summary of the measured (non-warm-up) requests of one run (`RequestFigures.of_records` for records)."""
    n_ok, out_tokens, in_tokens = f.ok, f.output_tokens, f.input_tokens
    useful_j = energy.energy_j - energy.failed_energy_j
    s: dict[str, float | int | None] = {
        "requests_ok": n_ok,
        "requests_failed": f.requests - n_ok,
        "duration_s": energy.duration_s,
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "output_tokens_per_s": _div(out_tokens, energy.duration_s),
        "requests_per_s": _div(n_ok, energy.duration_s),
        "avg_power_w": _div(energy.energy_j, energy.duration_s),
        "energy_j": energy.energy_j,
        "failed_energy_j": energy.failed_energy_j,
        "energy_per_output_token_j": _div(useful_j, out_tokens),
        "energy_per_token_j": _div(useful_j, out_tokens + in_tokens),
        "energy_per_request_j": _div(useful_j, n_ok),
        "output_tokens_per_j": _div(out_tokens, useful_j),
        "inferences_per_kwh": _div(n_ok, useful_j / J_PER_KWH),
    }
    s["bunched_requests"] = f.bunched
    s["streamed_requests"] = n_ok - f.bunched
    for name, (p50, p99) in f.latency_ms.items():
        s[f"{name}_ms_p50"] = p50
        s[f"{name}_ms_p99"] = p99
    if energy.idle_power_w is not None:
        net = energy.net_energy_j
        if net is None:
            net = energy.energy_j - energy.idle_power_w * energy.duration_s
        s["idle_power_w"] = energy.idle_power_w
        s["net_energy_j"] = net
        s["net_energy_per_output_token_j"] = _div(net - energy.failed_energy_j, out_tokens)
    return s


SUMMARY_LINES = (
    ("requests ok / failed", "{requests_ok} / {requests_failed}"),
    ("duration", "{duration_s:.2f} s"),
    ("output tokens/s", "{output_tokens_per_s:.1f}"),
    ("average power", "{avg_power_w:.1f} W"),
    ("energy-to-solution", "{energy_j:.2f} J"),
    ("J / output token", "{energy_per_output_token_j:.4f}"),
    ("J / token (in+out)", "{energy_per_token_j:.4f}"),
    ("J / request", "{energy_per_request_j:.3f}"),
    ("output tokens / J", "{output_tokens_per_j:.2f}"),
    ("inferences / kWh", "{inferences_per_kwh:.0f}"),
    ("TTFT p50 / p99", "{ttft_ms_p50:.1f} / {ttft_ms_p99:.1f} ms"),
    ("ITL p50 / p99", "{itl_ms_p50:.2f} / {itl_ms_p99:.2f} ms"),
    ("E2E p50 / p99", "{e2e_ms_p50:.1f} / {e2e_ms_p99:.1f} ms"),
    ("idle baseline", "{idle_power_w:.1f} W"),
    ("net energy (above idle)", "{net_energy_j:.2f} J"),
)


def bunched_note(s: dict[str, Any]) -> str | None:
    """Said wherever ITL figures or an ITL SLO check appear on a run with bunched responses."""
    bunched, streamed = s.get("bunched_requests") or 0, s.get("streamed_requests") or 0
    if not bunched:
        return None
    return (f"ITL covers the {streamed} streamed requests: {bunched} ({bunched / (bunched + streamed):.0%}) "
            "arrived bunched and are left out")


def verdict_line(validity: Validity) -> str:
    """The line every output that shows figures carries: the verdict, and each reason on its own line."""
    head = f"{'validity':<26}{validity.verdict.value.upper()}"
    return "\n".join([head, *(f"{'':<26}- {r.message} [{r.code}]" for r in validity.reasons)])


def render_summary(s: dict[str, Any], validity: Validity) -> str:
    lines = [verdict_line(validity)]
    for label, fmt in SUMMARY_LINES:
        try:
            lines.append(f"{label:<26}{fmt.format(**s)}")
        except (KeyError, TypeError, ValueError):
            continue  # a figure this run does not have (no idle baseline measured)
        if label.startswith("ITL") and (note := bunched_note(s)):
            lines.append(f"{'':<26}{note}")
    if s.get("requests_unmeasured"):
        lines.append(f"{'requests not measured':<26}{s['requests_unmeasured']} (still running when a counted channel "
                     "was lost: no energy, not in the figures)")
    if s.get("accuracy") is not None:
        per_kwh = s.get("accuracy_per_kwh")
        lines.append(f"{'accuracy':<26}{s['accuracy']:.4g}" + (f"  ({per_kwh:.4g} per kWh)" if per_kwh else ""))
    if isinstance(s.get("carbon"), dict):
        c = s["carbon"]
        lines.append(f"{'carbon':<26}{c['gco2e']:.3g} gCO2e  (grid {c['grid_gco2_per_kwh']:g} g/kWh, PUE {c['pue']:g})")
    if isinstance(s.get("cost"), dict):
        c = s["cost"]
        lines.append(f"{'electricity cost':<26}{c['cost']:.4g} {c['currency']}")
    return "\n".join(lines)
