"""Load generation: arrival processes, workloads, bench configs and the asyncio runner."""

from __future__ import annotations

from fastmeter.load.config import BenchConfig, load_config, validate_config
from fastmeter.load.runner import LoadResult, LoadSpec, make_client, run, run_config, run_load

__all__ = [
    "BenchConfig",
    "LoadResult",
    "LoadSpec",
    "load_config",
    "make_client",
    "run",
    "run_config",
    "run_load",
    "validate_config",
]
