"""What the sampler says about itself: starvation (missed deadlines, poll gaps) made visible with an emulated
driver call that hangs once for a known time, and the scheduling policy it got."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from fastmeter import Meter
from tests.emulators.nvml import FakeNvml, GpuSpec
from tests.emulators.unprivileged import NOBODY

MS = 1_000_000
HANG_GUARD_S = 20.0  # only against a hang: waits end on poll counts


def wait_polls(m: Meter, channel: str, n: int) -> None:
    give_up = time.monotonic() + HANG_GUARD_S
    while m.stats()["channels"][channel]["polls"] < n:
        assert time.monotonic() < give_up, "the sampler stopped polling"
        time.sleep(0.005)


@pytest.mark.parametrize("stall_ms", [30.0, 150.0])
def test_a_stalled_poll_shows_as_gap_and_missed_deadlines(fake_nvml: FakeNvml, stall_ms: float) -> None:
    period_ns = MS
    fake_nvml.configure([GpuSpec(stall_at_call=(60, stall_ms))])
    with Meter("nvml", period_ns // 1000, spin_us=0) as m:
        wait_polls(m, "gpu0", 80)
    s = m.stats()
    stall_ns = int(stall_ms * MS)
    assert s["poll_gap_max_ns"] >= stall_ns
    assert s["channels"]["gpu0"]["poll_gap_max_ns"] >= stall_ns
    # Every whole period the stalled poll overran is a deadline skipped, counted once.
    assert s["missed"] >= stall_ns // period_ns - 1
    # polls counts the start and stop polls too: the thread reached polls - 2 deadlines.
    assert s["missed_share"] == pytest.approx(s["missed"] / (s["polls"] - 2 + s["missed"]))
    assert 0 < s["missed_share"] < 1


def fifo_allowed() -> bool:
    """Whether this process may put a thread in SCHED_FIFO: try it on a throwaway thread."""
    out: list[bool] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO)))
            out.append(True)
        except PermissionError:
            out.append(False)

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    return out[0]


def test_sampler_takes_sched_fifo_when_allowed_and_can_opt_out() -> None:
    expected = "SCHED_FIFO" if fifo_allowed() else "SCHED_OTHER"
    m = Meter("synthetic", 1000)
    assert m.stats()["sched_policy"] == ""  # no thread yet
    with m:
        wait_polls(m, "synthetic0", 3)
    assert m.stats()["sched_policy"] == expected
    with Meter("synthetic", 1000, realtime=False) as m:
        wait_polls(m, "synthetic0", 3)
    assert m.stats()["sched_policy"] == "SCHED_OTHER"


_UNPRIVILEGED = f"""
import json, os, resource, time
from fastmeter import Meter
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid({NOBODY})
    os.setuid({NOBODY})
resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
with Meter("synthetic", 1000) as m:
    while m.stats()["polls"] < 5:
        time.sleep(0.005)
print(json.dumps(m.stats()["sched_policy"]))
"""


def test_without_the_privilege_the_sampler_stays_sched_other_quietly() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _UNPRIVILEGED], capture_output=True, text=True, check=True, cwd="/", timeout=60
    )
    assert json.loads(out.stdout) == "SCHED_OTHER"
    assert out.stderr == ""


def test_unknown_schedule_is_one_clear_error() -> None:
    from fastmeter.errors import ConfigError

    with pytest.raises(ConfigError, match="schedule='dense' is not one of fixed, adaptive"):
        Meter("synthetic", 1000, schedule="dense")
