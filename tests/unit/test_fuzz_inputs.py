"""Fuzz every reader of user input: the config loader (TOML text and flag-like values), the workload readers and the
file readers (traces, run directories). Each gives a valid result or one FastmeterError, never another exception
(which the CLI would print as a traceback)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmeter.cli.show import render_summary
from fastmeter.errors import FastmeterError
from fastmeter.io import read_trace
from fastmeter.io.schema import METADATA_KEY
from fastmeter.load import workloads
from fastmeter.load.config import BenchConfig, load_config, validate_config
from fastmeter.load.config_types import TABLES
from fastmeter.meter import SAMPLES_SCHEMA
from fastmeter.report import load_report, render_text
from fastmeter.report.html import render_html

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12),
                    st.sampled_from(["inf", "nan", "http://h:1", "ftp://x", "0", "GPU-1", 10**400, -(10**400)]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)


def _outcome(fn: Callable[[], Any]) -> Any:
    """fn's result, or None when it raised a FastmeterError (with a message); any other exception fails the test."""
    try:
        return fn()
    except FastmeterError as exc:
        assert str(exc).strip(), "an error must say what is wrong"
        return None


# Config tables built from the real keys, with values of every shape, so the checks (not just the key lookup) run.
def _table(name: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = [f.name for f in __import__("dataclasses").fields(TABLES[name])] + ["bogus"]
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=6)


configs = st.fixed_dictionaries({}, optional={name: st.one_of(_table(name), json_values) for name in TABLES})


@FUZZ
@given(configs)
def test_config_validation(data: dict[str, Any]) -> None:
    cfg = _outcome(lambda: validate_config(data, "fuzz.toml"))
    assert cfg is None or isinstance(cfg, BenchConfig)
    if cfg is not None:  # what is accepted is usable: finite where it must be
        assert math.isfinite(cfg.load.burstiness) and math.isfinite(cfg.bench.idle_baseline_s)


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_config_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.toml"
        p.write_bytes(content)
        _outcome(lambda: load_config(p))


def _jsonl(values: list[Any]) -> bytes:
    return "\n".join(json.dumps(v) for v in values).encode()


READERS: dict[str, Callable[[Path], Any]] = {
    "jsonl": lambda p: workloads.jsonl_workload(p, 8),
    "mtbench": lambda p: workloads.mtbench_workload(p, 8),
    "sharegpt": lambda p: workloads.sharegpt_workload(p),
}


@FUZZ
@given(st.sampled_from(sorted(READERS)),
       st.one_of(st.binary(max_size=200), st.lists(json_values, max_size=4).map(_jsonl),
                 json_values.map(lambda v: json.dumps(v).encode()),
                 st.lists(st.fixed_dictionaries({"conversations": json_values}), max_size=3).map(
                     lambda v: json.dumps(v).encode()),
                 st.lists(st.fixed_dictionaries({"turns": json_values}), max_size=3).map(_jsonl)))
def test_workload_readers(kind: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data"
        p.write_bytes(content)
        reqs = _outcome(lambda: READERS[kind](p))
        assert reqs is None or (reqs and all(isinstance(r.prompt, str) and r.max_tokens >= 1 for r in reqs))


def _write_trace(path: Path, meta: Any, table: pa.Table | None = None) -> None:
    channel = pa.array(["gpu0", "gpu0", "gpu0"]).dictionary_encode()
    table = table if table is not None else pa.Table.from_arrays(
        [pa.array([0, 10**9, 2 * 10**9], pa.int64()), channel, pa.array([0.0, 1.0, 3.0]),
         pa.array([1.0, None, 2.0])], schema=SAMPLES_SCHEMA)
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    table = table.replace_schema_metadata({METADATA_KEY: raw})
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)


trace_meta = st.fixed_dictionaries({"complete": st.just(True)}, optional={
    k: json_values for k in ("sampler", "sampler_stats", "command", "exit_code", "idle_baseline_w", "format_version")})


@FUZZ
@given(st.one_of(trace_meta, json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=30)))
def test_trace_reader_and_show(meta: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.arrow"
        _write_trace(p, meta)
        trace = _outcome(lambda: read_trace(p))
        if trace is not None:
            assert "duration" in render_summary(trace)


@FUZZ
@given(st.binary(max_size=300))
def test_trace_reader_on_arbitrary_bytes(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.arrow"
        p.write_bytes(content)
        _outcome(lambda: read_trace(p))


run_json = st.fixed_dictionaries({"format_version": st.just(1), "summary": st.dictionaries(
    st.sampled_from(["energy_j", "avg_power_w", "requests_ok", "ttft_ms_p99", "carbon", "accuracy"]), json_values)},
    optional={k: json_values for k in ("config", "fingerprint", "sampler_stats", "span_ns", "idle_baseline_w",
                                       "interrupted")})


@pytest.fixture(scope="module")
def requests_arrow(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    t = pa.table({"warmup": pa.array([False]), "send_ns": pa.array([10], pa.int64()),
                  "end_ns": pa.array([20], pa.int64()), "completion_tokens": pa.array([3], pa.int64()),
                  **{c: pa.array([1.0]) for c in ("energy_j", "prefill_energy_j", "decode_energy_j")}})
    p = tmp_path_factory.mktemp("req") / "requests.arrow"
    with pa.OSFile(str(p), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
        w.write_table(t)
    return p.read_bytes()


@FUZZ
@given(run=run_json)
def test_run_dir_reader_and_report(requests_arrow: bytes, run: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d) / "run"
        run_dir.mkdir()
        (run_dir / "run.json").write_text(json.dumps(run))
        (run_dir / "requests.arrow").write_bytes(requests_arrow)
        _write_trace(run_dir / "samples.arrow", {"complete": True})
        report = _outcome(lambda: load_report([run_dir]))
        if report is not None:
            assert "run" in render_text(report)
            assert "<html" in render_html(report, [])
