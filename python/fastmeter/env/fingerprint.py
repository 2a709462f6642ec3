"""Collect, save and load environment fingerprints.

A fingerprint is a JSON object:
    {"schema_version": 1, "created_unix_s": float,
     "controlled": {gpu, cpu, memory, os, container, python, packages, cuda_visible_devices, overrides,
                    server (bench only: name, version, endpoint),
                    server_launch (bench of a launched server: command, env, container, image_id)},
     "observed":   {gpu, cpu, hostname, memory, load_average, container_evidence, overrides}}
"controlled" holds what must match for two runs to be compared (see compare.py); "observed" holds the
state at collection time (temperatures, clocks now, processes, load). Every item is either a value or a
string "unavailable: <why>".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastmeter.assess import overrides_in_effect
from fastmeter.env.cpu import collect_cpu
from fastmeter.env.gpu import collect_gpu
from fastmeter.env.server import collect_server
from fastmeter.env.system import collect_system
from fastmeter.errors import ConfigError

SCHEMA_VERSION = 1

Fingerprint = dict[str, Any]


def collect_fingerprint(server: tuple[str, str] | None = None, launch: dict[str, Any] | None = None) -> Fingerprint:
    """Read the environment now. Never raises for missing hardware: such items say "unavailable: <why>".
    `server` = (base_url, kind) adds the server's identity and version (a controlled variable); `launch`, the launch
    spec of a server fastmeter started (fastmeter.launch.session.launch_identity: command or container, variables
    set, image ID), is controlled too."""
    gpu_controlled, gpu_observed = collect_gpu()
    cpu_controlled, cpu_observed = collect_cpu()
    system_controlled, system_observed = collect_system()
    overrides = overrides_in_effect()
    controlled = {"gpu": gpu_controlled, "cpu": cpu_controlled, **system_controlled,
                  # Which FASTMETER_* overrides are set decides what was measured (an emulator or hardware); their
                  # values (paths) are observed only, so runs with the same emulator in two places still compare.
                  "overrides": sorted(overrides)}
    if server is not None:
        controlled["server"] = collect_server(*server)
    if launch is not None:
        controlled["server_launch"] = launch
    return {
        "schema_version": SCHEMA_VERSION,
        "created_unix_s": time.time(),
        "controlled": controlled,
        "observed": {"gpu": gpu_observed, "cpu": cpu_observed, **system_observed, "overrides": overrides},
    }


def validate_fingerprint(obj: object, source: str = "fingerprint") -> Fingerprint:
    """Return `obj` if it has the fingerprint shape this version reads; raise ConfigError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{source} is not a fastmeter fingerprint: expected a JSON object")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{source} has schema_version {version!r}, this fastmeter reads {SCHEMA_VERSION}; "
            "save a new baseline with `fastmeter env --save FILE`"
        )
    for key in ("controlled", "observed"):
        if not isinstance(obj.get(key), dict):
            raise ConfigError(f"{source} is not a fastmeter fingerprint: missing object {key!r}")
    return obj


def save_fingerprint(fingerprint: Fingerprint, path: str | Path) -> None:
    try:
        Path(path).write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write fingerprint to {path}: {exc.strerror or exc}") from exc


def load_fingerprint(path: str | Path) -> Fingerprint:
    """Read a fingerprint saved by `save_fingerprint` (or `fastmeter env --save`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read fingerprint {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"fingerprint {path} is not UTF-8 text: {exc.reason}") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"fingerprint {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    return validate_fingerprint(obj, f"fingerprint {path}")
