"""The validity banner at the top of every report: which runs are not clean measurements, and why. A reader who
sees only the first screen must learn that synthetic numbers are not a measurement and an invalid run is not one to
act on (docs/methodology.md, "Validity")."""

from __future__ import annotations

from dataclasses import dataclass

from fastmeter.report.load import Report, Run
from fastmeter.validity import Validity, Verdict, combine

_HEADLINES = {
    Verdict.MEASURED: "Every run is a valid measurement.",
    Verdict.DEGRADED: "DEGRADED: some figures carry a named flaw that widens their error.",
    Verdict.SYNTHETIC: "NOT A MEASUREMENT: some figures are a synthetic waveform or an emulator, not this hardware.",
    Verdict.INVALID: "INVALID: some figures cannot be trusted at all; do not act on them.",
}
NOT_RECORDED = "validity not recorded (run.json written before fastmeter judged runs): treat as unverified"


@dataclass(frozen=True)
class Banner:
    verdict: Verdict
    headline: str
    lines: list[tuple[str, str]]  # (run label, one reason or NOT_RECORDED) for every run that is not measured


def run_validity(run: Run) -> Validity | None:
    data = run.meta.get("validity")
    return Validity.from_dict(data) if isinstance(data, dict) else None


def banner(report: Report) -> Banner:
    lines: list[tuple[str, str]] = []
    parts = []
    unknown = False
    for run in report.runs:
        v = run_validity(run)
        if v is None:
            unknown = True
            lines.append((run.label, NOT_RECORDED))
            continue
        parts.append(v)
        lines += [(run.label, f"{r.verdict.value}: {r.message} [{r.code}]") for r in v.reasons]
    verdict = combine(parts).verdict
    # A run that recorded nothing is no better than degraded: the banner must not claim "every run is valid".
    if unknown and verdict is Verdict.MEASURED:
        verdict = Verdict.DEGRADED
    headline = _HEADLINES[verdict]
    return Banner(verdict, headline, lines)
