"""Twin of csrc/fastmeter/sources/synthetic.cpp: the synthetic source's power and exact energy."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SyntheticWave:
    base_w: float = 100.0
    amp_w: float = 50.0
    period_s: float = 1.0
    duty: float = 0.3
    waveform: str = "sine"  # or "square"
    channels: int = 1

    def options(self, t0_ns: int) -> dict[str, str]:
        """Source options that make the native synthetic source draw this wave from t0_ns on."""
        return {
            "base_w": repr(self.base_w),
            "amp_w": repr(self.amp_w),
            "period_s": repr(self.period_s),
            "duty": repr(self.duty),
            "waveform": self.waveform,
            "channels": str(self.channels),
            "t0_ns": str(t0_ns),
        }

    def power_w(self, t_s: float, channel: int = 0) -> float:
        if self.waveform == "square":
            frac = t_s / self.period_s - math.floor(t_s / self.period_s)
            p = self.base_w + (self.amp_w if frac < self.duty else 0.0)
        else:
            p = self.base_w + self.amp_w * math.sin(2 * math.pi * t_s / self.period_s)
        return (channel + 1) * p

    def energy_j(self, t_s: float, channel: int = 0) -> float:
        """Exact integral of power from the wave's t0 to t_s seconds after it."""
        if self.waveform == "square":
            cycles = math.floor(t_s / self.period_s)
            rem = t_s - cycles * self.period_s
            e = self.base_w * t_s + self.amp_w * (
                cycles * self.duty * self.period_s + min(rem, self.duty * self.period_s)
            )
        else:
            w = 2 * math.pi / self.period_s
            e = self.base_w * t_s + self.amp_w / w * (1 - math.cos(w * t_s))
        return (channel + 1) * e

    def energy_between_j(self, t0_ns: int, a_ns: int, b_ns: int, channel: int = 0) -> float:
        """True joules between monotonic instants a_ns and b_ns for a wave started at t0_ns."""
        return self.energy_j((b_ns - t0_ns) * 1e-9, channel) - self.energy_j((a_ns - t0_ns) * 1e-9, channel)
