"""`ClusterMeter`: one meter actor per Ray node, answered on the driver's clock with the `Meter` surface.

Energy questions go to each node's own meter (its fused curve: one curve per channel, as on one host), at the span's
instants moved onto that node's clock; each edge's clock uncertainty adds the curve's energy across it to the bound.
Samples arrive in the background (`collect.Collector`) and are kept on the driver with a `node` column.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastmeter.cluster.collect import Collector, NodeLink, measure_offset, ms_quantiles
from fastmeter.cluster.connect import connect, resolve_nodes, spawn_node_meters
from fastmeter.cluster.judge import clock_reasons, lost_reason, merge_spans, node_reason
from fastmeter.cluster.rebuild import rebuilt_span
from fastmeter.cluster.schema import CLUSTER_SAMPLES_SCHEMA
from fastmeter.errors import ConfigError, FastmeterError, MeterStateError, SpanError
from fastmeter.meter import KEEP_SAMPLES_S
from fastmeter.sources import Channel
from fastmeter.span import SpanResult
from fastmeter.validity import Reason, Validity, combine
from fastmeter.window import Window

# Collection cadence: a batch request per node at most every 100 ms keeps the driver's view ~0.1 s behind the nodes
# at a cost of ~10 requests/s per node, whatever the sample rate.
COLLECT_INTERVAL_S = 0.1
COLLECT_MAX_ROWS = 65_536
# Offsets are measured again this often: CLOCK_MONOTONIC rates differ by up to ~100 ppm between hosts (NTP slews
# them), i.e. up to 1 ms of drift in 10 s, which the interpolation between estimates follows.
REESTIMATE_S = 10.0


class ClusterMeter:
    """A `Meter` over every node of a Ray cluster (or the nodes named): channels "node0/gpu0", ...

    address: Ray address to connect to when this process has not called ray.init() yet.
    nodes: Ray node ids (named node0, node1, ...) or {name: node id}; default every alive node.
    sources, period_us, source_options, keep_samples_s: each node's `Meter`.
    env_vars: {node name: {variable: value}} for that node's actor (e.g. FASTMETER_NVML_LIBRARY).
    interval_s, max_rows: collection cadence (seconds between batch requests per node, samples per batch).
    reestimate_s: seconds between clock offset estimates.
    """

    def __init__(
        self,
        sources: str | Iterable[str] = "auto",
        period_us: int = 1000,
        *,
        address: str | None = None,
        nodes: Sequence[str] | Mapping[str, str] | None = None,
        source_options: Mapping[str, Mapping[str, str]] | None = None,
        env_vars: Mapping[str, Mapping[str, str]] | None = None,
        keep_samples_s: float = KEEP_SAMPLES_S,
        interval_s: float = COLLECT_INTERVAL_S,
        max_rows: int = COLLECT_MAX_ROWS,
        reestimate_s: float = REESTIMATE_S,
    ) -> None:
        ray = self._ray = connect(address)
        if not (interval_s > 0 and reestimate_s > 0 and max_rows > 0):
            raise ConfigError("interval_s, reestimate_s and max_rows must be > 0")
        named = resolve_nodes(ray, nodes)
        unknown_env = set(env_vars or {}) - set(named)
        if unknown_env:
            raise ConfigError(f"env_vars names node {sorted(unknown_env)[0]!r}, not one of {', '.join(named)}")
        self.period_us = int(period_us)
        src = sources if isinstance(sources, str) else list(sources)
        actors = spawn_node_meters(ray, named, env_vars or {}, (src, self.period_us, source_options, keep_samples_s))
        infos = self._get_all({n: a.info.remote() for n, a in actors.items()}, "could not start its meter")
        # The first Arrow batch a worker returns costs ~0.5 s (serializer set-up): pay it before the record starts.
        self._get_all({n: a.batch.remote(0) for n, a in actors.items()}, "could not send samples")
        self.links: list[NodeLink] = []
        for name, info in infos.items():
            local = [Channel(**c) for c in info["channels"]]
            chans = [Channel(**{**c.__dict__, "name": f"{name}/{c.name}"}) for c in local]
            self.links.append(NodeLink(name, named[name], actors[name], chans, [c.name for c in local], info=info))
        self.channels: list[Channel] = [c for link in self.links for c in link.channels]
        self.sources = sorted({s for link in self.links for s in link.info["sources"]})
        # Per node, with sources named node/source: hardware "auto" left out there, and why (permission warnings).
        self.skipped_sources = [
            dataclasses.replace(i, name=link.prefixed(i.name)) for link in self.links for i in link.info["skipped"]
        ]
        # Where each node's numbers come from (synthetic, emulator overrides), judged on the node: known before start.
        self.source_reasons = Validity(
            tuple(node_reason(link, r) for link in self.links for r in link.info["source_reasons"])
        )
        self._names = [c.name for c in self.channels]
        self._reasons: list[Reason] = []  # node losses, in the order they happened
        self._loss_lock = threading.Lock()
        keep_ns = round(keep_samples_s * 1e9)
        self._collector = Collector(self.links, ray, interval_s, max_rows, reestimate_s, self._lost, keep_ns)
        self._state = "new"
        self._start_ns: int | None = None
        self._stop_ns: int | None = None
        self._anchor = (0, 0)

    # --- plumbing --------------------------------------------------------------------------------------------
    def _get_all(self, refs: Mapping[str, Any], doing: str) -> dict[str, Any]:
        out = {}
        for name, ref in refs.items():
            try:
                out[name] = self._ray.get(ref)
            except self._ray.exceptions.RayError as e:
                cause = getattr(e, "cause", None)
                text = str(cause) if isinstance(cause, FastmeterError) else str(e).splitlines()[0]
                raise FastmeterError(f"node {name} {doing}: {text}") from None
        return out

    def _lost(self, link: NodeLink, error: str) -> None:
        # The collector thread and a query may find the same dead actor at once: the node is lost once.
        with self._loss_lock:
            if not link.alive:
                return
            at = link.newest_ns if link.newest_ns is not None else (self._start_ns or time.monotonic_ns())
            link.lost_at_ns, link.loss_error = at, error
            self._reasons += [lost_reason(c.name, at, error) for c in link.channels if c.in_total]

    def _alive(self) -> list[NodeLink]:
        return [link for link in self.links if link.alive]

    def _each(self, call: str, *args: Any) -> dict[str, Any]:
        """Call a method on every alive node at once; a node found dead is marked lost and left out."""
        refs = {link.name: getattr(link.actor, call).remote(*args) for link in self._alive()}
        out = {}
        for link in self._alive():
            try:
                out[link.name] = self._ray.get(refs[link.name])
            except self._ray.exceptions.RayActorError as e:
                self._lost(link, str(e).splitlines()[0])
        return out

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> ClusterMeter:
        if self._state != "new":
            raise MeterStateError(f"a cluster meter starts once; this one is {self._state}")
        for link in self.links:
            measure_offset(link, self._ray)
        self._anchor = (time.monotonic_ns(), time.time_ns())
        starts = self._get_all({link.name: link.actor.start.remote() for link in self.links}, "could not start")
        # Every node records from the latest of their starts on: the cluster's record begins there.
        self._start_ns = max(link.track.to_driver(starts[link.name]) for link in self.links)
        self._state = "running"
        self._collector.start()
        return self

    def stop(self) -> None:
        if self._state != "running":
            self._state = "stopped" if self._state == "new" else self._state
            return
        stops = self._each("stop")
        self._collector.stop()
        for link in self._alive():
            self._collector.guard(link, lambda lk=link: measure_offset(lk, self._ray))
        self._collector.drain()
        ends = [link.track.to_driver(t) for link in self.links if (t := stops.get(link.name)) is not None]
        self._stop_ns = min(ends) if ends else time.monotonic_ns()
        self._state = "stopped"

    def close(self) -> None:
        """Stops (if running) and releases every node's hardware; the record stays readable."""
        self.stop()
        self._each("close")
        self._state = "closed"

    def __enter__(self) -> ClusterMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def state(self) -> str:
        return self._state

    @property
    def channel_names(self) -> list[str]:
        return list(self._names)

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        """Per node: Ray node id, hostname, sources, overrides, fingerprint, and whether (and when) it was lost."""
        return {
            link.name: {
                **{k: v for k, v in link.info.items() if k not in ("channels", "skipped", "source_reasons")},
                "lost_at_ns": link.lost_at_ns,
                "loss_error": link.loss_error,
            }
            for link in self.links
        }

    @property
    def clock_offsets(self) -> dict[str, list[dict[str, int]]]:
        """Per node, every offset estimate: node clock = driver clock + offset_ns, within +-bound_ns."""
        return {link.name: [e.to_dict() for e in link.track.estimates] for link in self.links}

    # --- clock and windows -----------------------------------------------------------------------------------
    @staticmethod
    def now_ns() -> int:
        return time.monotonic_ns()

    def window(self, name: str = "window") -> Window:
        if not self.running:
            raise MeterStateError("windows need a running meter; open them inside `with ClusterMeter(...)`")
        return Window(self, name)  # type: ignore[arg-type]

    # --- energy ----------------------------------------------------------------------------------------------
    def totals(self) -> dict[str, float]:
        """Joules per channel since each node's start, as of its latest poll; NaN for a lost node's channels."""
        self._check_started()
        got = self._each("totals")
        out = {}
        for link in self.links:
            values = got.get(link.name, {})
            for c, local in zip(link.channels, link.local_names):
                out[c.name] = float(values.get(local, math.nan))
        return out

    def energy_between(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        return self.span(t0_ns, t1_ns).energy_j

    def span(self, t0_ns: int, t1_ns: int) -> SpanResult:
        return self._span(t0_ns, t1_ns, clamp_to_stop=False)

    def _span(self, t0_ns: int, t1_ns: int, clamp_to_stop: bool) -> SpanResult:
        self._check_started()
        if t1_ns < t0_ns:
            raise SpanError(f"t1_ns={t1_ns} is before t0_ns={t0_ns}")
        refs, edges = {}, {}
        for link in self._alive():
            (o0, b0), (o1, b1) = link.track.at(t0_ns), link.track.at(t1_ns)
            edges[link.name] = (b0, b1)
            refs[link.name] = link.actor.span.remote(t0_ns + o0, t1_ns + o1, b0, b1, clamp_to_stop)
        parts: dict[str, dict[str, Any]] = {}
        for link in self._alive():
            try:
                parts[link.name] = self._ray.get(refs[link.name])
            except self._ray.exceptions.RayActorError as e:
                self._lost(link, str(e).splitlines()[0])
            except self._ray.exceptions.RayTaskError as e:
                raise SpanError(f"node {link.name}: {str(getattr(e, 'cause', e))}") from None
        rebuilt = {}
        for link in self.links:
            if not link.alive and link.lost_at_ns is not None and t1_ns <= link.lost_at_ns:
                arrived = self._arrived(link)
                bound_ns = max(link.track.at(t0_ns)[1], link.track.at(t1_ns)[1])
                for c, local in zip(link.channels, link.local_names):
                    unit_j = float(link.info["counter_unit_j"][local])
                    rebuilt[c.name] = rebuilt_span(
                        arrived, c.name, c.domain, c.has_counter, unit_j, t0_ns, t1_ns, bound_ns
                    )
        return merge_spans(self.links, parts, t0_ns, t1_ns, edges, rebuilt)

    def _arrived(self, link: NodeLink) -> pa.Table:
        """The samples from one node still in RAM."""
        with self._collector.lock:
            tables = [tb for _, tb in self._collector.tables]
        s = pa.concat_tables(tables) if tables else CLUSTER_SAMPLES_SCHEMA.empty_table()
        return s.filter(pc.equal(pc.cast(s.column("node"), pa.string()), link.name))

    def cumulative_at(self, t_ns: np.ndarray, with_bound: bool = False) -> dict[str, Any]:
        """Cumulative joules of every channel at each driver instant (NaN for a lost node's channels). with_bound:
        (values, bounds), each bound widened by the curve's rise across the instant's clock uncertainty."""
        self._check_started()
        t = np.ascontiguousarray(t_ns, dtype=np.int64)
        refs = {}
        for link in self._alive():
            ob = np.array([link.track.at(int(x)) for x in t], dtype=np.int64).reshape(-1, 2)
            refs[link.name] = link.actor.cumulative_at.remote(t + ob[:, 0], ob[:, 1], with_bound)
        out: dict[str, Any] = {}
        for link in self.links:
            got = None
            if link.alive:
                try:
                    got = self._ray.get(refs[link.name])
                except self._ray.exceptions.RayActorError as e:
                    self._lost(link, str(e).splitlines()[0])
            for c, local in zip(link.channels, link.local_names):
                nan = np.full(len(t), math.nan)
                out[c.name] = got[local] if got is not None else ((nan, nan.copy()) if with_bound else nan)
        return out

    @property
    def failed_at_ns(self) -> dict[str, int | None]:
        """Per channel: driver instant of its first failed reading, or of its node's loss; None while it works."""
        got = self._each("failed_at_ns")
        out: dict[str, int | None] = {}
        for link in self.links:
            for c, local in zip(link.channels, link.local_names):
                t = got.get(link.name, {}).get(local)
                out[c.name] = link.lost_at_ns if not link.alive else None if t is None else link.track.to_driver(t)
        return out

    # --- record ----------------------------------------------------------------------------------------------
    @property
    def samples_schema(self) -> pa.Schema:
        return CLUSTER_SAMPLES_SCHEMA

    def sample_count(self) -> int:
        """Samples that have arrived on the driver (all nodes, in arrival order)."""
        with self._collector.lock:
            return self._collector.rows

    def samples(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Arrived samples [start, stop) in arrival order, t_ns on the driver's clock, with the `node` column. Those
        older than keep_samples_s behind the newest arrival have left RAM: asking for them raises SpanError (stream
        long runs to a file with the recorder)."""
        with self._collector.lock:
            tables = list(self._collector.tables)
            rows, first_kept = self._collector.rows, self._collector.first_kept
        if start < first_kept:
            raise SpanError(
                f"samples from #{start} left RAM (kept from #{first_kept}); trace long runs to a file with the recorder"
            )
        stop = rows if stop is None else min(stop, rows)
        pieces = [
            tb.slice(max(start - first, 0), max(0, min(stop - first, len(tb)) - max(start - first, 0)))
            for first, tb in tables
            if first < stop and first + len(tb) > start
        ]
        return pa.concat_tables(pieces) if pieces else CLUSTER_SAMPLES_SCHEMA.empty_table()

    def stats(self) -> dict[str, Any]:
        """Per node (`nodes`): the node meter's own `Meter.stats()` plus actor_cpu_s, actor_cpu_per_s.
        `collection`, per node: rows, batches, latency_p50_ms / latency_max_ms (a batch's arrival on the driver minus
        its newest sample's poll: the transport) and staleness_p50_ms / staleness_max_ms (minus its oldest sample's:
        what a reader of the driver's copy waits at most), lost_at_ns.
        `clock`, per node: the latest offset_ns, bound_ns, rtt_ns, the count of estimates and all of them (`history`).
        Meter-style aggregates: rate_hz (sum), dropped and missed (sums), missed_share (worst), errors,
        update_period_s and failed_at_ns ({node/channel: ...})."""
        per_node = self._each("stats")
        s: dict[str, Any] = {"nodes": per_node, "collection": {}, "clock": {}}
        for link in self.links:
            s["collection"][link.name] = {
                "rows": link.rows,
                "batches": len(link.latency_ns),
                **ms_quantiles("latency", link.latency_ns),
                **ms_quantiles("staleness", link.staleness_ns),
                "lost_at_ns": link.lost_at_ns,
            }
            est = link.track.estimates
            s["clock"][link.name] = {
                **(est[-1].to_dict() if est else {}),
                "estimates": len(est),
                "history": [e.to_dict() for e in est],
            }
        nodes = list(per_node.values())
        s["rate_hz"] = math.fsum(float(n["rate_hz"]) for n in nodes)
        s["dropped"] = sum(int(n.get("dropped") or 0) for n in nodes)
        s["missed"] = sum(int(n.get("missed") or 0) for n in nodes)
        s["missed_share"] = max((float(n["missed_share"]) for n in nodes), default=math.nan)
        s["errors"] = {f"{k}/{c}": e for k, n in per_node.items() for c, e in n["errors"].items()}
        s["update_period_s"] = {f"{k}/{c}": p for k, n in per_node.items() for c, p in n["update_period_s"].items()}
        s["failed_at_ns"] = self.failed_at_ns
        return s

    def validity(self, span_ns: tuple[int, int] | None = None) -> Validity:
        """The whole record's verdict: every node's (source, channels, sampler), node losses, and each node's
        clock bound against `MAX_CLOCK_BOUND_NS`; with `span_ns`, also that span's (`span().validity`)."""
        parts = [Validity(tuple(self._reasons)), clock_reasons(self.links)]
        stop_ns = self._stop_ns or time.monotonic_ns()
        if span_ns is not None and min(span_ns[1], stop_ns) > span_ns[0]:
            parts.append(self.span(span_ns[0], min(span_ns[1], stop_ns)).validity)
        for name, reasons in self._each("reasons").items():
            link = next(lk for lk in self.links if lk.name == name)
            parts.append(Validity(tuple(node_reason(link, r) for r in reasons)))
        return combine(parts)

    @property
    def start_ns(self) -> int:
        return int(self._start_ns or 0)

    @property
    def stop_ns(self) -> int | None:
        return self._stop_ns

    @property
    def realtime_anchor(self) -> tuple[int, int]:
        return self._anchor

    def _check_started(self) -> None:
        if self._start_ns is None:
            raise MeterStateError("the cluster meter has not been started; use `with ClusterMeter(...)` or start()")

    def __repr__(self) -> str:
        return f"<ClusterMeter {self._state} nodes={[lk.name for lk in self.links]} channels={self._names}>"
