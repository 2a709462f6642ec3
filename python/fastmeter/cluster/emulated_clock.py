"""For tests and emulation only: a node clock that differs from this machine's CLOCK_MONOTONIC.

All nodes of a Ray cluster on one machine share one CLOCK_MONOTONIC. A node actor started with
FASTMETER_CLOCK_OFFSET_NS (a constant) and FASTMETER_CLOCK_DRIFT_PPM (a rate error, from the actor's start) reports
every instant as node = monotonic + offset + drift_ppm * 1e-6 * (monotonic - start), so the driver sees a node whose
clock started elsewhere and runs fast or slow, and its offset estimates must follow. Unset, the clock is the machine's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import numpy as np

from fastmeter.errors import ConfigError

CLOCK_OFFSET_ENV = "FASTMETER_CLOCK_OFFSET_NS"
CLOCK_DRIFT_ENV = "FASTMETER_CLOCK_DRIFT_PPM"
# A drift beyond 10% is no clock: refuse it rather than emulate something no node does.
MAX_DRIFT_PPM = 100_000.0


class NodeClock:
    """node_ns = monotonic_ns + offset_ns + drift_ppm * 1e-6 * (monotonic_ns - origin_ns)."""

    def __init__(self, offset_ns: int = 0, drift_ppm: float = 0.0, origin_ns: int | None = None) -> None:
        self.offset_ns, self.drift = int(offset_ns), float(drift_ppm) * 1e-6
        self.origin_ns = time.monotonic_ns() if origin_ns is None else int(origin_ns)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NodeClock:
        env = os.environ if environ is None else environ
        offset, drift = env.get(CLOCK_OFFSET_ENV, "0"), env.get(CLOCK_DRIFT_ENV, "0")
        try:
            offset_ns = int(offset)
        except ValueError:
            raise ConfigError(f"{CLOCK_OFFSET_ENV}={offset!r} is not an integer number of nanoseconds") from None
        try:
            drift_ppm = float(drift)
        except ValueError:
            drift_ppm = float("nan")
        if not abs(drift_ppm) <= MAX_DRIFT_PPM:
            raise ConfigError(f"{CLOCK_DRIFT_ENV}={drift!r} must be a number of ppm within +-{MAX_DRIFT_PPM:g}")
        return cls(offset_ns, drift_ppm)

    def node_ns(self, mono_ns: int) -> int:
        return mono_ns + self.offset_ns + round(self.drift * (mono_ns - self.origin_ns))

    def node_array(self, mono_ns: np.ndarray) -> np.ndarray:
        shift = np.rint(self.drift * (mono_ns - self.origin_ns).astype(np.float64)).astype(np.int64)
        return mono_ns + self.offset_ns + shift

    def mono_ns(self, node_ns: int) -> int:
        """The inverse: exact up to rounding, since (1 + drift) scales the time since the origin."""
        return self.origin_ns + round((node_ns - self.offset_ns - self.origin_ns) / (1.0 + self.drift))

    def mono_array(self, node_ns: np.ndarray) -> np.ndarray:
        rel = (node_ns - self.offset_ns - self.origin_ns).astype(np.float64) / (1.0 + self.drift)
        return self.origin_ns + np.rint(rel).astype(np.int64)
