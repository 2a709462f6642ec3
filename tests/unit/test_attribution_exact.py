"""Hand-computed attribution cases, run through the native kernel and the pure-Python twin alike."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fastmeter.attribution import attribute, event_times, infer_update_period_s

S = 1_000_000_000  # ns per second: requests below are written in seconds
backends = pytest.mark.parametrize("backend", ["native", "reference"])


def constant_power(power_w: float = 100.0, seconds: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Curve of a constant draw, one point per second from 0 to `seconds`."""
    t = np.arange(seconds + 1, dtype=np.int64) * S
    return t, power_w * np.arange(seconds + 1, dtype=np.float64)


def run(starts, ends, first=None, *, curve=None, backend="native", **kw):
    t, e = constant_power() if curve is None else curve

    def sec(xs):
        return np.array([round(x * S) for x in xs], dtype=np.int64)

    if first is not None:
        first = [None if x is None else round(x * S) for x in first]
    for key in ("chunk_t_ns",):
        if key in kw:
            kw[key] = sec(kw[key])
    return attribute(t, e, sec(starts), sec(ends), first, backend=backend, **kw)


@backends
def test_one_request(backend):
    a = run([2], [5], backend=backend)
    assert a.energy_j == pytest.approx([300.0])
    assert a.attributed_s == pytest.approx([3.0])
    assert (a.idle_j, a.total_j, a.idle_s, a.span_s) == pytest.approx((700.0, 1000.0, 7.0, 10.0))


@backends
def test_two_overlapping_share_the_overlap(backend):
    a = run([1, 3], [5, 7], backend=backend)
    # [1,3] A alone 200 J, [3,5] shared 100 J each, [5,7] B alone 200 J
    assert a.energy_j == pytest.approx([300.0, 300.0])
    assert a.idle_j == pytest.approx(400.0)


@backends
def test_nested(backend):
    a = run([1, 3], [9, 5], backend=backend)
    assert a.energy_j == pytest.approx([200 + 100 + 400, 100.0])
    assert a.idle_j == pytest.approx(200.0)


@backends
def test_disjoint(backend):
    a = run([1, 4], [2, 6], backend=backend)
    assert a.energy_j == pytest.approx([100.0, 200.0])
    assert a.idle_j == pytest.approx(700.0)


@backends
def test_idle_gaps_with_varying_power(backend):
    t = np.arange(5, dtype=np.int64) * S
    e = np.array([0.0, 10.0, 10.0, 50.0, 60.0])  # 10 W, 0 W, 40 W, 10 W
    a = run([0.5, 2.5], [1.5, 3.5], curve=(t, e), backend=backend)
    # E(0.5)=5, E(1.5)=10; E(2.5)=30, E(3.5)=55
    assert a.energy_j == pytest.approx([5.0, 25.0])
    assert a.idle_j == pytest.approx(30.0)


@backends
def test_token_weighted_split(backend):
    # A: one token per second on (0,4]. B: 3 tokens at 3 s and 3 at 4 s -> 3 tokens/s on (2,4].
    a = run(
        [0, 2],
        [4, 4],
        method="token-weighted",
        backend=backend,
        chunk_offsets=[0, 4, 6],
        chunk_t_ns=[1, 2, 3, 4, 3, 4],
        chunk_tokens=[1, 1, 1, 1, 3, 3],
    )
    # (0,2] A alone: 200 J. (2,4]: A 1/4, B 3/4 of 200 J.
    assert a.energy_j == pytest.approx([250.0, 150.0])
    assert a.attributed_s == pytest.approx([2.5, 1.5])
    assert a.idle_j == pytest.approx(600.0)


@backends
def test_token_weighted_zero_token_intervals_fall_back_to_time_share(backend):
    # A: 2 tokens at 2 s (1 token/s on (0,2]), nothing after. B [1,4] never emits a token.
    a = run(
        [0, 1],
        [4, 4],
        method="token-weighted",
        backend=backend,
        chunk_offsets=[0, 1, 1],
        chunk_t_ns=[2],
        chunk_tokens=[2],
    )
    # (0,2]: only A carries tokens -> A 200 J. (2,4]: nobody does -> equal shares, 100 J each.
    assert a.energy_j == pytest.approx([300.0, 100.0])


@backends
def test_zero_token_chunks_do_not_cut_token_segments(backend):
    # A's role-only chunk at 1 s carries 0 tokens: its 4 tokens at 2 s still spread over (0,2].
    # B emits 2 tokens at 2 s, spread over (1,2]: 2 tokens/s there against A's 2 tokens/s.
    a = run(
        [0, 1],
        [2, 2],
        method="token-weighted",
        backend=backend,
        chunk_offsets=[0, 2, 3],
        chunk_t_ns=[1, 2, 2],
        chunk_tokens=[0, 4, 2],
    )
    assert a.energy_j == pytest.approx([100 + 50, 50.0])


@backends
def test_prefill_decode_split(backend):
    a = run([1, 1.5], [5, 3], [2, None], backend=backend)
    # A: (1,1.5] alone 50, (1.5,2] half 25 -> prefill 75; (2,3] half 50 + (3,5] 200 -> decode 250.
    assert a.prefill_energy_j == pytest.approx([75.0, 75.0])
    assert a.decode_energy_j == pytest.approx([250.0, 0.0])
    assert a.energy_j == pytest.approx([325.0, 75.0])


@backends
def test_request_without_first_token_is_all_prefill(backend):
    a = run([1], [3], [None], backend=backend)
    assert (a.prefill_energy_j[0], a.decode_energy_j[0]) == pytest.approx((200.0, 0.0))


@backends
def test_zero_length_request_gets_nothing(backend):
    a = run([2, 1], [2, 4], [2, 3], update_period_s=0.1, backend=backend)
    assert a.energy_j == pytest.approx([0.0, 300.0])
    assert a.uncertainty_j[0] == 0.0
    assert a.idle_j == pytest.approx(700.0)


@backends
def test_net_energy_subtracts_idle_power_times_time_share(backend):
    a = run([1, 3], [5, 7], idle_power_w={"gpu0": 30.0, "cpu0-package": 10.0}, backend=backend)
    assert a.attributed_s == pytest.approx([3.0, 3.0])
    assert a.net_energy_j == pytest.approx([300 - 40 * 3, 300 - 40 * 3])
    assert np.isnan(run([1], [2]).net_energy_j).all()


@backends
def test_uncertainty_counts_share_changes(backend):
    # Constant 100 W, 0.1 s period: u(c) = 100 W * 0.05 s = 5 J at every cut.
    a = run([1, 3], [5, 7], update_period_s=0.1, backend=backend)
    # A: 0 -> 1 at 1 s, 1 -> 1/2 at 3 s, 1/2 -> 0 at 5 s: 5 + 2.5 + 2.5 J; B mirrors it.
    assert a.uncertainty_j == pytest.approx([10.0, 10.0])
    assert run([1], [5], update_period_s=0.0, backend=backend).uncertainty_j[0] == 0.0


@backends
def test_uncertainty_sees_a_power_step_at_an_edge(backend):
    t = np.array([0, 5 * S, 6 * S], dtype=np.int64)
    e = np.array([0.0, 50.0, 150.0])  # 10 W, then 100 W from 5 s
    a = run([4.95], [5.5], curve=(t, e), update_period_s=0.1, backend=backend)
    # At 4.95 s: 10 W over the 0.1 s before, (5.5 J)/0.1 s = 55 W after -> 55 W * 0.05 s. At 5.5 s: 100 W * 0.05 s.
    assert a.uncertainty_j == pytest.approx([2.75 + 5.0])


@backends
def test_uncertainty_on_a_staircase_of_counter_polls_uses_true_power(backend):
    # Polled every 1 ms, a counter at 100 W that moves by 10 J every 100 ms: point-to-point slopes reach 10 kW.
    t = np.arange(10_001, dtype=np.int64) * 1_000_000
    e = np.floor(np.arange(10_001) / 100) * 10.0
    a = run([2.0505], [5.0505], curve=(t, e), update_period_s=0.1, backend=backend)
    # Each 0.1 s window holds one 10 J step: 100 W at both edges, 2 * 100 W * 0.05 s.
    assert a.uncertainty_j == pytest.approx([10.0])


@backends
def test_energy_outside_the_curve_is_not_known(backend):
    a = run([-1], [2], backend=backend)
    assert a.energy_j == pytest.approx([200.0])
    assert a.attributed_s == pytest.approx([2.0])
    assert a.requests_outside_span == 1


def test_curve_at_event_times_gives_the_same_split():
    t, e = constant_power()
    starts, ends = np.array([1, 3]) * S, np.array([5, 7]) * S
    at = event_times(starts, ends, [2 * S, None])
    a = attribute(at, np.interp(at, t, e), starts, ends, [2 * S, None])
    b = attribute(t, e, starts, ends, [2 * S, None])
    np.testing.assert_allclose(a.energy_j, b.energy_j)
    np.testing.assert_allclose(a.prefill_energy_j, b.prefill_energy_j)


def test_first_token_accepts_nan_masked_and_arrow_nulls():
    t, e = constant_power()
    starts, ends = np.array([1, 3]) * S, np.array([5, 7]) * S
    want = attribute(t, e, starts, ends, [2 * S, None]).prefill_energy_j
    for first in (
        np.array([2 * S, np.nan]),
        np.ma.masked_array([2 * S, 0], mask=[False, True]),
        pa.array([2 * S, None], type=pa.int64()),
    ):
        np.testing.assert_allclose(attribute(t, e, starts, ends, first).prefill_energy_j, want)


def test_infer_update_period_from_change_points():
    t = np.arange(1000, dtype=np.int64) * 1_000_000  # polled every 1 ms
    e = np.floor(np.arange(1000) / 100) * 7.0  # counter moves every 100 ms
    assert infer_update_period_s(t, e) == pytest.approx(0.1)
    assert infer_update_period_s(t, np.zeros(1000)) == 0.0


@backends
def test_a_given_bound_replaces_the_heuristic(backend):
    # E known to within 2 J at every point: at 1 s A's share goes 0 -> 1, at 3 s 1 -> 1/2, at 5 s 1/2 -> 0.
    a = run([1, 3], [5, 7], bound_j=np.full(11, 2.0), update_period_s=0.1, backend=backend)
    assert a.uncertainty_j == pytest.approx([2 + 1 + 1, 1 + 1 + 2])
    assert (a.uncertainty, a.heuristic_points) == ("bound", 0)


@backends
def test_an_unknown_bound_falls_back_to_the_heuristic_at_that_point_only(backend):
    bound = np.full(11, 2.0)
    bound[5] = np.nan  # the heuristic there: 100 W x 0.05 s = 5 J, half of it to each request
    a = run([1, 3], [5, 7], bound_j=bound, update_period_s=0.1, backend=backend)
    assert a.uncertainty_j == pytest.approx([2 + 1 + 2.5, 2.5 + 1 + 2])
    assert (a.uncertainty, a.heuristic_points) == ("heuristic", 1)


@backends
def test_without_bound_or_update_period_the_uncertainty_is_unknown(backend):
    bound = np.full(11, 2.0)
    bound[7] = np.nan  # only B's end lies there
    a = run([1, 3], [5, 7], bound_j=bound, update_period_s=float("nan"), backend=backend)
    assert a.uncertainty_j[0] == pytest.approx(4.0)
    assert np.isnan(a.uncertainty_j[1])


@backends
def test_between_points_the_bound_holds_for_any_non_decreasing_truth(backend):
    # A cut at 1.5 s, between points known to within 2 J (100 +- 2 and 200 +- 2): the true E(1.5 s) may be anywhere
    # in [98, 202], so the interpolated 150 J is off by at most 52 J.
    a = run([1.5], [5], bound_j=np.full(11, 2.0), backend=backend)
    assert a.uncertainty_j == pytest.approx([52.0 + 2.0])


@backends
def test_outside_the_curve_the_bound_of_its_end_holds(backend):
    # E is flat outside the curve, on the measured and the true curve alike: the end point's error is the error.
    bound = np.arange(11, dtype=np.float64)
    a = run([-1], [12], bound_j=bound, backend=backend)
    assert a.uncertainty_j == pytest.approx([0.0 + 10.0])
