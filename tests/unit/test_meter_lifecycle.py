"""The Meter's lifecycle from Python: threads racing start/stop, fork while running, bad periods refused natively,
windows racing stop, entering a window twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastmeter
from fastmeter import _core
from fastmeter.errors import MeterStateError

HANG_S = 20  # a thread or child still alive after this has hung (the bug), not merely run slowly


def race(n: int, target) -> list[object]:
    """Run target(i) on n threads released together; returns what each returned or raised."""
    barrier = threading.Barrier(n)
    out: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = target(i)
        except Exception as e:  # noqa: BLE001 - the test inspects what each thread got
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_S)
    assert not any(t.is_alive() for t in threads), "a lifecycle call hung"
    return out


def test_threads_racing_stop_all_return_and_the_record_is_complete() -> None:
    for _ in range(5):
        m = fastmeter.Meter("synthetic", 200)
        m.start()
        time.sleep(0.02)
        results = race(8, lambda i: m.stop() if i % 2 else m.close())
        assert results == [None] * 8
        assert m.state == "closed" and not m.running
        assert m.stop_ns is not None and m.stop_ns >= m.start_ns
        # The final poll is in the record: the whole run can be asked for.
        assert m.energy_between(m.start_ns, m.stop_ns)["synthetic0"] > 0


def test_threads_racing_start_one_wins_the_rest_get_a_clear_error() -> None:
    m = fastmeter.Meter("synthetic", 1000)
    results = race(6, lambda i: m.start())
    errors = [r for r in results if isinstance(r, MeterStateError)]
    assert results.count(m) == 1 and len(errors) == 5
    assert all("already running" in str(e) for e in errors)
    m.stop()


def test_bad_period_is_refused_by_the_native_constructor() -> None:
    for bad in (0, -1000):
        with pytest.raises(_core.MeterError, match="period_ns"):
            _core.Meter([("synthetic", {})], bad)


def test_a_window_racing_stop_is_cut_at_the_stop_instant() -> None:
    for trial in range(20):
        m = fastmeter.Meter("synthetic", 500, source_options={"synthetic": {"amp_w": "0", "base_w": "100"}})
        m.start()
        w = m.window("race").__enter__()
        time.sleep(0.005)
        results = race(2, lambda i: m.stop() if i == 0 else (time.sleep(trial * 1e-4), w.__exit__(None))[1])
        assert results == [None, None]
        # Whichever came first, the window's energy is measured up to its end or the stop instant, never refused.
        e = w.energy_j
        assert w.t1_ns <= m.stop_ns
        assert w.truncated == (w.t1_ns == m.stop_ns)
        assert e == pytest.approx(100.0 * w.duration_s, rel=0.05, abs=0.002)


def test_entering_a_window_twice_is_a_clear_error() -> None:
    with fastmeter.Meter("synthetic") as m:
        w = m.window("once")
        with w:
            pass
        with pytest.raises(MeterStateError, match="already entered"):
            w.__enter__()


def test_cumulative_at_is_nan_outside_the_record() -> None:
    m = fastmeter.Meter("synthetic", 1000)
    with m:
        time.sleep(0.05)
    t = np.array([0, m.start_ns - 1, m.start_ns + 20_000_000, m.stop_ns, m.stop_ns + 1, m.stop_ns + 10**10])
    values = m.cumulative_at(t)["synthetic0"]
    assert np.isnan(values[[0, 1, 4, 5]]).all()
    assert np.isfinite(values[[2, 3]]).all() and values[3] > values[2]
    v, b = m.cumulative_at(t, with_bound=True)["synthetic0"]
    np.testing.assert_array_equal(np.isnan(v), np.isnan(values))
    assert np.isfinite(b[[2, 3]]).all() and (b[[2, 3]] > 0).all()


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import fastmeter
    m = fastmeter.Meter("synthetic", 1000)
    m.start()
    time.sleep(0.05)
    pid = os.fork()
    if pid == 0:
        # The child: its copy is stopped at the fork, still readable, and lets go without joining anything.
        ok = m.state == "stopped" and m.stop_ns is not None
        ok = ok and m.energy_between(m.start_ns, m.stop_ns)["synthetic0"] > 0
        m.stop()
        m.close()
        del m
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    time.sleep(0.02)
    still = m.running and m.sample_count() > 0
    m.stop()
    print("child", os.waitstatus_to_exitcode(status), "parent", still)
    """
)


def test_fork_while_running_leaves_an_inert_meter_in_the_child() -> None:
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["child", "0", "parent", "True"]
