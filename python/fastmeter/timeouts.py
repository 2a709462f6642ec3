"""`within`: await with a time limit, without losing the caller's cancellation.

`asyncio.wait_for` before Python 3.12 returns the inner result when the caller is cancelled in the same turn of the
event loop as the inner awaitable completes, and the cancellation is lost (CPython gh-86296). That stopped nothing
in fastmeter at first: the Prometheus scraper is stopped by cancelling its task, and a cancel that landed as a scrape
finished let it scrape forever while `bench` waited for it (a run that never ended, seen in CI against real vLLM).
SIGINT stops a load by cancelling it too. Every bounded wait in fastmeter goes through `within`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], timeout_s: float | None) -> T:
    """`await aw`, or raise `asyncio.TimeoutError` after `timeout_s` (None: no limit), with `aw` cancelled and
    finished. A cancellation of the caller always propagates, with `aw` cancelled too."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        await _cancelled(task)
        raise
    if not done:
        await _cancelled(task)
        raise asyncio.TimeoutError
    return task.result()


async def _cancelled(task: asyncio.Future[T]) -> None:
    """Cancel `task` and wait until it has finished (its cleanup run), whatever it raised."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: a task that failed as it was cancelled does not warn "never retrieved"
