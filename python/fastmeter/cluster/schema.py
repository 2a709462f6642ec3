"""The cluster's samples table: the Meter's columns, instants on the driver's clock, channels named "node/channel",
and the node each sample came from."""

from __future__ import annotations

import pyarrow as pa

from fastmeter.meter import SAMPLES_SCHEMA

CLUSTER_SAMPLES_SCHEMA = SAMPLES_SCHEMA.append(pa.field("node", pa.dictionary(pa.int32(), pa.string()), nullable=False))
