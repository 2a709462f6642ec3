"""What `fastmeter trace --ray` and bench's `[cluster]` need besides a `ClusterMeter`: the run's cluster metadata
(per-node identity and fingerprint), the judge of its record, and the recorder's samples schema."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastmeter.cluster.meter import ClusterMeter
from fastmeter.cluster.schema import CLUSTER_SAMPLES_SCHEMA
from fastmeter.validity import Validity


def cluster_metadata(m: ClusterMeter) -> dict[str, Any]:
    """`cluster`: {nodes: {name: node_id, hostname, pid, sources, counter_unit_j, overrides, fingerprint}}. Clock
    offsets and collection figures are written at the end with the sampler statistics (`ClusterMeter.stats`)."""
    return {"cluster": {"nodes": m.nodes}}


def cluster_trace_parts(
    address: str, sources: Any, period_us: int, source_options: Mapping[str, Mapping[str, str]]
) -> tuple[ClusterMeter, dict[str, Any], Callable[[Any], Validity], dict[str, Any]]:
    """(meter, metadata to add, judge, Recorder keyword arguments) for a trace of every node of the cluster."""
    m = ClusterMeter(sources, period_us, address=address, source_options=source_options)
    return m, cluster_metadata(m), lambda meter: meter.validity(), {"schema": CLUSTER_SAMPLES_SCHEMA}
