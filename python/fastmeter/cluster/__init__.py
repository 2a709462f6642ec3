"""Cluster-wide measurement on Ray: one meter actor per node, one driver-side `ClusterMeter` with the `Meter`
surface (channels "node/channel", every instant on the driver's CLOCK_MONOTONIC). Needs `fastmeter[ray]`; Ray is
imported only when a `ClusterMeter` is made."""

from fastmeter.cluster.clock import Exchange, OffsetEstimate, OffsetTrack, estimate_offset
from fastmeter.cluster.meter import ClusterMeter
from fastmeter.cluster.schema import CLUSTER_SAMPLES_SCHEMA

__all__ = ["CLUSTER_SAMPLES_SCHEMA", "ClusterMeter", "Exchange", "OffsetEstimate", "OffsetTrack", "estimate_offset"]
