"""One load run by one client against stamp_server, in its own interpreter; prints one JSON line.

``fastmeter`` / ``fastmeter-uvloop``: fastmeter's load runner (``run_load``, closed loop at the concurrency) on
asyncio's loop / on uvloop; ``fastmeter-native``: ``run_load_native`` on the native transport (C++ epoll thread);
each with a ``Meter`` sampling the synthetic source at 1 kHz in the same process, as ``fastmeter bench`` runs.
``vllm``: vLLM's own benchmark request
function (``vllm/benchmarks/lib/endpoint_request_func.py``, loaded by path from a vLLM install so that the vllm
package itself is not imported) driven as ``vllm bench serve`` drives it: one ``aiohttp.ClientSession`` with
vLLM's connector settings and an ``asyncio.Semaphore`` for the concurrency. Only the standard library is imported
at the top: the vllm worker runs in vLLM's venv.

Reported: main-thread CPU time (the event loop's, plus for fastmeter-native the transport thread's; the Meter's
sampler thread is excluded) and wall time of the timed run, requests, chunks, and per chunk the client's receive
stamp minus the server's send stamp (both CLOCK_MONOTONIC: vLLM stamps with ``time.perf_counter``, which is
CLOCK_MONOTONIC on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import sys
import threading
import time
from pathlib import Path

# (receive - send per chunk ns, complete requests, CPU ns, wall ns, send lag p50/p99/max ns or None,
#  bunched requests or None: vLLM's client does not tell, (run-queue wait ns, timeslices) of the receiving thread)
Outcome = tuple[list[int], int, int, int, "dict[str, int | None] | None", "int | None", "tuple[int, int]"]


def _schedstat(tid: int) -> tuple[int, int]:
    """(ns spent waiting for a CPU while runnable, timeslices run) of one thread of this process: the part of the
    receive delay that is the machine's, not the client's code (Linux /proc/<pid>/task/<tid>/schedstat)."""
    _, wait_ns, slices = open(f"/proc/self/task/{tid}/schedstat").read().split()
    return int(wait_ns), int(slices)


def _delta(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return b[0] - a[0], b[1] - a[1]


STAMP_MODEL = "m"  # stamp_server's model: the text of each chunk is its send time


def _stamps(text: str) -> list[int]:
    return [int(w) for w in text.split()]


async def _fastmeter(
    url: str, concurrency: int, n_requests: int, tokens: int, rate: float, model: str, native: bool | None = None
) -> Outcome:
    """``native``: None for the asyncio client, else the native transport with ``realtime`` = native."""
    from fastmeter.adapters import GenRequest, OpenAIAdapter, RequestRecord, stream_request
    from fastmeter.load import LoadSpec, make_client, run_load

    adapter = OpenAIAdapter(model, ignore_eos=True)
    async with make_client(url, concurrency) as client:
        await stream_request(client, adapter, GenRequest("warm up", tokens), RequestRecord("w"))
    spec = LoadSpec(concurrency=concurrency, rate=rate, num_requests=n_requests, timeout_s=600.0)
    workload = [GenRequest(f"count {i} to {i + 9}", tokens) for i in range(64)]
    if native is not None:  # CPU: the event loop's thread plus the native transport's own thread
        from fastmeter.adapters.native import NativeClient
        from fastmeter.load.native_runner import run_load_native

        with NativeClient(url, concurrency, realtime=native) as nc:
            while not nc.thread_tid:
                await asyncio.sleep(0.001)
            t0, n0, s0 = time.thread_time_ns(), nc.thread_cpu_ns, _schedstat(nc.thread_tid)
            result = await run_load_native(nc, adapter, workload, spec)
            cpu_ns = time.thread_time_ns() - t0 + nc.thread_cpu_ns - n0
            sched = _delta(s0, _schedstat(nc.thread_tid))
    else:
        async with make_client(url, concurrency) as client:
            t0, s0 = time.thread_time_ns(), _schedstat(threading.get_native_id())
            result = await run_load(client, adapter, workload, spec)
            cpu_ns = time.thread_time_ns() - t0
            sched = _delta(s0, _schedstat(threading.get_native_id()))
    lat: list[int] = []
    ok = 0
    for r in result.measured:
        if r.ok and r.completion_tokens == tokens:
            ok += 1
            if model == STAMP_MODEL:
                lat.extend(rx - tx for rx, tx in zip(r.chunk_t_ns, _stamps(r.text)))
    bunched = sum(r.bunched for r in result.measured)
    return lat, ok, cpu_ns, result.end_ns - result.start_ns, result.send_lag_ns(), bunched, sched


async def _vllm(url: str, concurrency: int, n_requests: int, tokens: int, venv: Path, model: str) -> Outcome:
    import aiohttp

    (path,) = venv.glob("lib/python3*/site-packages/vllm/benchmarks/lib/endpoint_request_func.py")
    spec = importlib.util.spec_from_file_location("endpoint_request_func", path)
    assert spec is not None and spec.loader is not None
    erf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(erf)
    api_url = url + "/v1/completions"

    def make_input() -> object:
        return erf.RequestFuncInput(
            prompt="count 1 to 10", api_url=api_url, prompt_len=8, output_len=tokens, model=model, ignore_eos=True
        )

    def session() -> aiohttp.ClientSession:  # as vllm/benchmarks/serve.py builds it
        connector = aiohttp.TCPConnector(
            limit=concurrency,
            limit_per_host=concurrency,
            ttl_dns_cache=300,
            use_dns_cache=True,
            keepalive_timeout=60,
            enable_cleanup_closed=True,
            force_close=False,
            ssl=False,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=True, timeout=erf.AIOHTTP_TIMEOUT)

    async with session() as s:
        await erf.async_request_openai_completions(make_input(), s)
    sem = asyncio.Semaphore(concurrency)

    async def limited(s: aiohttp.ClientSession) -> object:
        async with sem:
            return await erf.async_request_openai_completions(make_input(), s)

    async with session() as s:
        t0, w0, s0 = time.thread_time_ns(), time.monotonic_ns(), _schedstat(threading.get_native_id())
        outputs = await asyncio.gather(*(limited(s) for _ in range(n_requests)))
        cpu_ns, wall_ns = time.thread_time_ns() - t0, time.monotonic_ns() - w0
        sched = _delta(s0, _schedstat(threading.get_native_id()))
    lat: list[int] = []
    ok = 0
    for o in outputs:
        if not o.success or o.output_tokens != tokens:
            continue
        ok += 1
        if model != STAMP_MODEL:
            continue
        sent = _stamps(o.generated_text)
        t = o.start_time + o.ttft
        rx = [t]
        for gap in o.itl:
            t += gap
            rx.append(t)
        lat.extend(round(r * 1e9) - tx for r, tx in zip(rx, sent))
    return lat, ok, cpu_ns, wall_ns, None, None, sched


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "client", choices=("fastmeter", "fastmeter-uvloop", "fastmeter-native", "fastmeter-native-other", "vllm")
    )
    ap.add_argument("url")
    ap.add_argument("concurrency", type=int)
    ap.add_argument("requests", type=int)
    ap.add_argument("tokens", type=int)
    ap.add_argument("--vllm-venv", type=Path)
    ap.add_argument("--model", default=STAMP_MODEL, help="served model name; any other than stamp_server's: no stamps")
    ap.add_argument("--rate", type=float, default=math.inf, help="open-loop arrivals per second (fastmeter only)")
    a = ap.parse_args()
    if a.client.startswith("fastmeter"):
        import fastmeter

        with fastmeter.Meter(sources=("synthetic",), period_us=1000):
            native = {"fastmeter-native": True, "fastmeter-native-other": False}.get(a.client)
            main = _fastmeter(a.url, a.concurrency, a.requests, a.tokens, a.rate, a.model, native)
            if a.client == "fastmeter-uvloop":
                import uvloop

                lat, ok, cpu_ns, wall_ns, lag, bunched, sched = uvloop.run(main)
            else:
                lat, ok, cpu_ns, wall_ns, lag, bunched, sched = asyncio.run(main)
    else:
        lat, ok, cpu_ns, wall_ns, lag, bunched, sched = asyncio.run(
            _vllm(a.url, a.concurrency, a.requests, a.tokens, a.vllm_venv, a.model)
        )
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None  # noqa: E731
    out = {
        "ok": ok,
        "cpu_ns": cpu_ns,
        "wall_ns": wall_ns,
        "chunks": ok * a.tokens,
        "lat_p50_ns": q(0.5),
        "lat_p99_ns": q(0.99),
        "lat_max_ns": lat[-1] if lat else None,
        "send_lag_ns": lag,
        "bunched": bunched,
        "runq_wait_ns": sched[0],
        "timeslices": sched[1],
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
