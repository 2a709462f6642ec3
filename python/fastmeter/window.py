"""A measured interval: energy per channel between two instants on the meter's clock."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from fastmeter.errors import MeterStateError

if TYPE_CHECKING:
    from fastmeter.meter import Meter


class Window:
    """Created by `Meter.window(name)`. Usable as a context manager (sync or async), from any thread; windows nest
    and overlap freely because each one only holds its two timestamps."""

    def __init__(self, meter: Meter, name: str) -> None:
        self._meter = meter
        self.name = name
        self.t0_ns: int | None = None
        self.t1_ns: int | None = None
        self.truncated = False  # the meter stopped before the window closed; it ends at the stop instant
        self._by_channel: dict[str, float] | None = None
        self._provisional = True

    # --- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> Window:
        self.t0_ns = self._meter.now_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Window:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self, t_ns: int | None = None) -> None:
        if self.t1_ns is not None:
            return
        t1 = time.monotonic_ns() if t_ns is None else t_ns
        stop_ns = self._meter._stop_ns()
        if stop_ns is not None and t1 > stop_ns:
            t1, self.truncated = stop_ns, True
        self.t1_ns = t1

    # --- results ---------------------------------------------------------------------------------------------
    @property
    def by_channel(self) -> dict[str, float]:
        """Joules per channel. Waits (bounded) for each counter's next update after the window's end; if it does
        not come in time the values are provisional (see `provisional`)."""
        if self._by_channel is None or self._provisional:
            t0, t1 = self._span()
            self._by_channel, self._provisional = self._meter._energy_between(t0, t1)
        return dict(self._by_channel)

    @property
    def provisional(self) -> bool:
        """True when some channel has not updated since the window ended, so its end was extrapolated."""
        self.by_channel  # noqa: B018 - computes the values and their finality
        return self._provisional

    @property
    def energy_j(self) -> float:
        """Total joules, counting each physical quantity once (subzones and channels covered by psys excluded)."""
        by = self.by_channel
        return math.fsum(by[c.name] for c in self._meter.channels if c.in_total and not math.isnan(by[c.name]))

    @property
    def duration_s(self) -> float:
        t0, t1 = self._span()
        return (t1 - t0) * 1e-9

    @property
    def avg_power_w(self) -> float:
        d = self.duration_s
        return self.energy_j / d if d > 0 else math.nan

    def _span(self) -> tuple[int, int]:
        if self.t0_ns is None:
            raise MeterStateError(f"window {self.name!r} was never entered; use `with meter.window(...)`")
        if self.t1_ns is None:
            raise MeterStateError(f"window {self.name!r} is still open; read its energy after the `with` block")
        return self.t0_ns, self.t1_ns

    def __repr__(self) -> str:
        if self.t1_ns is None:
            return f"<Window {self.name!r} open>"
        return f"<Window {self.name!r} {self.duration_s:.6f} s>"
