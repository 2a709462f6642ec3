"""Read a run directory (`fastmeter bench -o DIR`) with every file checked: run.json's shape, samples.arrow as a
trace, requests.arrow's columns. `report` and `compare` both read runs through here, so a missing, corrupt or
hand-edited file is one FastmeterError naming the file and what to do, never a traceback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from fastmeter.errors import FastmeterError
from fastmeter.io.read import SAMPLER_STATS, Trace, read_trace
from fastmeter.io.shape import (
    BOOL,
    BOOLEAN,
    FLOAT,
    INT,
    INT64,
    INT_PAIR,
    NUMBER_MAP,
    OBJECT,
    check_columns,
    check_object,
    check_summary,
)

WHAT_TO_PASS = "pass a run directory or a sweep directory written by `fastmeter bench -o DIR`"
RERUN = "re-run the benchmark that wrote it"

# The run.json keys readers use (docs/format.md), with the shape each must have.
RUN_JSON = {"format_version": INT, "config": OBJECT, "fingerprint": OBJECT, "calibration": OBJECT,
            "energy_by_channel_j": NUMBER_MAP, "idle_baseline_w": NUMBER_MAP, "span_ns": INT_PAIR,
            "attribution": OBJECT, "sampler_stats": SAMPLER_STATS, "interrupted": BOOL}
REQUEST_COLUMNS = {"warmup": BOOLEAN, "send_ns": INT64, "end_ns": INT64, "completion_tokens": FLOAT,
                   "energy_j": FLOAT, "prefill_energy_j": FLOAT, "decode_energy_j": FLOAT}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise FastmeterError(f"{path} is missing; {WHAT_TO_PASS}") from None
    except OSError as e:
        raise FastmeterError(f"cannot read {path}: {e.strerror}; {WHAT_TO_PASS}") from None
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise FastmeterError(f"{path} is corrupt (not valid JSON: {e}); {RERUN}") from None
    if not isinstance(data, dict):
        raise FastmeterError(f"{path} is corrupt (expected a JSON object); {RERUN}")
    return data


def read_arrow(path: Path) -> pa.Table:
    if not path.is_file():
        raise FastmeterError(f"{path} is missing: the run directory is incomplete; {WHAT_TO_PASS}")
    try:
        with pa.OSFile(str(path)) as f:
            return pa.ipc.open_file(f).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise FastmeterError(f"{path} is corrupt (not an Arrow IPC file: {e}); {RERUN}") from None


def read_run_json(path: Path) -> dict[str, Any]:
    """run.json of the run directory `path`, its shape checked; `summary` and `config` are always objects."""
    where = path / "run.json"
    meta = read_json(where)
    if not isinstance(meta.get("summary"), dict) or "format_version" not in meta:
        raise FastmeterError(f"{where} is not a fastmeter run.json (no summary); {WHAT_TO_PASS}")
    check_object(meta, RUN_JSON, str(where))
    check_summary(meta["summary"], f"{where}: 'summary'")
    config = meta.get("config") or {}
    for table, value in config.items():
        if not isinstance(value, dict):
            raise FastmeterError(f"{where}: config table {table!r} must be an object, got {value!r}; {RERUN}")
    meta["config"] = config
    return meta


@dataclass
class RunFiles:
    meta: dict[str, Any]  # run.json
    trace: Trace  # samples.arrow
    requests: pa.Table  # requests.arrow


def read_run_dir(path: Path) -> RunFiles:
    """Every file of a run directory, checked."""
    meta = read_run_json(path)
    samples = path / "samples.arrow"
    if not samples.is_file():
        raise FastmeterError(f"{samples} is missing: the run directory is incomplete; {WHAT_TO_PASS}")
    trace = read_trace(samples)
    # A task run (fastmeter.tasks) has items where a server benchmark has requests, with the same columns.
    table = path / ("items.arrow" if isinstance(meta.get("task"), dict) else "requests.arrow")
    requests = check_columns(read_arrow(table), REQUEST_COLUMNS, str(table), RERUN)
    return RunFiles(meta, trace, requests)
