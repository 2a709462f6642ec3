"""A measured interval: energy per channel between two instants on the meter's clock."""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from fastmeter.errors import MeterStateError
from fastmeter.span import SpanResult
from fastmeter.validity import Validity

if TYPE_CHECKING:
    from fastmeter.meter import Meter


class Window:
    """Created by `Meter.window(name)`. Usable as a context manager (sync or async), from any thread; windows nest
    and overlap freely because each one only holds its two timestamps. Each window is entered once.

    Results wait (at most MAX_WAIT_FINAL_S, 1 s) for every counter to update after the window's end; from asyncio use
    `await w.result()`, which waits in the loop's executor, before reading the properties."""

    def __init__(self, meter: Meter, name: str) -> None:
        self._meter = meter
        self.name = name
        self.t0_ns: int | None = None
        self.t1_ns: int | None = None
        self.truncated = False  # the meter stopped before the window closed; it ends at the stop instant
        self._result: SpanResult | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> Window:
        if self.t0_ns is not None:
            raise MeterStateError(
                f"window {self.name!r} was already entered; open a new one with meter.window() for each interval"
            )
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
        stop_ns = self._meter.stop_ns
        if stop_ns is not None and t1 > stop_ns:
            t1, self.truncated = stop_ns, True
        self.t1_ns = t1

    # --- results ---------------------------------------------------------------------------------------------
    def span(self) -> SpanResult:
        """Values, error bounds, finality and verdict. A window racing the meter's stop ends at the stop instant
        (`truncated`). Recomputed while provisional and the meter runs, so a later read may be final."""
        r = self._result
        if r is None or (r.provisional and self._meter.running):
            t0, t1 = self._span()
            r = self._result = self._meter._span(t0, t1, clamp_to_stop=True)
            if r.truncated:
                self.t0_ns, self.t1_ns, self.truncated = r.t0_ns, r.t1_ns, True
        return r

    async def result(self) -> SpanResult:
        """`span()` for asyncio: the bounded wait runs in the loop's executor, so the loop keeps running."""
        return await asyncio.get_running_loop().run_in_executor(None, self.span)

    @property
    def by_channel(self) -> dict[str, float]:
        """Joules per channel; NaN for a channel that failed or whose counter never updated inside or after the
        window."""
        return dict(self.span().energy_j)

    @property
    def provisional(self) -> bool:
        """True when some channel has not updated since the window ended, so its end was extrapolated."""
        return self.span().provisional

    @property
    def energy_j(self) -> float:
        """Total joules, counting each physical quantity once (subzones and channels covered by psys excluded);
        NaN when a counted channel is unknown (see `unknown_channels`), never a silent 0."""
        return self.span().total_j

    @property
    def bound_j(self) -> float:
        """|energy_j - truth| <= bound_j (docs/methodology.md, "Error bound"); NaN when not derivable."""
        return self.span().total_bound_j

    @property
    def validity(self) -> Validity:
        return self.span().validity

    @property
    def unknown_channels(self) -> list[str]:
        """Counted channels whose energy is unknown (failed, or no counter update inside or after the window)."""
        return list(self.span().unknown_channels)

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
