"""fastmeter: rigorous, low-overhead energy measurement for AI models and inference servers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastmeter.attribution import Attribution, attribute
from fastmeter.errors import (
    ConfigError,
    FastmeterError,
    MeterStateError,
    SourceUnavailableError,
    SpanError,
)
from fastmeter.meter import SAMPLES_SCHEMA, Meter
from fastmeter.sources import Channel, SourceInfo, available_sources
from fastmeter.span import SpanResult
from fastmeter.window import Window

try:
    __version__ = version("fastmeter")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = [
    "Attribution",
    "SAMPLES_SCHEMA",
    "Channel",
    "Meter",
    "SourceInfo",
    "SpanResult",
    "Window",
    "attribute",
    "available_sources",
    "ConfigError",
    "FastmeterError",
    "MeterStateError",
    "SourceUnavailableError",
    "SpanError",
    "__version__",
]
