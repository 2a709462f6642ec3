"""The driver's side of one node: its actor, clock track, and the samples that have arrived from it.

A collector thread pulls each node's next Arrow record batch through the object store at a bounded rate (one
request in flight per node, at most `max_rows` samples each, no more often than every `interval_s`), converts its
instants to the driver's clock and keeps it. Every `reestimate_s` it measures each node's clock offset again. A node
whose actor dies is marked lost at the newest instant that arrived from it: nothing after that is known.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastmeter.cluster.clock import Exchange, OffsetTrack, estimate_offset
from fastmeter.cluster.schema import CLUSTER_SAMPLES_SCHEMA
from fastmeter.sources import Channel

# Round trips per offset estimate: the minimum over 16 is close to the true floor of the RTT on a quiet link.
EXCHANGES_PER_ESTIMATE = 16
# Collection latencies kept per node for stats (a few minutes of batches at the default rate).
LATENCY_KEEP = 4096


@dataclass
class NodeLink:
    name: str
    node_id: str
    actor: Any
    channels: list[Channel]  # named "node/channel"
    local_names: list[str]  # the node's own channel names, same order
    track: OffsetTrack = field(default_factory=OffsetTrack)
    info: dict[str, Any] = field(default_factory=dict)
    rows: int = 0  # samples that arrived from this node
    newest_ns: int | None = None  # driver instant of the newest sample that arrived
    lost_at_ns: int | None = None  # set once when the actor is found dead
    loss_error: str = ""
    pending: Any = None  # the batch request in flight
    # Per batch (the latest LATENCY_KEEP): arrival instant minus its newest and its oldest sample's (driver clock):
    # the transport's latency, and how stale the batch's first sample was (up to an interval more).
    latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    staleness_ns: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))

    @property
    def alive(self) -> bool:
        return self.lost_at_ns is None

    def prefixed(self, local: str) -> str:
        return f"{self.name}/{local}"


def measure_offset(link: NodeLink, ray: Any, n: int = EXCHANGES_PER_ESTIMATE) -> None:
    """n sequential round trips to the node's clock; the minimum-RTT one becomes the next estimate."""
    exchanges = []
    for _ in range(n):
        d0 = time.monotonic_ns()
        node_ns = ray.get(link.actor.clock_ns.remote())
        exchanges.append(Exchange(d0, int(node_ns), time.monotonic_ns()))
    link.track.add(estimate_offset(exchanges))


def to_driver_clock(track: OffsetTrack, t_node_ns: np.ndarray) -> np.ndarray:
    """Node instants on the driver's clock, each with the offset interpolated at its own instant (int64 kept:
    only the small offsets go through floating point)."""
    est = track.estimates
    if len(est) == 1:
        return t_node_ns - est[0].offset_ns
    at = np.array([e.t_ns + e.offset_ns for e in est], dtype=np.int64)  # estimate instants on the node's clock
    off = np.array([e.offset_ns for e in est], dtype=np.float64)
    rel = (t_node_ns - at[0]).astype(np.float64)
    return t_node_ns - np.rint(np.interp(rel, (at - at[0]).astype(np.float64), off)).astype(np.int64)


def cluster_batch(link: NodeLink, batch: pa.RecordBatch, channels: pa.Array, nodes: pa.Array) -> pa.Table:
    """A node's batch on the driver's clock, with the `node` column. Every batch's dictionaries are the whole
    cluster's channel and node names (an Arrow IPC file holds one dictionary per column)."""
    t = to_driver_clock(link.track, batch.column("t_ns").to_numpy())
    local = batch.column("channel")
    where = {name: i for i, name in enumerate(channels.to_pylist())}
    remap = np.array([where[link.prefixed(str(n))] for n in local.dictionary.to_pylist()], dtype=np.int32)
    indices = remap[local.indices.to_numpy(zero_copy_only=False)] if len(remap) else np.zeros(0, np.int32)
    channel = pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), channels)
    node_index = nodes.to_pylist().index(link.name)
    node = pa.DictionaryArray.from_arrays(pa.array(np.full(len(batch), node_index, dtype=np.int32)), nodes)
    return pa.Table.from_arrays(
        [pa.array(t, pa.int64()), channel, batch.column("energy_j"), batch.column("power_w"), node],
        schema=CLUSTER_SAMPLES_SCHEMA,
    )


class Collector:
    """The thread that pulls batches and re-estimates offsets. `on_lost(link, error)` runs once per lost node."""

    def __init__(
        self,
        links: list[NodeLink],
        ray: Any,
        interval_s: float,
        max_rows: int,
        reestimate_s: float,
        on_lost: Callable[[NodeLink, str], None],
        keep_ns: int,
    ) -> None:
        self.links, self.ray = links, ray
        self.channels = pa.array([c.name for link in links for c in link.channels], pa.string())
        self.nodes = pa.array([link.name for link in links], pa.string())
        self.interval_s, self.max_rows, self.reestimate_s = interval_s, max_rows, reestimate_s
        self.on_lost = on_lost
        self.lock = threading.Lock()  # guards the arrived tables and the links' rows/newest_ns
        self.tables: list[tuple[int, pa.Table]] = []  # (sequence number of its first row, samples) in arrival order
        self.rows = 0
        # Batches whose every sample is older than this (behind the newest arrival) leave RAM, as a Meter's samples
        # do after keep_samples_s: a long run is streamed to a file by the recorder.
        self.keep_ns = keep_ns
        self.first_kept = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fastmeter-cluster-collect", daemon=True)
        self._next_estimate = time.monotonic() + reestimate_s

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.poll()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))
            if time.monotonic() >= self._next_estimate:
                self._next_estimate = time.monotonic() + self.reestimate_s
                for link in self.links:
                    self.guard(link, lambda lk=link: self._estimate(lk))

    def _estimate(self, link: NodeLink) -> None:
        measure_offset(link, self.ray)

    def guard(self, link: NodeLink, call: Callable[[], None]) -> None:
        """Run a call to a node; a dead actor marks the node lost instead of raising."""
        if not link.alive:
            return
        try:
            call()
        except self.ray.exceptions.RayActorError as e:
            self.on_lost(link, str(e).splitlines()[0])

    def poll(self) -> None:
        """Ask every node for its next batch (one request in flight per node) and take those that arrive within
        one interval."""
        for link in self.links:
            if link.alive and link.pending is None:
                self.guard(link, lambda lk=link: setattr(lk, "pending", lk.actor.batch.remote(self.max_rows)))
        waiting = {link.pending: link for link in self.links if link.alive and link.pending is not None}
        if not waiting:
            return
        ready, _ = self.ray.wait(list(waiting), num_returns=len(waiting), timeout=self.interval_s)
        for ref in ready:
            link = waiting[ref]
            link.pending = None
            self.guard(link, lambda lk=link, r=ref: self._take(lk, self.ray.get(r)))

    def drain(self) -> None:
        """Everything the nodes hold, now (after they stopped): batches until a node has nothing more."""
        for link in self.links:
            self.guard(link, lambda lk=link: self._drain_one(lk))

    def _drain_one(self, link: NodeLink) -> None:
        while True:
            if link.pending is None:
                link.pending = link.actor.batch.remote(self.max_rows)
            batch = self.ray.get(link.pending)
            link.pending = None
            self._take(link, batch)
            if len(batch) == 0:
                return

    def _take(self, link: NodeLink, batch: pa.RecordBatch) -> None:
        arrived_ns = time.monotonic_ns()
        if len(batch) == 0:
            return
        with self.lock:
            table = cluster_batch(link, batch, self.channels, self.nodes)
            newest = int(pc.max(table.column("t_ns")).as_py())
            oldest = int(pc.min(table.column("t_ns")).as_py())
            self.tables.append((self.rows, table))
            self.rows += len(table)
            while self.tables and int(pc.max(self.tables[0][1].column("t_ns")).as_py()) < newest - self.keep_ns:
                first, gone = self.tables.pop(0)
                self.first_kept = first + len(gone)
            link.rows += len(table)
            link.newest_ns = newest if link.newest_ns is None else max(link.newest_ns, newest)
            link.latency_ns.append(arrived_ns - newest)
            link.staleness_ns.append(arrived_ns - oldest)


def ms_quantiles(name: str, values_ns: Iterable[int]) -> dict[str, float]:
    """{name_p50_ms, name_max_ms} of ns values; NaN when there are none."""
    v = np.array(list(values_ns), dtype=np.float64) * 1e-6
    if not len(v):
        return {f"{name}_p50_ms": math.nan, f"{name}_max_ms": math.nan}
    return {f"{name}_p50_ms": float(np.median(v)), f"{name}_max_ms": float(np.max(v))}
