"""`within`: a bounded await that never loses the caller's cancellation (asyncio.wait_for on Python < 3.12 does when
the inner awaitable completes in the same turn as the cancel, CPython gh-86296)."""

from __future__ import annotations

import asyncio

import pytest

from fastmeter.timeouts import within


def test_a_cancel_in_the_turn_the_awaited_completes_still_cancels() -> None:
    async def main() -> None:
        inner = asyncio.get_running_loop().create_future()
        caller = asyncio.create_task(within(inner, 10.0))
        await asyncio.sleep(0)  # the caller now waits on inner
        inner.set_result("scraped")
        caller.cancel()  # same turn: wait_for would return "scraped" and drop this
        with pytest.raises(asyncio.CancelledError):
            await caller

    asyncio.run(main())


async def _sleep_then_clean_up(finished: list[str]) -> None:
    try:
        await asyncio.sleep(10)
    finally:
        finished.append("cleanup ran")


def test_a_cancelled_caller_cancels_and_finishes_the_awaited() -> None:
    finished: list[str] = []

    async def main() -> None:
        caller = asyncio.create_task(within(_sleep_then_clean_up(finished), 10.0))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    asyncio.run(main())
    assert finished == ["cleanup ran"]


def test_timeout_cancels_the_awaited_and_raises() -> None:
    finished: list[str] = []

    async def main() -> float:
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(asyncio.TimeoutError):
            await within(_sleep_then_clean_up(finished), 0.05)
        return asyncio.get_running_loop().time() - t0

    waited_s = asyncio.run(main())
    assert finished == ["cleanup ran"] and 0.05 <= waited_s < 5.0


def test_result_and_exception_of_the_awaited_come_through() -> None:
    async def ok() -> int:
        return 7

    async def bad() -> None:
        raise ValueError("from inside")

    assert asyncio.run(within(ok(), 1.0)) == 7
    with pytest.raises(ValueError, match="from inside"):
        asyncio.run(within(bad(), 1.0))
