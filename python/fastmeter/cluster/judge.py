"""Verdicts of cluster figures: a span merged from its nodes' spans, node losses, and clock offset bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastmeter.cluster.collect import NodeLink
from fastmeter.span import SpanResult, total_bound_reasons
from fastmeter.validity import MAX_CLOCK_BOUND_NS, Reason, Validity, Verdict


def lost_reason(channel: str, lost_at_ns: int, error: str) -> Reason:
    return Reason(
        "node_lost",
        f"{channel}'s node was lost ({error}); nothing is known after its last sample that arrived, t_ns={lost_at_ns}",
        Verdict.INVALID,
        channel,
        lost_at_ns,
    )


def rebuilt_reason(channel: str, lost_at_ns: int) -> Reason:
    return Reason(
        "node_lost_rebuilt",
        f"{channel}'s node was lost at t_ns={lost_at_ns}; this span ends before that and is rebuilt from the "
        "samples that arrived",
        Verdict.DEGRADED,
        channel,
        lost_at_ns,
    )


def node_reason(link: NodeLink, d: Mapping[str, Any]) -> Reason:
    """A node's reason on the cluster: its channel named node/channel, its instant on the driver's clock."""
    r = Reason.from_dict(dict(d))
    channel = None if r.channel is None else link.prefixed(r.channel)
    t = None if r.t_ns is None else link.track.to_driver(int(r.t_ns))
    return Reason(r.code, f"node {link.name}: {r.message}", r.verdict, channel, t)


def _clock_reason(link: NodeLink, bound_ns: int) -> Reason:
    return Reason(
        "clock_bound_above_limit",
        f"node {link.name}'s clock offset is known only to +-{bound_ns / 1e6:.2f} ms "
        f"(limit {MAX_CLOCK_BOUND_NS / 1e6:.2f} ms): its span edges may be off by that much",
    )


def clock_reasons(links: Sequence[NodeLink]) -> Validity:
    """Each node whose latest offset estimate's bound exceeds MAX_CLOCK_BOUND_NS."""
    out = []
    for link in links:
        est = link.track.estimates
        if est and est[-1].bound_ns > MAX_CLOCK_BOUND_NS:
            out.append(_clock_reason(link, est[-1].bound_ns))
    return Validity(tuple(out))


def merge_spans(
    links: Sequence[NodeLink],
    parts: Mapping[str, Mapping[str, Any]],
    t0_ns: int,
    t1_ns: int,
    edges: Mapping[str, tuple[int, int]],
    rebuilt: Mapping[str, tuple[float, float]],
) -> SpanResult:
    """One SpanResult on the driver's clock from each alive node's `NodeMeter.span` answer. A channel's bound is its
    node's curve bound plus the curve's energy across both edges' clock uncertainty (`clock_j`); a lost node's
    channels are NaN with `node_lost`, except those `rebuilt` ({channel: (energy_j, bound_j)}) from the samples that
    arrived, for a span that ended before the loss. The total's `bound_above_limit` is judged again on the cluster's
    total."""
    energy: dict[str, float] = {}
    bound: dict[str, float] = {}
    final: dict[str, bool] = {}
    reasons: list[Reason] = []
    truncated, end_ns = False, t1_ns
    for link in links:
        p = parts.get(link.name)
        for c, local in zip(link.channels, link.local_names):
            if p is None:
                lost_at = int(link.lost_at_ns or t0_ns)
                energy[c.name], bound[c.name] = rebuilt.get(c.name, (math.nan, math.nan))
                final[c.name] = True
                if c.in_total:
                    known = c.name in rebuilt
                    reasons.append(
                        rebuilt_reason(c.name, lost_at) if known else lost_reason(c.name, lost_at, link.loss_error)
                    )
                    if known and math.isnan(bound[c.name]):
                        reasons.append(
                            Reason(
                                "bound_unavailable", f"{c.name} has no energy counter: no error bound", channel=c.name
                            )
                        )
                continue
            energy[c.name] = float(p["energy_j"][local])
            bound[c.name] = float(p["bound_j"][local]) + float(p["clock_j"][local])
            final[c.name] = bool(p["final"][local])
        if p is None:
            continue
        reasons += [node_reason(link, r) for r in p["reasons"] if r["code"] != "bound_above_limit"]
        if max(edges[link.name]) > MAX_CLOCK_BOUND_NS:
            reasons.append(_clock_reason(link, max(edges[link.name])))
        if p["truncated"]:
            truncated, end_ns = True, min(end_ns, link.track.to_driver(int(p["t1_ns"])))
    counted = [c.name for link in links for c in link.channels if c.in_total]
    unknown = tuple(n for n in counted if math.isnan(energy[n]))
    total_j = math.nan if unknown else math.fsum(energy[n] for n in counted)
    total_bound_j = math.nan if unknown else math.fsum(bound[n] for n in counted)
    reasons += total_bound_reasons(total_j, total_bound_j)
    return SpanResult(
        t0_ns=int(t0_ns),
        t1_ns=int(min(end_ns, t1_ns)),
        energy_j=energy,
        bound_j=bound,
        final=final,
        total_j=total_j,
        total_bound_j=total_bound_j,
        validity=Validity(tuple(dict.fromkeys(reasons))),
        unknown_channels=unknown,
        truncated=truncated,
    )
