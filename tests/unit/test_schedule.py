"""Update-aware scheduling: the native UpdateTracker against its Python twin, and what it must achieve on made-up
fields whose true update instants are known (period, phase, jitter, dropped updates, phase jumps)."""

from __future__ import annotations

import bisect
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter import _core
from fastmeter.reference import schedule as ref

MS = 1_000_000
POLL_NS = 1 * MS
GUARD_NS = 2 * MS


def updates(
    period_ns: int,
    phase_ns: int,
    end_ns: int,
    *,
    jitter_ns: int = 0,
    seed: int = 0,
    jump_at_ns: int | None = None,
    jump_ns: int = 0,
    drop_every: int = 0,
) -> list[int]:
    """True update instants: phase + k * period (+ uniform jitter), shifted by jump_ns from jump_at_ns on; every
    drop_every-th update missing when drop_every > 0."""
    rng = random.Random(seed)
    out = []
    k = 0
    while True:
        t = phase_ns + k * period_ns + (rng.randint(-jitter_ns, jitter_ns) if jitter_ns else 0)
        if jump_at_ns is not None and t >= jump_at_ns:
            t += jump_ns
        if t > end_ns:
            return sorted(out)
        if not (drop_every and k % drop_every == drop_every - 1):
            out.append(t)
        k += 1


def native(u: list[int], end_ns: int, poll_ns: int = POLL_NS, guard_ns: int = GUARD_NS) -> ref.ScheduleRun:
    polls, states, period_ns, misses, relocks = _core.simulate_schedule(u, 0, end_ns, poll_ns, guard_ns)
    return ref.ScheduleRun(list(polls), list(states), period_ns, misses, relocks)


@settings(max_examples=40, deadline=None)
@given(
    period_ms=st.integers(5, 200),
    phase_us=st.integers(0, 200_000),
    jitter_us=st.sampled_from([0, 100, 400, 1500, 5000]),
    seed=st.integers(0, 2**16),
    jump_ms=st.sampled_from([0, 3, 37]),
    drop_every=st.sampled_from([0, 0, 5, 13]),
    poll_us=st.sampled_from([500, 1000, 2000]),
)
def test_native_tracker_equals_twin(period_ms, phase_us, jitter_us, seed, jump_ms, drop_every, poll_us):
    end_ns = 6_000 * MS
    u = updates(
        period_ms * MS,
        phase_us * 1000,
        end_ns,
        jitter_ns=jitter_us * 1000,
        seed=seed,
        jump_at_ns=3_000 * MS if jump_ms else None,
        jump_ns=jump_ms * MS,
        drop_every=drop_every,
    )
    poll_ns = poll_us * 1000
    guard_ns = max(2 * MS, 2 * poll_ns)
    assert native(u, end_ns, poll_ns, guard_ns) == ref.simulate(u, 0, end_ns, poll_ns, guard_ns)


def located_errors(run: ref.ScheduleRun, u: list[int], after_ns: int) -> list[int]:
    """|located - true| for every true update after after_ns: located at the middle of the polls around it."""
    errs = []
    for t in u:
        if t <= after_ns:
            continue
        k = bisect.bisect_left(run.poll_t_ns, t)
        if k == 0 or k == len(run.poll_t_ns):
            continue
        prev, seen = run.poll_t_ns[k - 1], run.poll_t_ns[k]
        errs.append(abs(prev + (seen - prev) // 2 - t))
    return errs


@settings(max_examples=30, deadline=None)
@given(
    period_ms=st.integers(20, 200),
    phase_us=st.integers(0, 200_000),
    jitter_us=st.integers(0, 300),
    seed=st.integers(0, 2**16),
)
def test_periodic_field_locks_locates_every_update_and_polls_little(period_ms, phase_us, jitter_us, seed):
    end_ns = 8_000 * MS
    period_ns = period_ms * MS
    u = updates(period_ns, phase_us * 1000, end_ns, jitter_ns=jitter_us * 1000, seed=seed)
    run = ref.simulate(u, 0, end_ns, POLL_NS, GUARD_NS)
    assert run.states[-1] == ref.LOCKED
    assert run.misses == 0
    # The period comes from 8 intervals between instants located to within half a poll (plus the jitter).
    assert abs(run.period_ns - period_ns) <= POLL_NS // 8 + 2 * jitter_us * 1000 // 8 + 1
    locked_at = run.poll_t_ns[run.states.index(ref.LOCKED)]
    errs = located_errors(run, u, locked_at)
    assert errs and max(errs) <= POLL_NS // 2
    # After the lock: a band of at most 2 * guard / poll + 2 polls per update, instead of period / poll.
    polls_after = sum(1 for t in run.poll_t_ns if t > locked_at)
    updates_after = sum(1 for t in u if t > locked_at)
    assert polls_after <= updates_after * (2 * GUARD_NS // POLL_NS + 3) + 3
    assert polls_after < (end_ns - locked_at) // POLL_NS


@pytest.mark.parametrize("jump_ms", [5, 37, -23])
def test_phase_jump_is_a_miss_then_a_relock(jump_ms):
    end_ns = 8_000 * MS
    u = updates(100 * MS, 13 * MS, end_ns, jump_at_ns=4_000 * MS, jump_ns=jump_ms * MS)
    run = native(u, end_ns)
    assert run.misses >= 1 and run.relocks >= 1
    assert run.states[-1] == ref.LOCKED
    relocked_at = max(t for t, s, s0 in zip(run.poll_t_ns[1:], run.states[1:], run.states) if s == ref.LOCKED != s0)
    assert relocked_at > 4_000 * MS
    assert max(located_errors(run, u, relocked_at)) <= POLL_NS // 2


@pytest.mark.parametrize("drop_every", [20, 3])
def test_updates_without_a_change_still_lock_and_keep_the_lock(drop_every):
    # A power reading can repeat its value across an update (a steady load): the intervals between changes are
    # then whole multiples of the period, and a quiet band is not a miss.
    end_ns = 6_000 * MS
    u = updates(100 * MS, 40 * MS, end_ns, drop_every=drop_every)
    run = native(u, end_ns)
    assert run.misses == 0 and run.states[-1] == ref.LOCKED
    assert abs(run.period_ns - 100 * MS) <= POLL_NS // 8


def test_continuous_counter_stays_fixed_and_silent_field_goes_quiet():
    end_ns = 3_000 * MS
    every_poll = list(range(POLL_NS // 2, end_ns, POLL_NS))  # RAPL-like: news at every poll
    run = native(every_poll, end_ns)
    assert run.states[-1] == ref.FIXED and len(run.poll_t_ns) == end_ns // POLL_NS + 1
    silent = native([], end_ns)
    assert silent.states[-1] == ref.QUIET and len(silent.poll_t_ns) == end_ns // POLL_NS + 1


def test_irregular_updates_never_lock():
    rng = random.Random(7)
    u = sorted(rng.randrange(0, 6_000 * MS) for _ in range(60))
    run = native(u, 6_000 * MS)
    assert ref.LOCKED not in run.states
    assert len(run.poll_t_ns) == 6_000 + 1


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(ValueError, match="poll_ns and guard_ns must be positive"):
        _core.simulate_schedule([], 0, 10, 0, 1)
