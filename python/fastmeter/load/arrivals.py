"""Request arrival times: Poisson or gamma inter-arrival gaps at a mean rate, as in ``vllm bench serve``.

Gaps are gamma-distributed with shape ``burstiness`` and scale ``1 / (rate * burstiness)``, so the mean rate is
``rate`` for any burstiness; burstiness 1 is a Poisson process, < 1 is burstier, > 1 more regular. An infinite
rate sends everything at t = 0. The same seed gives the same times.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from fastmeter.errors import ConfigError

_BLOCK = 1024


def check_rate(rate: float, burstiness: float) -> None:
    if not (rate > 0):
        raise ConfigError(f"rate must be > 0 requests/s or inf, got {rate}")
    if not (burstiness > 0 and math.isfinite(burstiness)):
        raise ConfigError(f"burstiness must be a finite number > 0 (1 = Poisson), got {burstiness}")


def arrival_offsets_s(rate: float, burstiness: float = 1.0, seed: int = 0) -> Iterator[float]:
    """Endless arrival times in seconds after the start; the first is at 0, then one gap between each."""
    check_rate(rate, burstiness)
    if math.isinf(rate):
        while True:
            yield 0.0
    rng = np.random.default_rng(seed)
    scale = 1.0 / (rate * burstiness)
    t = 0.0
    while True:
        for gap in rng.gamma(burstiness, scale, _BLOCK).tolist():
            yield t
            t += gap


def arrival_times_s(n: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """The first ``n`` arrival times of ``arrival_offsets_s``."""
    it = arrival_offsets_s(rate, burstiness, seed)
    return [next(it) for _ in range(n)]
