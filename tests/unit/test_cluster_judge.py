"""How node answers merge into one cluster span (fastmeter.cluster.judge.merge_spans), on hand-made node answers:
the clock term joins each bound, a lost node is NaN and invalid unless rebuilt, the total's bound check is the
cluster's, and a loose clock bound degrades the figure."""

from __future__ import annotations

import math

from fastmeter.cluster.clock import OffsetEstimate
from fastmeter.cluster.collect import NodeLink
from fastmeter.cluster.judge import merge_spans
from fastmeter.sources import Channel
from fastmeter.validity import MAX_CLOCK_BOUND_NS, MAX_RELATIVE_BOUND


def _link(name: str, offset_ns: int = 0, bound_ns: int = 1000) -> NodeLink:
    ch = Channel(f"{name}/gpu0", "gpu0 NVIDIA H200", "gpu", True, True, True)
    link = NodeLink(name, f"id-{name}", None, [ch], ["gpu0"])
    link.track.add(OffsetEstimate(0, offset_ns, bound_ns, 2 * bound_ns, 16))
    return link


def _answer(energy_j: float, bound_j: float, clock_j: float, **kw: object) -> dict[str, object]:
    return {
        "energy_j": {"gpu0": energy_j},
        "bound_j": {"gpu0": bound_j},
        "clock_j": {"gpu0": clock_j},
        "final": {"gpu0": True},
        "reasons": [],
        "truncated": False,
        "t0_ns": 0,
        "t1_ns": 0,
        **kw,
    }


def test_clock_energy_joins_each_bound_and_the_total() -> None:
    a, b = _link("a"), _link("b", offset_ns=5_000)
    r = merge_spans(
        [a, b], {"a": _answer(100.0, 1.0, 0.5), "b": _answer(50.0, 2.0, 0.25)}, 0, 10, {"a": (1, 1), "b": (1, 1)}, {}
    )
    assert r.energy_j == {"a/gpu0": 100.0, "b/gpu0": 50.0}
    assert r.bound_j == {"a/gpu0": 1.5, "b/gpu0": 2.25}
    assert r.total_j == 150.0 and r.total_bound_j == 3.75
    assert r.validity.ok


def test_a_lost_node_is_unknown_unless_rebuilt() -> None:
    a, b = _link("a"), _link("b")
    b.lost_at_ns, b.loss_error = 7, "ActorDiedError"
    r = merge_spans([a, b], {"a": _answer(100.0, 1.0, 0.0)}, 0, 10, {"a": (1, 1)}, {})
    assert math.isnan(r.energy_j["b/gpu0"]) and math.isnan(r.total_j) and r.unknown_channels == ("b/gpu0",)
    (lost,) = r.validity.reasons
    assert (lost.code, lost.channel, lost.t_ns, lost.verdict.value) == ("node_lost", "b/gpu0", 7, "invalid")
    r = merge_spans([a, b], {"a": _answer(100.0, 1.0, 0.0)}, 0, 5, {"a": (1, 1)}, {"b/gpu0": (40.0, 0.5)})
    assert r.total_j == 140.0 and r.total_bound_j == 1.5
    assert [x.code for x in r.validity.reasons] == ["node_lost_rebuilt"] and r.validity.verdict.value == "degraded"


def test_the_bound_check_is_the_clusters_and_a_loose_clock_degrades() -> None:
    a, b = _link("a"), _link("b")
    # Each node's own total would fail the bound check, and says so; the cluster judges its own total again.
    node_says = [{"code": "bound_above_limit", "verdict": "degraded", "message": "node total"}]
    wide = 0.6 * MAX_RELATIVE_BOUND * 100.0
    parts = {"a": _answer(100.0, wide, 0.0, reasons=node_says), "b": _answer(100.0, wide, 0.0, reasons=node_says)}
    r = merge_spans([a, b], parts, 0, 10, {"a": (1, 1), "b": (1, 1)}, {})
    assert r.validity.ok  # 12 J of 200 J: within 10%
    parts["b"] = _answer(100.0, 3 * wide, 0.0)
    r = merge_spans([a, b], parts, 0, 10, {"a": (1, 1), "b": (1, 1)}, {})
    assert [x.code for x in r.validity.reasons] == ["bound_above_limit"]
    r = merge_spans(
        [a, b],
        {"a": _answer(1.0, 0.0, 0.0), "b": _answer(1.0, 0.0, 0.0)},
        0,
        10,
        {"a": (1, 1), "b": (1, MAX_CLOCK_BOUND_NS + 1)},
        {},
    )
    assert [(x.code, x.verdict.value) for x in r.validity.reasons] == [("clock_bound_above_limit", "degraded")]


def test_a_truncated_node_ends_the_span_at_its_stop_on_the_drivers_clock() -> None:
    a, b = _link("a"), _link("b", offset_ns=1_000_000)
    parts = {"a": _answer(1.0, 0.0, 0.0), "b": _answer(1.0, 0.0, 0.0, truncated=True, t1_ns=1_000_800)}
    r = merge_spans([a, b], parts, 0, 10_000, {"a": (1, 1), "b": (1, 1)}, {})
    assert r.truncated and r.t1_ns == 800
