"""bench's terminal progress counts measured requests as its summary does: warm-up requests apart."""

from __future__ import annotations

from fastmeter.adapters.base import STATUS_OK, RequestRecord
from fastmeter.cli.bench import _Progress


def test_warmup_requests_are_counted_apart_from_measured_ones() -> None:
    progress = _Progress()
    records = [RequestRecord(f"w{i}", warmup=True) for i in range(16)]
    records += [RequestRecord(f"m{i}", status=STATUS_OK if i % 8 else "error") for i in range(64)]
    for rec in records:
        progress(rec)
    assert progress.line() == "warm-up 16  requests 64  failed 8"
