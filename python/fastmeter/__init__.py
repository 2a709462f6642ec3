"""fastmeter: rigorous, low-overhead energy measurement for AI models and inference servers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastmeter.errors import (
    ConfigError,
    FastmeterError,
    MeterStateError,
    SourceUnavailableError,
    SpanError,
)

try:
    __version__ = version("fastmeter")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = [
    "ConfigError",
    "FastmeterError",
    "MeterStateError",
    "SourceUnavailableError",
    "SpanError",
    "__version__",
]
