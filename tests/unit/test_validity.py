"""The validity vocabulary and the pure checks: verdict order, combination, JSON round trip, exit codes, the
sampler and source checks on recorded statistics, and bunched-stream detection on request records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fastmeter.adapters.base import RequestRecord, is_bunched
from fastmeter.assess import sampler_validity, source_validity
from fastmeter.bench.summary import latencies_ms, requests_validity
from fastmeter.validity import (
    BUNCHED_MIN_CHUNKS,
    BUNCHED_WINDOW_NS,
    EXIT_CODES,
    MAX_MISSED_SHARE,
    SEVERITY,
    Reason,
    Validity,
    Verdict,
    combine,
    exit_code,
)

reasons = st.builds(
    Reason,
    code=st.sampled_from(["a", "b", "c", "synthetic_source", "synthetic_fallback"]),
    message=st.text(max_size=5),
    verdict=st.sampled_from(list(Verdict)),
    channel=st.none() | st.sampled_from(["gpu0", "cpu0-package"]),
    t_ns=st.none() | st.integers(0, 2**62),
)
validities = st.lists(reasons, max_size=5).map(lambda rs: Validity(tuple(rs)))


@given(st.lists(validities, max_size=4))
def test_a_combination_is_as_bad_as_its_worst_part_and_keeps_every_reason(parts: list[Validity]) -> None:
    c = combine(parts)
    worst = max((SEVERITY[p.verdict] for p in parts), default=0)
    assert SEVERITY[c.verdict] == worst
    assert {r for p in parts for r in p.reasons} == set(c.reasons)
    assert len(set(c.reasons)) == len(c.reasons)


@given(validities)
def test_json_round_trip(v: Validity) -> None:
    assert Validity.from_dict(v.to_dict()) == v
    assert v.to_dict()["verdict"] == v.verdict.value


def test_exit_codes_follow_the_verdict_and_allow_degraded_only_accepts_chosen_synthetic() -> None:
    chosen = Validity((Reason("emulated_source", "m", Verdict.SYNTHETIC),))
    fallback = Validity((Reason("synthetic_fallback", "m", Verdict.SYNTHETIC),))
    degraded = Validity((Reason("poll_gap", "m"),))
    invalid = Validity((Reason("channel_failed", "m", Verdict.INVALID), Reason("poll_gap", "m")))
    assert [exit_code(v) for v in (Validity(), degraded, invalid, chosen, fallback)] == [0, 3, 4, 5, 5]
    assert [exit_code(v, True) for v in (Validity(), degraded, invalid, chosen, fallback)] == [0, 0, 4, 0, 5]
    assert exit_code(combine([chosen, fallback]), True) == 5  # one unchosen synthetic reason is enough
    assert sorted(EXIT_CODES.values()) == [0, 3, 4, 5]


def test_missed_deadlines_above_the_share_degrade_and_at_it_do_not() -> None:
    def stats(missed_share: float, dropped: int = 0) -> dict[str, object]:
        return {"missed": 7, "missed_share": missed_share, "dropped": dropped, "sched_policy": "SCHED_OTHER"}

    assert sampler_validity(stats(MAX_MISSED_SHARE), 1000).ok
    v = sampler_validity(stats(MAX_MISSED_SHARE * 1.01), 1000)
    assert v.verdict is Verdict.DEGRADED and [r.code for r in v.reasons] == ["missed_deadlines"]
    assert "SCHED_OTHER" in v.reasons[0].message
    v = sampler_validity(stats(0.0, dropped=3), 1000)
    assert [r.code for r in v.reasons] == ["samples_dropped"] and "3 samples" in v.reasons[0].message


def test_sources_say_where_the_numbers_came_from() -> None:
    from fastmeter.sources import Channel, SourceInfo

    assert source_validity(["nvml", "rapl"], overrides={}).ok
    v = source_validity(["nvml"], overrides={"FASTMETER_NVML_LIBRARY": "/x.so", "FASTMETER_POWERCAP_ROOT": "/p"})
    assert [(r.code, r.verdict) for r in v.reasons] == [("emulated_source", Verdict.SYNTHETIC)]
    assert "FASTMETER_NVML_LIBRARY=/x.so" in v.reasons[0].message  # rapl is not in use: its override is not named
    synthetic0 = Channel("synthetic0", "synthetic", "synthetic", True, True, True)
    (r,) = source_validity(["synthetic"], overrides={}, channels=[synthetic0]).reasons
    assert (r.code, r.channel) == ("synthetic_source", "synthetic0")
    missing = [SourceInfo("nvml", False, "no driver\nmore text", "unavailable")]
    (r,) = source_validity(["synthetic"], missing, overrides={}).reasons
    assert r.code == "synthetic_fallback" and "nvml: no driver" in r.message and "more text" not in r.message


def record(chunk_gaps_ns: list[int], t0: int = 10**12) -> RequestRecord:
    """A finished request as the client leaves it: chunk times, and `bunched` judged from them."""
    times = [t0 + sum(chunk_gaps_ns[:i]) for i in range(len(chunk_gaps_ns) + 1)]
    rec = RequestRecord(
        "r",
        send_ns=t0 - 5_000_000,
        first_token_ns=times[0],
        end_ns=times[-1] + 1000,
        chunk_t_ns=times,
        chunk_tokens=[1] * len(times),
        status="ok",
    )
    rec.bunched = is_bunched(rec)
    return rec


@given(st.lists(st.integers(0, 3 * BUNCHED_WINDOW_NS), min_size=0, max_size=20))
def test_bunched_means_enough_chunks_all_within_the_window(gaps: list[int]) -> None:
    r = record(gaps)
    assert is_bunched(r) == (len(gaps) + 1 >= BUNCHED_MIN_CHUNKS and sum(gaps) <= BUNCHED_WINDOW_NS)


def test_itl_and_the_run_verdict_leave_bunched_streams_out() -> None:
    streamed = [record([6_000_000] * 7) for _ in range(3)]
    bunched = [record([10_000] * 7) for _ in range(2)]
    itl = latencies_ms([*streamed, *bunched])["itl"]
    assert len(itl) == 3 * 7 and min(itl) == 6.0
    v = requests_validity([*streamed, *bunched], interrupted=False)
    assert [r.code for r in v.reasons] == ["bunched_streams"] and "2 of 5" in v.reasons[0].message
    assert requests_validity(streamed, interrupted=False).ok
    assert requests_validity([], interrupted=True).verdict is Verdict.INVALID
