"""What a trace file holds. Documented for users in docs/format.md: keep the two in step."""

from __future__ import annotations

FORMAT_VERSION = 1
# Schema-level metadata key whose value is a JSON object (see docs/format.md).
METADATA_KEY = b"fastmeter"
SUFFIXES = (".arrow", ".parquet")
