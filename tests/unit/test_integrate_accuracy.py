"""Window energies on emulated NVML-like streams against the analytic energy of the load.

The conditions are those of docs/methodology.md, "Energy between two instants": a 100 ms counter, a 25 ms trailing
average power refreshed every 100 ms, 1 kHz polls, a 170 ms / 30 % square wave between 100 W and 400 W.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastmeter import _core
from fastmeter.reference import powersim as sim
from fastmeter.reference.powersim import TWIN

KERNELS = pytest.mark.parametrize("k", [_core, TWIN], ids=["native", "twin"])
MS = 1_000_000
LOAD = sim.SquareWave(low_w=100.0, high_w=400.0, period_s=0.170, duty=0.30)


@KERNELS
@pytest.mark.parametrize("window_ms", [100, 300])
@pytest.mark.parametrize("power_phase_ms", [0, 37], ids=["power-with-counter", "power-37ms-later"])
def test_fused_curve_halves_the_edge_read_error(k, window_ms: int, power_phase_ms: int) -> None:
    err = sim.median_errors(LOAD, window_ms * MS, power_phase_ns=power_phase_ms * MS, kernels=k)
    assert err["fused"] <= 0.5 * err["edge"]
    assert err["linear"] < err["edge"]


def test_native_and_twin_measure_the_same_errors() -> None:
    assert sim.median_errors(LOAD, 100 * MS, kernels=_core) == pytest.approx(
        sim.median_errors(LOAD, 100 * MS, kernels=TWIN), rel=1e-9
    )


def window_errors(
    stream: sim.Stream, window_ms: int, use_power: bool, power_window_ns: int, has_counter: bool
) -> np.ndarray:
    t0, t1 = sim.random_windows(stream, window_ms * MS, 1000, seed=window_ms)
    truth = LOAD.energy_j(t1 * 1e-9) - LOAD.energy_j(t0 * 1e-9)
    est = sim.curve_j(stream, t0, t1, use_power, power_window_ns, has_counter=has_counter, kernels=_core)
    return np.abs(est - truth) / truth


@pytest.mark.parametrize("window_ms", [1, 10, 100, 1000])
def test_continuous_counter_windows_are_accurate(window_ms: int) -> None:
    stream = sim.simulate(LOAD, duration_s=4.0, counter_refresh_ns=0, power_refresh_ns=None)
    assert np.median(window_errors(stream, window_ms, False, 0, True)) < 0.002


@pytest.mark.parametrize("window_ms", [100, 1000])
def test_power_only_channel_windows_are_accurate(window_ms: int) -> None:
    stream = sim.simulate(LOAD, duration_s=4.0, counter_refresh_ns=None, power_refresh_ns=0)
    assert np.median(window_errors(stream, window_ms, True, 25 * MS, False)) < 0.002
