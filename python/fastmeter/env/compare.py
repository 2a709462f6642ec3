"""Compare the controlled variables of two fingerprints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastmeter.env.fingerprint import Fingerprint

# Marks a key that one fingerprint has and the other lacks (distinct from a JSON null value).
ABSENT = "absent"


@dataclass(frozen=True)
class Difference:
    """One controlled variable whose value differs: `key` is a dotted path such as
    "gpu.devices.0.power_limit_w"; `a` and `b` are the values in the first and second fingerprint."""

    key: str
    a: Any
    b: Any


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-path leaves of nested dicts and lists: {"gpu": {"devices": [{"name": x}]}} -> {"gpu.devices.0.name": x}.
    Empty containers are kept as leaves so that "no devices" differs from "one device"."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, child in items:
        out.update(flatten(child, f"{prefix}.{key}" if prefix else str(key)))
    return out


def compare_fingerprints(a: Fingerprint, b: Fingerprint) -> list[Difference]:
    """Controlled variables that differ between `a` and `b`, sorted by key. Observed values are ignored."""
    flat_a = flatten(a["controlled"])
    flat_b = flatten(b["controlled"])
    return [
        Difference(key, flat_a.get(key, ABSENT), flat_b.get(key, ABSENT))
        for key in sorted(flat_a.keys() | flat_b.keys())
        if flat_a.get(key, ABSENT) != flat_b.get(key, ABSENT)
    ]
