"""The requests a load holds in RAM: those released and not yet done with, so a run of any length keeps only what
is in flight (bench/request_log.py drops each one once its rows are on disk)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from fastmeter.adapters.base import RequestRecord


class Records(Protocol):
    """Where a runner puts the records it releases (a list keeps them all; `LiveRecords` only those in flight)."""

    def append(self, rec: RequestRecord, /) -> None: ...

    def extend(self, recs: Iterable[RequestRecord], /) -> None: ...

    def remove(self, rec: RequestRecord, /) -> None: ...


class LiveRecords:
    """A set of records in release order with O(1) `remove`, usable wherever the runners take a caller-owned
    `records` list (`append`, `extend`, `remove`, iteration). `peak` is the most held at once: a test's and a
    benchmark's evidence that RAM follows the requests in flight, not the run's length."""

    def __init__(self) -> None:
        self._held: dict[int, RequestRecord] = {}  # insertion-ordered: release order
        self.peak = 0

    def append(self, rec: RequestRecord) -> None:
        self._held[id(rec)] = rec
        self.peak = max(self.peak, len(self._held))

    def extend(self, recs: Iterable[RequestRecord]) -> None:
        for r in recs:
            self.append(r)

    def remove(self, rec: RequestRecord) -> None:
        del self._held[id(rec)]

    def discard(self, rec: RequestRecord) -> None:
        self._held.pop(id(rec), None)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(list(self._held.values()))

    def __len__(self) -> int:
        return len(self._held)
