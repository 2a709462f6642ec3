"""An emulated polled stream of a GPU-like channel with analytic ground truth, to measure window-energy errors.

Conditions follow the NVML facts (docs/methodology.md, "Energy between two instants"): the energy counter holds the
true cumulative energy at its refresh instants (every ~100 ms), instant power is the average of the last 25 ms at
its own refresh instants, and we poll at 1 kHz with a little wake-up lateness. The load is a square wave.
Run `python -m fastmeter.reference.powersim` to print the error table quoted in the methodology.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from fastmeter.reference.integrate import READ_COUNTER, READ_POWER, accumulate, build_knots, energy_at_many

# The twin's array kernels under the names and signatures fastmeter._core exposes them with.
TWIN = SimpleNamespace(accumulate=accumulate, build_knots=build_knots, energy_at=energy_at_many)


@dataclass(frozen=True)
class SquareWave:
    """Power low_w, with high_w for the first duty fraction of every period_s."""

    low_w: float = 100.0
    high_w: float = 400.0
    period_s: float = 0.170
    duty: float = 0.30

    def energy_j(self, t_s: np.ndarray) -> np.ndarray:
        """Exact cumulative energy since t = 0 (t_s >= 0)."""
        t_s = np.asarray(t_s, dtype=np.float64)
        k = np.floor(t_s / self.period_s)
        r = t_s - k * self.period_s
        on_s = self.duty * self.period_s
        per_period_j = self.high_w * on_s + self.low_w * (self.period_s - on_s)
        partial_j = np.where(r < on_s, self.high_w * r, self.high_w * on_s + self.low_w * (r - on_s))
        return k * per_period_j + partial_j


@dataclass(frozen=True)
class Stream:
    t_ns: np.ndarray
    counter_raw: np.ndarray
    power_w: np.ndarray
    flags: np.ndarray
    unit_j: float


def _held(t_ns: np.ndarray, refresh_ns: int, phase_ns: int) -> np.ndarray:
    """The latest refresh instant at or before each poll (refresh_ns == 0: the poll itself)."""
    if refresh_ns == 0:
        return t_ns.copy()
    return (t_ns - phase_ns) // refresh_ns * refresh_ns + phase_ns


def simulate(
    load: SquareWave,
    duration_s: float = 20.0,
    poll_ns: int = 1_000_000,
    counter_refresh_ns: int = 100_000_000,
    counter_phase_ns: int = 0,
    power_refresh_ns: int | None = 100_000_000,
    power_phase_ns: int = 0,
    power_window_ns: int = 25_000_000,
    unit_j: float = 1e-3,
    seed: int = 0,
    start_ns: int = 1_000_000_000,
) -> Stream:
    """Polls of one channel. counter_refresh_ns None: no counter; power_refresh_ns None: no power reading."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * 1e9) // poll_ns
    late_ns = rng.uniform(20_000, 140_000, n).astype(np.int64)  # wake-up lateness seen on VMs (FACTS.md)
    t_ns = start_ns + np.arange(n, dtype=np.int64) * poll_ns + late_ns
    flags = np.zeros(n, dtype=np.uint32)
    counter_raw = np.zeros(n, dtype=np.uint64)
    if counter_refresh_ns is not None:
        r_ns = _held(t_ns, counter_refresh_ns, counter_phase_ns)
        counter_raw = np.floor(load.energy_j(r_ns * 1e-9) / unit_j).astype(np.uint64)
        flags |= READ_COUNTER
    power_w = np.full(n, math.nan)
    if power_refresh_ns is not None:
        s_ns = _held(t_ns, power_refresh_ns, power_phase_ns)
        w_s = power_window_ns * 1e-9
        power_w = (load.energy_j(s_ns * 1e-9) - load.energy_j(s_ns * 1e-9 - w_s)) / w_s
        flags |= READ_POWER
    return Stream(t_ns, counter_raw, power_w, flags, unit_j)


def edge_read_j(
    load: SquareWave,
    stream: Stream,
    counter_refresh_ns: int,
    counter_phase_ns: int,
    t0_ns: np.ndarray,
    t1_ns: np.ndarray,
) -> np.ndarray:
    """What reading the counter at the window's edges (Zeus) reports."""

    def read(t: np.ndarray) -> np.ndarray:
        r_ns = _held(t, counter_refresh_ns, counter_phase_ns)
        return np.floor(load.energy_j(r_ns * 1e-9) / stream.unit_j) * stream.unit_j

    return read(t1_ns) - read(t0_ns)


def curve_j(
    stream: Stream,
    t0_ns: np.ndarray,
    t1_ns: np.ndarray,
    use_power: bool,
    power_window_ns: int,
    has_counter: bool = True,
    kernels: object = None,
) -> np.ndarray:
    """Window energies from our curve. kernels: TWIN (default) or fastmeter._core, same array signatures."""
    k = TWIN if kernels is None else kernels
    power_w = stream.power_w if use_power else np.full(len(stream.t_ns), math.nan)
    energy_j, counter, changed = k.accumulate(
        stream.t_ns, stream.counter_raw, power_w, stream.flags, stream.unit_j, 0, has_counter
    )
    kt, ke, kp, _ = k.build_knots(stream.t_ns, energy_j, power_w, counter, changed, power_window_ns)
    return k.energy_at(kt, ke, kp, t1_ns) - k.energy_at(kt, ke, kp, t0_ns)


def random_windows(stream: Stream, length_ns: int, count: int, seed: int, margin_ns: int = 300_000_000):
    """count windows of length_ns at random offsets, away from the first and last margin_ns of the stream."""
    rng = np.random.default_rng(seed)
    lo = int(stream.t_ns[0]) + margin_ns
    hi = int(stream.t_ns[-1]) - margin_ns - length_ns
    t0 = rng.integers(lo, hi, count, dtype=np.int64)
    return t0, t0 + length_ns


def median_errors(
    load: SquareWave,
    length_ns: int,
    count: int = 2000,
    power_phase_ns: int = 0,
    counter_refresh_ns: int = 100_000_000,
    duration_s: float = 20.0,
    seed: int = 0,
    kernels: object = None,
) -> dict[str, float]:
    """Median |relative window error| of edge reads, linear-between-change-points, and the power-fused curve."""
    stream = simulate(
        load,
        duration_s=duration_s,
        counter_refresh_ns=counter_refresh_ns,
        power_phase_ns=power_phase_ns,
        seed=seed,
    )
    t0, t1 = random_windows(stream, length_ns, count, seed + 1)
    truth = load.energy_j(t1 * 1e-9) - load.energy_j(t0 * 1e-9)
    out = {
        "edge": edge_read_j(load, stream, counter_refresh_ns, 0, t0, t1),
        "linear": curve_j(stream, t0, t1, False, 25_000_000, kernels=kernels),
        "fused": curve_j(stream, t0, t1, True, 25_000_000, kernels=kernels),
    }
    return {k: float(np.median(np.abs(v - truth) / truth)) for k, v in out.items()}


def sanity_errors(load: SquareWave, window_ms: int, has_counter: bool, count: int = 2000) -> float:
    """Median |relative error| with a counter current at every poll, or with power alone (25 ms average)."""
    stream = simulate(
        load,
        duration_s=5.0,
        counter_refresh_ns=0 if has_counter else None,
        power_refresh_ns=None if has_counter else 0,
    )
    t0, t1 = random_windows(stream, window_ms * 1_000_000, count, seed=window_ms)
    truth = load.energy_j(t1 * 1e-9) - load.energy_j(t0 * 1e-9)
    est = curve_j(stream, t0, t1, not has_counter, 0 if has_counter else 25_000_000, has_counter=has_counter)
    return float(np.median(np.abs(est - truth) / truth))


def main() -> None:
    load = SquareWave()
    print("100 ms counter, 25 ms power every 100 ms: median |window error|")
    print("window  power phase  edge     linear   fused    fused/edge")
    for length_ms in (100, 300):
        for phase_ms in range(0, 100, 10):
            e = median_errors(load, length_ms * 1_000_000, power_phase_ns=phase_ms * 1_000_000)
            print(
                f"{length_ms:4d} ms  {phase_ms:5d} ms    {e['edge']:7.2%}  {e['linear']:7.2%}  "
                f"{e['fused']:7.2%}  {e['fused'] / e['edge']:.3f}"
            )
    print("window  counter current at each poll  power only (25 ms average every poll)")
    for length_ms in (1, 10, 100, 1000):
        print(
            f"{length_ms:4d} ms  {sanity_errors(load, length_ms, True):27.4%}  "
            f"{sanity_errors(load, length_ms, False):9.4%}"
        )


if __name__ == "__main__":
    main()
