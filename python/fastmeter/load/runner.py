"""The asyncio load generator: arrivals at a rate, a concurrency cap, warm-up, per-request timeouts.

Open loop (finite rate): the arrival process releases request ``i`` at its scheduled time whether or not earlier
ones finished; a released request waits for one of ``concurrency`` slots, then is sent (``scheduled_ns`` vs
``send_ns`` shows that queueing). Closed loop (``rate = inf``): requests go out as fast as slots free up, so
``concurrency`` requests are in flight until the count or the duration is reached. Warm-up requests run first,
to completion, and are recorded with ``warmup=True`` outside the measured span. Every request is recorded,
failed or not; failures never stop the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from fastmeter.adapters.base import Adapter, GenRequest, RequestRecord, stream_request
from fastmeter.adapters.http import HttpClient
from fastmeter.adapters.native import NativeClient, resolve_client
from fastmeter.adapters.openai import OpenAIAdapter
from fastmeter.adapters.prometheus import DEFAULT_PREFIXES, MetricRow, PrometheusScraper
from fastmeter.adapters.tgi import TGIAdapter
from fastmeter.errors import ConfigError
from fastmeter.load import workloads
from fastmeter.load.arrivals import arrival_offsets_s, check_rate
from fastmeter.load.config import BenchConfig
from fastmeter.load.live import Records


@dataclass(frozen=True)
class LoadSpec:
    """How to send. ``concurrency`` None means no cap. Stop after ``num_requests`` or ``duration_s`` (the first
    reached); with neither, send each workload request once."""

    concurrency: int | None = None
    rate: float = math.inf
    burstiness: float = 1.0
    num_requests: int | None = None
    duration_s: float | None = None
    warmup_requests: int = 0
    timeout_s: float | None = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_rate(self.rate, self.burstiness)
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1 (or unset for no cap), got {self.concurrency}")
        if self.num_requests is not None and self.num_requests < 1:
            raise ConfigError(f"num_requests must be >= 1, got {self.num_requests}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError(f"duration_s must be > 0, got {self.duration_s}")
        if self.warmup_requests < 0:
            raise ConfigError(f"warmup_requests must be >= 0, got {self.warmup_requests}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 (or unset for none), got {self.timeout_s}")
        unbounded = math.isinf(self.rate) and self.concurrency is None and self.num_requests is None
        if unbounded and self.duration_s is not None:
            raise ConfigError("rate = inf with duration_s needs a concurrency cap (else it would never stop)")


@dataclass
class LoadResult:
    """``records``: warm-up first, then measured requests in release order (empty when the load ran with
    ``keep_records=False``). ``start_ns``/``end_ns`` bound the measured phase (first release to last completion).
    ``metrics`` holds scraped Prometheus rows, if any."""

    records: list[RequestRecord]
    start_ns: int
    end_ns: int
    metrics: list[MetricRow] = field(default_factory=list)
    scrape_errors: int = 0
    client: str = "asyncio"  # the transport that sent the requests: asyncio or native
    client_sched_policy: str | None = None  # native: its thread's SCHED_FIFO or SCHED_OTHER (stamps depend on it)

    @property
    def measured(self) -> list[RequestRecord]:
        return [r for r in self.records if not r.warmup]

    def send_lag_ns(self) -> dict[str, int | None]:
        """How late measured requests went out after their scheduled time (``send_ns - scheduled_ns``):
        ``p50``, ``p99`` and ``max`` in ns, None without requests. With a concurrency cap the lag includes the
        wait for a free slot, so an open-loop run that outpaces the server shows it here."""
        return send_lag_summary_ns(
            [r.send_ns - r.scheduled_ns for r in self.measured if r.send_ns is not None and r.scheduled_ns is not None]
        )


def send_lag_summary_ns(lags_ns: Sequence[int]) -> dict[str, int | None]:
    """``p50``, ``p99`` and ``max`` of send lags (ns), None without any."""
    lags = sorted(int(x) for x in lags_ns)
    if not lags:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": _quantile(lags, 0.5), "p99": _quantile(lags, 0.99), "max": lags[-1]}


def _quantile(sorted_ns: list[int], q: float) -> int:
    """Nearest-rank quantile: an observed lag, never an interpolated one."""
    return sorted_ns[min(len(sorted_ns) - 1, max(0, math.ceil(q * len(sorted_ns)) - 1))]


def make_client(base_url: str, concurrency: int | None) -> HttpClient:
    """A keep-alive client holding up to ``concurrency`` idle connections. It never queues requests: queueing
    belongs to the load generator, where it is timed."""
    return HttpClient(base_url, concurrency)


async def run_load(
    client: HttpClient,
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
    """Run one load against ``client``'s server; requests cycle through ``workload``. ``after_warmup`` is awaited
    once the warm-up requests have finished, before the measured phase starts (the baseline /metrics scrape).

    ``records``: a list the caller owns, appended to as requests are released (warm-up ones first), so a run
    interrupted by a signal still has every request it started. ``on_done`` is called as each request ends.
    ``keep_records=False``: the load itself holds no finished request (its result has no ``records``), so a caller
    that drops them in ``on_done`` (``fastmeter.load.live.LiveRecords``) keeps only those in flight."""
    if not workload:
        raise ConfigError("the workload has no requests")
    sem = asyncio.Semaphore(spec.concurrency) if spec.concurrency else None

    async def send(req: GenRequest, rec: RequestRecord, holding: bool) -> None:
        if sem is None or holding:
            try:
                await stream_request(client, adapter, req, rec, spec.timeout_s)
            finally:
                if holding:
                    assert sem is not None
                    sem.release()
        else:
            async with sem:
                await stream_request(client, adapter, req, rec, spec.timeout_s)
        if on_done is not None:
            on_done(rec)

    all_records: Records = records if records is not None else []
    warm = [RequestRecord(f"{id_prefix}-warmup-{i}", warmup=True) for i in range(spec.warmup_requests)]
    all_records.extend(warm)
    await asyncio.gather(*(send(workload[i % len(workload)], r, False) for i, r in enumerate(warm)))
    if after_warmup is not None:
        await after_warmup()

    n_max = spec.num_requests
    if n_max is None and spec.duration_s is None:
        n_max = len(workload)
    closed_loop = math.isinf(spec.rate)
    duration_ns = None if spec.duration_s is None else int(spec.duration_s * 1e9)
    measured: list[RequestRecord] = []
    # Tasks leave the set as they finish (one that raised stays, for the gather below to raise it).
    tasks: set[asyncio.Task[None]] = set()

    def forget(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is None:
            tasks.discard(t)

    start_ns = time.monotonic_ns()
    for i, offset_s in enumerate(arrival_offsets_s(spec.rate, spec.burstiness, spec.seed)):
        if n_max is not None and i >= n_max:
            break
        holding = False
        if closed_loop:
            if sem is not None:
                await sem.acquire()
                holding = True
            scheduled_ns = time.monotonic_ns()
        else:
            scheduled_ns = start_ns + int(offset_s * 1e9)
            delay_ns = scheduled_ns - time.monotonic_ns()
            if duration_ns is not None and scheduled_ns - start_ns >= duration_ns:
                break
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / 1e9)
        if duration_ns is not None and scheduled_ns - start_ns >= duration_ns:
            if holding:
                assert sem is not None
                sem.release()
            break
        rec = RequestRecord(f"{id_prefix}-{i}", scheduled_ns=scheduled_ns)
        if keep_records:
            measured.append(rec)
        all_records.append(rec)
        task = asyncio.create_task(send(workload[(spec.warmup_requests + i) % len(workload)], rec, holding))
        tasks.add(task)
        task.add_done_callback(forget)
    await asyncio.gather(*tasks)
    return LoadResult(warm + measured if keep_records else [], start_ns, time.monotonic_ns())


def build_adapter(cfg: BenchConfig) -> Adapter:
    s = cfg.server
    if s.kind == "tgi":
        return TGIAdapter(extra_parameters=s.extra_body)
    assert s.model is not None  # validate_config requires it for openai
    return OpenAIAdapter(s.model, s.endpoint, s.ignore_eos, s.extra_body)


def build_workload(cfg: BenchConfig) -> list[GenRequest]:
    """The requests a config sends: warm-up ones first, then enough to cycle through for the measured ones."""
    w, ld = cfg.workload, cfg.load
    n = (ld.num_requests or 0) + ld.warmup_requests
    if w.kind == "random":
        assert w.input_tokens is not None and w.output_tokens is not None  # required for random
        reqs = workloads.random_workload(max(n, 1), w.input_tokens, w.output_tokens, ld.seed)
    else:
        assert w.path is not None  # required for dataset kinds
        if w.kind == "jsonl":
            reqs = workloads.jsonl_workload(w.path, w.max_tokens)
        elif w.kind == "mtbench":
            assert w.max_tokens is not None  # required for mtbench
            reqs = workloads.mtbench_workload(w.path, w.max_tokens)
        else:
            reqs = workloads.sharegpt_workload(w.path, w.max_tokens)
    if w.shuffle:
        reqs = workloads.take(reqs, len(reqs), shuffle=True, seed=ld.seed)
    if w.template is not None:
        reqs = workloads.apply_template(reqs, w.template)
    return reqs


def spec_from_config(cfg: BenchConfig) -> LoadSpec:
    fields = dataclasses.asdict(cfg.load)
    del fields["client"]  # which transport sends is chosen by run_config, not part of how to send
    return LoadSpec(**fields)


async def run_config(
    cfg: BenchConfig,
    *,
    records: Records | None = None,
    metrics: list[MetricRow] | None = None,
    on_done: Callable[[RequestRecord], None] | None = None,
    keep_records: bool = True,
) -> LoadResult:
    """Run a validated config: the load, with /metrics scraped alongside when [metrics].enabled.

    ``records`` and ``metrics``: caller-owned lists filled as the run goes, so an interrupted run keeps them.
    ``keep_records``: as for ``run_load``."""
    adapter, workload, spec = build_adapter(cfg), build_workload(cfg), spec_from_config(cfg)
    kind = resolve_client(cfg.load.client, cfg.server.base_url)
    url = cfg.server.base_url

    async def load(after_warmup: Callable[[], Awaitable[None]] | None = None) -> LoadResult:
        if kind == "native":
            # Imported here: native_runner builds on this module's LoadSpec and LoadResult.
            from fastmeter.load.native_runner import NO_CAP_CONNECTIONS, run_load_native

            with NativeClient(url, spec.concurrency or NO_CAP_CONNECTIONS) as native:
                return await run_load_native(native, adapter, workload, spec, records=records, on_done=on_done,
                                             after_warmup=after_warmup, keep_records=keep_records)
        async with make_client(url, spec.concurrency) as client:
            return await run_load(client, adapter, workload, spec, records=records, on_done=on_done,
                                  after_warmup=after_warmup, keep_records=keep_records)

    m = cfg.metrics
    if not m.enabled:
        return await load()
    prefixes = m.prefixes if m.prefixes is not None else DEFAULT_PREFIXES
    async with make_client(url, 1) as metrics_client:
        scraper = PrometheusScraper(metrics_client, m.path, m.interval_s, prefixes)
        if metrics is not None:
            scraper.rows = metrics
        async with scraper:
            # Server-side deltas must exclude warm-up: one scrape right after it is the baseline, one at the
            # end closes the measured phase (fastmeter.analysis.server_metrics).
            result = await load(scraper.scrape_once)
            await scraper.scrape_once()
    result.metrics = scraper.rows
    result.scrape_errors = scraper.errors
    return result


def run(cfg: BenchConfig) -> LoadResult:
    """Synchronous entry point: ``run(load_config("configs/vllm-random.toml"))``."""
    return asyncio.run(run_config(cfg))
