"""Calibration results on disk: the JSON written by `fastmeter calibrate` and read back by trace and attribution.

Schema "fastmeter.calibration/1" (docs/calibration.md):
  {"schema", "created_unix_s", "fastmeter_version",
   "load": {"kind", "period_ms", "duty", "duration_s", "poll_us", "seed"},
   "gpus": [{"index", "name", "uuid", "n_polls", "poll_interval_us", "counter_vs_power_pct" (float | null),
             "fields": {"energy_counter" | "instant_power" | "average_power":
                        {"field", "field_id", "update_period_ms", "update_resolved", "averaging_window_ms",
                         "delay_ms", "low_w", "high_w", "rms_residual_w", "n_readings"}}}]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastmeter.errors import ConfigError

SCHEMA = "fastmeter.calibration/1"


def default_calibration_path() -> Path:
    """~/.cache/fastmeter/calibration.json (XDG_CACHE_HOME respected): `fastmeter trace` records it when present."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fastmeter" / "calibration.json"


def calibration_for(path: str | Path | None) -> dict[str, Any] | None:
    """The calibration to use: the file given, else the default one when this user can see it, else None."""
    if path is None:
        default = default_calibration_path()
        try:
            if not default.is_file():
                return None
        except OSError:  # e.g. HOME belongs to another user (sudo -u): no default calibration
            return None
        path = default
    return load_calibration(path)


def save_calibration(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Reads and checks a calibration file; raises ConfigError saying how to make a valid one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read calibration file {path}: {e}; run `fastmeter calibrate -o {path}`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("gpus"), list):
        raise ConfigError(f"{path} is not a {SCHEMA} file; rerun `fastmeter calibrate -o {path}`")
    return data


def field_delay_ns(calibration: dict[str, Any], uuid: str, field: str = "instant_power") -> int | None:
    """Measured delay of one field of one GPU (by UUID), for attribution to shift readings back; None if absent."""
    for gpu in calibration["gpus"]:
        if gpu.get("uuid") == uuid and field in gpu.get("fields", {}):
            return round(gpu["fields"][field]["delay_ms"] * 1e6)
    return None
