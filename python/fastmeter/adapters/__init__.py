"""Server adapters: stream requests to inference servers and record each one on CLOCK_MONOTONIC ns."""

from __future__ import annotations

from fastmeter.adapters.base import (
    STATUSES,
    Adapter,
    GenRequest,
    RequestRecord,
    StreamError,
    is_bunched,
    stream_request,
)
from fastmeter.adapters.http import HttpClient, TransportError
from fastmeter.adapters.openai import OpenAIAdapter
from fastmeter.adapters.ready import ServerUnreachableError, check_ready, wait_until_ready
from fastmeter.adapters.tgi import TGIAdapter

__all__ = [
    "STATUSES",
    "Adapter",
    "GenRequest",
    "HttpClient",
    "OpenAIAdapter",
    "RequestRecord",
    "ServerUnreachableError",
    "StreamError",
    "TGIAdapter",
    "TransportError",
    "check_ready",
    "is_bunched",
    "stream_request",
    "wait_until_ready",
]
