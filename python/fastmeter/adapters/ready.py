"""Is the server there? A bounded readiness check that bench runs before it starts the meter.

It polls the readiness paths that OpenAI-compatible servers (vLLM, SGLang, TensorRT-LLM, llama.cpp) and TGI
serve, until one answers 2xx or the time is up. A server still loading answers 503 or refuses connections: both
are retried until the deadline, so a check right after starting a server waits for it instead of failing.
"""

from __future__ import annotations

import asyncio
import time

from fastmeter.adapters.http import HttpClient, TransportError
from fastmeter.errors import FastmeterError
from fastmeter.timeouts import within

READY_PATHS = ("/v1/models", "/health")
DEFAULT_READY_TIMEOUT_S = 10.0
_POLL_S = 0.25
_MAX_BODY_BYTES = 1024 * 1024


class ServerUnreachableError(FastmeterError):
    """No readiness path of the server answered 2xx in time."""


async def check_ready(base_url: str, timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> str:
    """Return the path that answered 2xx; raise ServerUnreachableError (one line, what to do) after ``timeout_s``.

    A URL where every readiness path answers 404 is something other than an inference server's root: that fails
    at once instead of waiting out the timeout."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    try:
        client = HttpClient(base_url, 1)
    except ValueError as exc:
        raise ServerUnreachableError(f"cannot reach {base_url!r}: {exc}") from None
    deadline = time.monotonic() + timeout_s
    why = ""
    async with client:
        while True:
            statuses = []
            for path in READY_PATHS:
                left = deadline - time.monotonic()
                try:
                    status, _ = await within(client.get(path, _MAX_BODY_BYTES), max(left, 0.01))
                except asyncio.TimeoutError:
                    why = f"no answer from {path} within {timeout_s:g} s"
                    continue
                except TransportError as exc:
                    why = str(exc)
                    continue
                if 200 <= status < 300:
                    return path
                statuses.append(status)
                why = f"{path} answered HTTP {status}"
            if statuses == [404] * len(READY_PATHS):
                raise ServerUnreachableError(
                    f"{base_url} answers HTTP but has neither {' nor '.join(READY_PATHS)}: "
                    "set base_url to the inference server's root URL"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerUnreachableError(
                    f"cannot reach {base_url}: {why} (waited {timeout_s:g} s); start the server or fix base_url"
                )
            await asyncio.sleep(min(_POLL_S, left))


def wait_until_ready(base_url: str, timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> str:
    """Synchronous ``check_ready``, for callers outside an event loop (bench, before the meter starts)."""
    return asyncio.run(check_ready(base_url, timeout_s))
