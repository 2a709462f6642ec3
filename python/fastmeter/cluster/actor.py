"""The meter that runs on one node: a local `Meter` behind a Ray actor (`ClusterMeter` places one per node).

Everything it answers is on the node's own clock: CLOCK_MONOTONIC, or for tests and emulation the clock that
FASTMETER_CLOCK_OFFSET_NS / FASTMETER_CLOCK_DRIFT_PPM make of it (`emulated_clock.NodeClock`): samples, spans, failure
instants and clock reads all go through it, so a cluster on one machine shows the driver nodes whose clocks started
elsewhere and run at another rate.

The data stays here until the driver asks for the next batch (`batch`), at the driver's bounded rate.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from fastmeter.assess import meter_validity, overrides_in_effect, source_validity
from fastmeter.cluster.emulated_clock import NodeClock
from fastmeter.errors import FastmeterError
from fastmeter.meter import Meter
from fastmeter.validity import Validity


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _cpu_s() -> float:
    """CPU seconds (user + system) this process has used: the meter actor's whole cost on its node."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class NodeMeter:
    """One node's meter. Methods are called by the driver through Ray; instants in and out are node-clock ns."""

    def __init__(
        self,
        sources: str | list[str],
        period_us: int,
        source_options: Mapping[str, Mapping[str, str]] | None,
        keep_samples_s: float,
    ) -> None:
        # A meter that cannot open is reported by info(), the first call: an exception raised here would reach the
        # driver only as Ray's "actor died in its creation task" text, not as the FastmeterError that says why.
        self.init_error: FastmeterError | None = None
        try:
            self.clock = NodeClock.from_env()
            self.meter = Meter(sources, period_us, source_options=source_options, keep_samples_s=keep_samples_s)
        except FastmeterError as e:
            self.init_error = e
        self._sent = 0  # samples handed to the driver so far
        self._cpu0_s, self._wall0_ns = _cpu_s(), time.monotonic_ns()

    def info(self) -> dict[str, Any]:
        """Who this node is, what it measures, and its fingerprint (the conditions its figures were taken under)."""
        import ray

        from fastmeter.env import collect_fingerprint

        if self.init_error is not None:
            raise self.init_error
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "sources": self.meter.sources,
            "channels": [asdict(c) for c in self.meter.channels],
            "counter_unit_j": {c["name"]: c["counter_unit_j"] for c in self.meter._core.channels},
            "overrides": overrides_in_effect(),
            "skipped": self.meter.skipped_sources,
            "source_reasons": self._reasons(
                source_validity(self.meter.sources, self.meter.skipped_sources, channels=self.meter.channels)
            ),
            "fingerprint": collect_fingerprint(),
        }

    def clock_ns(self) -> int:
        return self.clock.node_ns(time.monotonic_ns())

    def start(self) -> int:
        self.meter.start()
        self._cpu0_s, self._wall0_ns = _cpu_s(), time.monotonic_ns()
        return self.clock.node_ns(self.meter.start_ns)

    def stop(self) -> int:
        self.meter.stop()
        return self.clock.node_ns(int(self.meter.stop_ns or 0))

    def batch(self, max_rows: int) -> pa.RecordBatch:
        """The next samples not yet sent (at most max_rows), t_ns on this node's clock."""
        n = min(self.meter.sample_count(), self._sent + max_rows)
        table = self.meter.samples(self._sent, n)
        self._sent = n
        t = pa.array(self.clock.node_array(table.column("t_ns").to_numpy()), pa.int64())
        batches = table.set_column(0, table.schema.field(0), t).combine_chunks().to_batches()
        return batches[0] if batches else _empty(table.schema)

    def span(self, t0_ns: int, t1_ns: int, bound0_ns: int, bound1_ns: int, clamp_to_stop: bool) -> dict[str, Any]:
        """The local meter's span over [t0_ns, t1_ns] (node clock), and per channel `clock_j`: the curve's energy
        over each edge's clock uncertainty, [t - bound, t + bound], which the driver adds to the error bound."""
        c = self.clock
        r = self.meter._span(c.mono_ns(t0_ns), c.mono_ns(t1_ns), clamp_to_stop=clamp_to_stop)
        return {
            "energy_j": r.energy_j,
            "bound_j": r.bound_j,
            "final": r.final,
            "reasons": self._reasons(r.validity),
            "truncated": r.truncated,
            "t0_ns": c.node_ns(r.t0_ns),
            "t1_ns": c.node_ns(r.t1_ns),
            "clock_j": self._edge_energy_j([(r.t0_ns, bound0_ns), (r.t1_ns, bound1_ns)]),
        }

    def _reasons(self, v: Validity) -> list[dict[str, Any]]:
        """Reasons as dicts, their instants on this node's clock."""
        out = [r.to_dict() for r in v.reasons]
        for d in out:
            if "t_ns" in d:
                d["t_ns"] = self.clock.node_ns(d["t_ns"])
        return out

    def _edge_energy_j(self, edges: list[tuple[int, int]]) -> dict[str, float]:
        self._wait_past(max(t + b for t, b in edges))
        t = self._clip(np.array([x for t, b in edges for x in (t - b, t + b)], dtype=np.int64))
        out = {}
        for name, e in self.meter.cumulative_at(t).items():
            out[name] = float(sum(e[2 * i + 1] - e[2 * i] for i in range(len(edges))))
        return out

    def failed_at_ns(self) -> dict[str, int | None]:
        return {n: None if t is None else self.clock.node_ns(t) for n, t in self.meter.failed_at_ns.items()}

    def totals(self) -> dict[str, float]:
        return self.meter.totals()

    def cumulative_at(self, t_ns: np.ndarray, bound_ns: np.ndarray, with_bound: bool) -> dict[str, Any]:
        """`Meter.cumulative_at` at node instants; with_bound: each bound widened by the curve's larger rise over
        the instant's clock uncertainty, [t - bound_ns, t], [t, t + bound_ns]."""
        t = self.clock.mono_array(np.asarray(t_ns, dtype=np.int64))
        if not with_bound:
            return self.meter.cumulative_at(t)
        b = np.asarray(bound_ns, dtype=np.int64)
        self._wait_past(int(np.max(t + b)) if len(t) else 0)
        curve = self.meter.cumulative_at(self._clip(np.concatenate([t, t - b, t + b])), with_bound=True)
        out = {}
        for name, (e, eb) in curve.items():  # type: ignore[misc]
            mid, lo, hi = e[: len(t)], e[len(t) : 2 * len(t)], e[2 * len(t) :]
            out[name] = (mid, eb[: len(t)] + np.maximum(mid - lo, hi - mid))
        return out

    def _wait_past(self, t_ns: int) -> None:
        """The curve answers only up to the newest poll: wait (a clock bound is ~ms) until t_ns has passed."""
        while self.meter.running and time.monotonic_ns() <= t_ns:
            time.sleep(max(t_ns - time.monotonic_ns(), 0) * 1e-9 + 1e-4)

    def _clip(self, t: np.ndarray) -> np.ndarray:
        m = self.meter
        end = m.stop_ns if m.stop_ns is not None else time.monotonic_ns()
        return np.clip(t, m.start_ns, end)

    def stats(self) -> dict[str, Any]:
        """The local meter's stats, failure instants on this node's clock, and the actor's CPU use since start."""
        s = self.meter.stats()
        s["failed_at_ns"] = self.failed_at_ns()
        wall_s = (time.monotonic_ns() - self._wall0_ns) * 1e-9
        s["actor_cpu_s"] = _cpu_s() - self._cpu0_s
        s["actor_cpu_per_s"] = s["actor_cpu_s"] / wall_s if wall_s > 0 else float("nan")
        s["samples_sent"] = self._sent
        return s

    def reasons(self) -> list[dict[str, Any]]:
        """The whole local record's validity reasons (source, channels, sampler)."""
        return self._reasons(meter_validity(self.meter))

    def close(self) -> None:
        self.meter.close()
