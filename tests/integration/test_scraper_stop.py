"""The Prometheus scraper stops when its `async with` ends, whenever that happens relative to a scrape: a stop that
lands as a scrape completes once let it scrape forever, and `bench` waited for it (a run that never ended)."""

from __future__ import annotations

import asyncio
import random

import pytest

from fastmeter.adapters.http import HttpClient
from fastmeter.adapters.prometheus import PrometheusScraper
from tests.emulators.fake_server import FakeServer, Request, Script, Send

EXPOSITION = b"# TYPE vllm:request_arrivals counter\nvllm:request_arrivals_total 3\n"
CYCLES = 300


# A scraper that does not stop cannot be cancelled reliably either: the test process ends after this long.
@pytest.mark.timeout(120, method="thread")
def test_the_scraper_stops_at_any_instant() -> None:
    def handler(_req: Request) -> Script:
        return Script([Send(EXPOSITION)], content_type="text/plain", chunked=False)

    async def cycle(client: HttpClient, rng: random.Random) -> None:
        async with PrometheusScraper(client, interval_s=0.0005, prefixes=("vllm:",), timeout_s=1.0) as scraper:
            await asyncio.sleep(rng.uniform(0.0, 0.003))  # exits land before, during and as scrapes complete
        assert scraper.errors == 0 and scraper.rows

    async def main(url: str) -> None:
        rng = random.Random(12)
        async with HttpClient(url) as client:
            for i in range(CYCLES):
                task = asyncio.create_task(cycle(client, rng))
                done, _ = await asyncio.wait({task}, timeout=5.0)
                assert done, f"cycle {i}: the scraper still runs 5 s after its `async with` ended"
                task.result()

    with FakeServer(handler) as server:
        asyncio.run(main(server.url))
