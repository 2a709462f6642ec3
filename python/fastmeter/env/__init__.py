"""Environment fingerprint: what was measured on, which noise sources were present, and whether two
fingerprints are comparable."""

from __future__ import annotations

from fastmeter.env.compare import Difference, compare_fingerprints
from fastmeter.env.fingerprint import (
    SCHEMA_VERSION,
    Fingerprint,
    collect_fingerprint,
    load_fingerprint,
    save_fingerprint,
    validate_fingerprint,
)
from fastmeter.env.noise import NoiseWarning, noise_warnings
from fastmeter.env.readers import is_unavailable

__all__ = [
    "SCHEMA_VERSION",
    "Difference",
    "Fingerprint",
    "NoiseWarning",
    "collect_fingerprint",
    "compare_fingerprints",
    "is_unavailable",
    "load_fingerprint",
    "noise_warnings",
    "save_fingerprint",
    "validate_fingerprint",
]
