"""What `fastmeter trace --ray` and bench's `[cluster]` need besides a `ClusterMeter`: the run's cluster metadata
(per-node identity and fingerprint), the judge of its record, and the recorder's samples schema."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from fastmeter.assess import meter_validity
from fastmeter.cluster.meter import ClusterMeter
from fastmeter.cluster.schema import CLUSTER_SAMPLES_SCHEMA
from fastmeter.meter import SAMPLES_SCHEMA
from fastmeter.validity import Validity


def cluster_metadata(m: Any) -> dict[str, Any]:
    """For a ClusterMeter, `cluster`: {nodes: {name: node_id, hostname, pid, sources, counter_unit_j, overrides,
    fingerprint}}; nothing for a Meter. Clock offsets and collection figures are written at the end with the sampler
    statistics (`ClusterMeter.stats`)."""
    return {"cluster": {"nodes": m.nodes}} if isinstance(m, ClusterMeter) else {}


def samples_schema(m: Any) -> pa.Schema:
    """The samples table a recorder of `m` writes: a ClusterMeter's has the `node` column."""
    return CLUSTER_SAMPLES_SCHEMA if isinstance(m, ClusterMeter) else SAMPLES_SCHEMA


def validity_of(m: Any, span_ns: tuple[int, int] | None = None) -> Validity:
    """The record's validity (of `span_ns` when given): `ClusterMeter.validity` or `assess.meter_validity`."""
    return m.validity(span_ns) if isinstance(m, ClusterMeter) else meter_validity(m, span_ns)


def cluster_trace_parts(
    address: str, sources: Any, period_us: int, source_options: Mapping[str, Mapping[str, str]]
) -> tuple[ClusterMeter, dict[str, Any], Callable[[Any], Validity], dict[str, Any]]:
    """(meter, metadata to add, judge, Recorder keyword arguments) for a trace of every node of the cluster."""
    m = ClusterMeter(sources, period_us, address=address, source_options=source_options)
    return m, cluster_metadata(m), validity_of, {"schema": CLUSTER_SAMPLES_SCHEMA}
