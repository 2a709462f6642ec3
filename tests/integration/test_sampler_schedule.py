"""The adaptive schedule end to end on the NVML emulator (100 ms counter and power refresh, 25 ms power window):
it locks onto the refresh, polls a fraction of what the fixed schedule polls, and its windows are as accurate as
dense polling's on the same emulator in the same run. RAPL-like continuous counters stay on the fixed schedule."""

from __future__ import annotations

import time

import numpy as np
import pytest

import fastmeter
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.emulators.powercap import FakePowercap

HANG_GUARD_S = 30.0  # only against a hang: the wait ends when the schedule locks


def wait_locked(m: fastmeter.Meter, channel: str) -> None:
    give_up = time.monotonic() + HANG_GUARD_S
    while m.stats()["schedule"][channel]["fields"]["counter"]["state"] != "locked":
        assert time.monotonic() < give_up, f"never locked: {m.stats()['schedule']}"
        time.sleep(0.05)


def test_adaptive_locks_polls_less_and_windows_match_dense_polling(fake_nvml: FakeNvml) -> None:
    (spec,) = fake_nvml.configure(
        [
            GpuSpec(
                waveform=Square(100.0, 400.0, 0.17, 0.3),
                counter_refresh_ms=100,
                power_refresh_ms=100,
                power_window_ms=25,
            )
        ]
    )
    dense = fastmeter.Meter("nvml", 1000, spin_us=0)
    adaptive = fastmeter.Meter("nvml", 1000, spin_us=0, schedule="adaptive")
    with dense, adaptive:
        wait_locked(adaptive, "gpu0")
        polls_at_lock = (dense.stats()["channels"]["gpu0"]["polls"], adaptive.stats()["channels"]["gpu0"]["polls"])
        time.sleep(2.0)
        polls_after = (dense.stats()["channels"]["gpu0"]["polls"], adaptive.stats()["channels"]["gpu0"]["polls"])
        t_lock_ns = adaptive.now_ns() - 2_000_000_000
    s = adaptive.stats()["schedule"]["gpu0"]
    assert s["period_s"] == pytest.approx(0.1, abs=0.002)
    dense_polls, adaptive_polls = (b - a for a, b in zip(polls_at_lock, polls_after))
    assert adaptive_polls < 0.25 * dense_polls, (adaptive_polls, dense_polls)
    rng = np.random.default_rng(11)
    lo, hi = t_lock_ns + 200_000_000, min(dense.stop_ns, adaptive.stop_ns) - 400_000_000
    for window_s in (0.1, 0.3):
        errs: dict[str, list[float]] = {"dense": [], "adaptive": []}
        for a in rng.uniform(lo, hi - window_s * 1e9, 60).astype(np.int64):
            b = int(a + window_s * 1e9)
            truth = spec.energy_j(int(a), b)
            for name, m in (("dense", dense), ("adaptive", adaptive)):
                errs[name].append(abs(m.energy_between(int(a), b)["gpu0"] - truth) / truth)
        # The schedule may lose nothing the dense polls knew: same median error within 10% (and 0.2% absolute).
        assert np.median(errs["adaptive"]) <= 1.1 * np.median(errs["dense"]) + 0.002, (window_s, errs)


def test_continuous_counter_stays_on_the_fixed_schedule(tmp_path, monkeypatch) -> None:
    fake = FakePowercap(tmp_path)
    fake.add_package(0, energy_uj=0)
    monkeypatch.setenv("FASTMETER_POWERCAP_ROOT", str(fake.root))
    with fastmeter.Meter("rapl", 1000, spin_us=0, schedule="adaptive") as m:
        energy_uj = 0
        give_up = time.monotonic() + HANG_GUARD_S
        while m.stats()["channels"]["cpu0-package"]["polls"] < 60:
            assert time.monotonic() < give_up
            energy_uj += 1000  # news at (about) every poll, like RAPL's ~1 ms counter
            fake.set_energy_uj("intel-rapl:0", energy_uj)
            time.sleep(0.001)
    state = m.stats()["schedule"]["cpu0-package"]["state"]
    assert state in ("learning", "fixed")
    assert state != "locked"
