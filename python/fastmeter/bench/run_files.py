"""The run directory on disk: which files are ours, the one rule for an existing directory, and run.json."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import fastmeter
from fastmeter.cluster.trace import cluster_metadata, samples_schema
from fastmeter.errors import ConfigError
from fastmeter.io.stream import OutputError, replace_durably
from fastmeter.meter import Meter
from fastmeter.recorder import Recorder
from fastmeter.sources import permission_warnings

# What `bench` writes into a run directory (and `--force` replaces).
RUN_FILES = ("samples.arrow", "requests.arrow", "chunks.arrow", "metrics.arrow", "run.json", "sweep.json")
# ... and what a task run (`fastmeter bench task.toml`, fastmeter.tasks) writes besides.
RUN_FILES += ("batches.arrow", "items.arrow")


def prepare_run_dir(path: Path, *, force: bool = False) -> Path:
    """Create the run directory. A non-empty one is refused unless `force`; then only our own files in it are
    removed (anything else the user keeps there stays)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} is a file; choose another --output-dir")
    if path.exists() and any(path.iterdir()):
        if not force:
            raise ConfigError(
                f"run directory {path} already exists and is not empty; choose another --output-dir "
                "or pass --force to overwrite it"
            )
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create run directory {path}: {e.strerror}") from None
    return path


def write_run_json(run_dir: Path, run: dict[str, Any], name: str = "run.json") -> Path:
    """Strict JSON (NaN becomes null), written atomically and fsynced: a reader never sees half of it."""
    path = run_dir / name
    tmp = path.with_name(name + ".tmp")
    try:
        tmp.write_text(json.dumps(finite(run), indent=2, default=_json_default) + "\n")
        replace_durably(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"writing {path} failed: {e.strerror or e}; the other files of the run are kept") from None
    return path


def finite(o: Any) -> Any:
    """NaN and infinities become null: run.json stays strict JSON that any tool (and a browser) parses."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def open_run_recorder(
    meter: Meter,
    run_dir: Path,
    fingerprint: Any,
    calibration: dict[str, Any] | None,
    *,
    force: bool,
    notify: Callable[[str, str], None],
) -> Recorder:
    """Create the run directory, say the fingerprint's noise and the sources' permission warnings, and return the
    recorder of its samples.arrow with the metadata every run carries (bench points and task runs share this)."""
    from fastmeter.env import noise_warnings

    prepare_run_dir(run_dir, force=force)
    for w in noise_warnings(fingerprint):
        notify("warning", w.message)
    for text in permission_warnings(meter.skipped_sources):
        notify("warning", text)
    metadata = {
        "fingerprint": fingerprint,
        "sampler": {"period_us": meter.period_us, "sources": meter.sources},
        "channels": [asdict(c) for c in meter.channels],
        "fastmeter_version": fastmeter.__version__,
        "calibration": calibration,
        **cluster_metadata(meter),  # a ClusterMeter's nodes and their fingerprints
    }
    return Recorder(meter, run_dir / "samples.arrow", metadata, force=force, schema=samples_schema(meter))
