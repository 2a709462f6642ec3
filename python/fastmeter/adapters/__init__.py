"""Server adapters: stream requests to inference servers and record each one on CLOCK_MONOTONIC ns."""

from __future__ import annotations

from fastmeter.adapters.base import (
    STATUSES,
    Adapter,
    GenRequest,
    RequestRecord,
    StreamError,
    stream_request,
)
from fastmeter.adapters.openai import OpenAIAdapter
from fastmeter.adapters.tgi import TGIAdapter

__all__ = [
    "STATUSES",
    "Adapter",
    "GenRequest",
    "OpenAIAdapter",
    "RequestRecord",
    "StreamError",
    "TGIAdapter",
    "stream_request",
]
