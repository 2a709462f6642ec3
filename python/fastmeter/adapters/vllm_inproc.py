"""vLLM's engine in process (`pip install 'fastmeter[vllm]'`): run `vllm.LLM.generate` and record each request
on our clock.

`RequestOutput.metrics` carries `queued_ts`, `scheduled_ts`, `first_token_ts` and `last_token_ts` as
`time.monotonic()` seconds (V1 engine). CLOCK_MONOTONIC is system-wide, so those are already on the sampler's
clock, even from the engine's worker processes; `generate` checks it against its own readings around the call.
The engine reports no per-token times, so a request gets two chunks: its first token at `first_token_ts`, the
rest at `last_token_ts` (token-weighted attribution spreads those evenly over the decode span).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fastmeter.adapters.base import RequestRecord
from fastmeter.errors import ConfigError, FastmeterError

# Engine timestamps are float seconds: converting to ns can be off by well under a microsecond.
CLOCK_SLACK_NS = 1_000


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def record_from_output(output: Any, request_id: str) -> RequestRecord:
    """One finished `vllm.RequestOutput` as a RequestRecord (times in CLOCK_MONOTONIC ns)."""
    m = output.metrics
    if m is None:
        raise ConfigError(
            "vLLM returned no request metrics: create the engine with vllm.LLM(..., disable_log_stats=False)"
        )
    completion = output.outputs[0]
    n_tokens = len(completion.token_ids)
    first_ns, last_ns = _ns(m.first_token_ts), _ns(m.last_token_ts)
    rec = RequestRecord(
        request_id,
        prompt=output.prompt or "",
        max_tokens=n_tokens,
        scheduled_ns=_ns(m.scheduled_ts),
        send_ns=_ns(m.queued_ts),
        first_token_ns=first_ns if n_tokens else None,
        end_ns=last_ns if n_tokens else _ns(m.scheduled_ts),
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=n_tokens,
        finish_reason=completion.finish_reason,
        text=completion.text,
    )
    if n_tokens:
        rec.chunk_t_ns = [first_ns] + ([last_ns] if n_tokens > 1 else [])
        rec.chunk_tokens = [1] + ([n_tokens - 1] if n_tokens > 1 else [])
    return rec


def generate(
    llm: Any, prompts: Sequence[str], sampling_params: Any, id_prefix: str = "req"
) -> tuple[list[RequestRecord], tuple[int, int]]:
    """Run `llm.generate` and return its requests as records plus the (start_ns, end_ns) span of the call."""
    start_ns = time.monotonic_ns()
    outputs = llm.generate(list(prompts), sampling_params)
    end_ns = time.monotonic_ns()
    records = [record_from_output(o, f"{id_prefix}-{i}") for i, o in enumerate(outputs)]
    for r in records:
        assert r.send_ns is not None and r.end_ns is not None
        if r.send_ns < start_ns - CLOCK_SLACK_NS or r.end_ns > end_ns + CLOCK_SLACK_NS:
            raise FastmeterError(
                f"vLLM's request timestamps for {r.request_id} fall outside the generate() call: this vLLM does "
                "not stamp requests with time.monotonic(), so they cannot be put on fastmeter's clock"
            )
    return records, (start_ns, end_ns)
