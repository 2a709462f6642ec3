"""The load generator on the native transport: the same arrivals, caps, warm-up and records as ``run_load``, with
the sending and the receive stamps done by the C++ thread (``fastmeter.adapters.native``).

The thread owns the send schedule: open-loop requests are handed over up to ``LOOKAHEAD_S`` before their
scheduled instant and leave at it even while Python is busy; closed-loop requests queue in the thread and leave as
soon as one of ``concurrency`` connections is free (``scheduled_ns`` is then that instant). Python wakes once per
answered batch (``loop.add_reader`` on the client's notify fd), interprets the recorded events into
``RequestRecord``s and tops the queue up. Every sent request is recorded, failed or not; a request still queued
in the thread when ``duration_s`` ran out or the run was stopped was never sent and is not recorded (as
``run_load`` never releases it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from fastmeter.adapters.base import Adapter, GenRequest, RequestRecord, request_parts
from fastmeter.adapters.native import AS_SOON_AS_FREE, NO_DEADLINE, NativeClient, NativeResult, interpret
from fastmeter.errors import ConfigError
from fastmeter.load.arrivals import arrival_offsets_s
from fastmeter.load.live import Records
from fastmeter.load.runner import LoadResult, LoadSpec
from fastmeter.timeouts import within

# Open loop: how far ahead of its scheduled instant a request is handed to the thread. Longer than the event-loop
# stalls seen under load (up to 164 ms, issue 11), so a stall does not delay a send.
LOOKAHEAD_S = 0.5
# Closed loop: requests kept queued in the thread beyond the busy slots, per slot.
BACKLOG_PER_SLOT = 1
NO_CAP_CONNECTIONS = 4096  # concurrency unset: connections the thread may open


async def run_load_native(
    client: NativeClient,
    adapter: Adapter,
    workload: Sequence[GenRequest],
    spec: LoadSpec,
    id_prefix: str = "req",
    *,
    records: Records | None = None,
    on_done: Callable[[RequestRecord], None] | None = None,
    after_warmup: Callable[[], Awaitable[None]] | None = None,
    keep_records: bool = True,
) -> LoadResult:
    """``run_load`` on ``client`` (whose connection limit is the concurrency cap); same arguments and result."""
    if not workload:
        raise ConfigError("the workload has no requests")
    run = _NativeRun(client, adapter, spec, on_done, records if records is not None else [])
    loop = asyncio.get_running_loop()
    loop.add_reader(client.notify_fd, run.on_ready)
    try:
        warm = [RequestRecord(f"{id_prefix}-warmup-{i}", warmup=True) for i in range(spec.warmup_requests)]
        for i, rec in enumerate(warm):
            run.submit(rec, workload[i % len(workload)], AS_SOON_AS_FREE)
        await run.drained()
        if after_warmup is not None:
            await after_warmup()
        start_ns = time.monotonic_ns()
        measured = await run.measured_phase(workload, id_prefix, start_ns, keep_records)
        await run.drained()
        dropped = {id(r) for r in run.measured_dropped}
        measured = [r for r in measured if id(r) not in dropped]
        end_ns = time.monotonic_ns()
        kept = warm + measured if keep_records else []
        return LoadResult(kept, start_ns, end_ns, client="native", client_sched_policy=client.sched_policy)
    finally:
        loop.remove_reader(client.notify_fd)
        if run.pending:  # cancelled or failed: stop the thread; what was in flight comes back as errors
            client.close()
            run.on_ready()


class _NativeRun:
    def __init__(
        self,
        client: NativeClient,
        adapter: Adapter,
        spec: LoadSpec,
        on_done: Callable[[RequestRecord], None] | None,
        all_records: Records,
    ) -> None:
        self.client, self.adapter, self.spec, self.on_done = client, adapter, spec, on_done
        self.all_records = all_records
        self.pending: dict[int, RequestRecord] = {}
        self._next_id = 0
        self._timeout_ns = 0 if spec.timeout_s is None else int(spec.timeout_s * 1e9)
        self._idle = asyncio.Event()
        self._idle.set()
        self._answered = asyncio.Event()
        self.measured_dropped: list[RequestRecord] = []
        # The first exception raised while taking answers (interpreting one, or the caller's on_done). on_ready runs
        # as the event loop's reader callback, where asyncio would only log it and the run would wait forever for
        # the requests behind it: it is kept here and raised by the next await of the run.
        self.error: BaseException | None = None

    def submit(self, rec: RequestRecord, req: GenRequest, scheduled_ns: int, not_after_ns: int = NO_DEADLINE) -> None:
        rec.prompt, rec.max_tokens = req.prompt, req.max_tokens
        path, body, headers = request_parts(self.adapter, req, rec.request_id)
        job_id, self._next_id = self._next_id, self._next_id + 1
        self.pending[job_id] = rec
        self.all_records.append(rec)
        self._idle.clear()
        self.client.submit(
            [(job_id, scheduled_ns, self.client.request("POST", path, body, headers), self._timeout_ns, not_after_ns)]
        )

    def on_ready(self) -> None:
        for res in self.client.take():
            try:
                self._finish(res)
            except Exception as exc:  # every other answer of the batch is still recorded
                self.error = self.error or exc
        self._answered.set()
        if not self.pending or self.error is not None:
            self._idle.set()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _finish(self, res: NativeResult) -> None:
        rec = self.pending.pop(res.id)
        if not res.sent:  # never went out (past the run's end, or the client closed first): never released
            self.all_records.remove(rec)
            self.measured_dropped.append(rec)
            return
        interpret(self.adapter, rec, res)
        if self.on_done is not None:
            self.on_done(rec)

    async def drained(self) -> None:
        await self._idle.wait()
        self.raise_error()

    async def measured_phase(
        self, workload: Sequence[GenRequest], id_prefix: str, start_ns: int, keep_records: bool = True
    ) -> list[RequestRecord]:
        spec = self.spec
        n_max = spec.num_requests
        if n_max is None and spec.duration_s is None:
            n_max = len(workload)
        end_ns = NO_DEADLINE if spec.duration_s is None else start_ns + int(spec.duration_s * 1e9)
        measured: list[RequestRecord] = []

        def release(i: int, scheduled_ns: int) -> None:
            closed = scheduled_ns == AS_SOON_AS_FREE
            rec = RequestRecord(f"{id_prefix}-{i}", scheduled_ns=None if closed else scheduled_ns)
            if keep_records:
                measured.append(rec)
            # An open-loop request is released at its instant and waits for a slot however long; a closed-loop
            # one is released only when a slot frees, so none is released once the duration is over.
            not_after_ns = end_ns if closed else NO_DEADLINE
            self.submit(rec, workload[(spec.warmup_requests + i) % len(workload)], scheduled_ns, not_after_ns)

        if math.isinf(spec.rate):
            await self._closed_loop(release, n_max, end_ns)
        else:
            await self._open_loop(release, n_max, start_ns, end_ns)
        return measured

    async def _closed_loop(self, release: Callable[[int, int], None], n_max: int | None, end_ns: int) -> None:
        """Keep ``BACKLOG_PER_SLOT`` requests per slot queued in the thread (so a slot never waits for Python),
        topping up as answers come, until the count or the duration is reached. Records exist only for requests
        handed over, as ``run_load`` creates one only when a slot frees."""
        slots = self.spec.concurrency or NO_CAP_CONNECTIONS
        backlog = slots + BACKLOG_PER_SLOT * slots if self.spec.concurrency else (n_max or slots)
        i = 0
        while time.monotonic_ns() < end_ns and (n_max is None or i < n_max):
            while len(self.pending) < backlog and (n_max is None or i < n_max):
                release(i, AS_SOON_AS_FREE)
                i += 1
            self._answered.clear()
            timeout_s = None if end_ns == NO_DEADLINE else max(0.0, (end_ns - time.monotonic_ns()) / 1e9)
            try:
                await within(self._answered.wait(), timeout_s)
            except asyncio.TimeoutError:
                break
            self.raise_error()

    async def _open_loop(
        self, release: Callable[[int, int], None], n_max: int | None, start_ns: int, end_ns: int
    ) -> None:
        lookahead_ns = int(LOOKAHEAD_S * 1e9)
        for i, offset_s in enumerate(arrival_offsets_s(self.spec.rate, self.spec.burstiness, self.spec.seed)):
            if n_max is not None and i >= n_max:
                return
            scheduled_ns = start_ns + int(offset_s * 1e9)
            if scheduled_ns >= end_ns:
                return
            ahead_ns = scheduled_ns - lookahead_ns - time.monotonic_ns()
            if ahead_ns > 0:
                await asyncio.sleep(ahead_ns / 1e9)
            self.raise_error()
            release(i, scheduled_ns)
