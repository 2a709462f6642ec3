"""One error base class for everything fastmeter raises on bad input or unusable hardware."""

from __future__ import annotations


class FastmeterError(Exception):
    """Base class: the message says what went wrong and what to do next."""


class SourceUnavailableError(FastmeterError):
    """A requested power source cannot run here (missing library, no permission, no hardware)."""


class ConfigError(FastmeterError, ValueError):
    """An argument or configuration value is invalid."""


class MeterStateError(FastmeterError, RuntimeError):
    """The meter was used in a state that does not allow it (e.g. after stop)."""


class SpanError(FastmeterError, ValueError):
    """A time range lies outside what the meter recorded."""


class CalibrationError(FastmeterError):
    """Sensor calibration could not estimate what it was asked to (too few updates, no visible load)."""
