"""Bench config validation: the examples load, and each mistake names its key and the allowed values."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from fastmeter.errors import ConfigError
from fastmeter.load import load_config, validate_config
from fastmeter.load.config import MetricsConfig, config_to_dict
from fastmeter.load.runner import build_adapter, spec_from_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def base() -> dict[str, Any]:
    return {
        "server": {"kind": "openai", "base_url": "http://h:1", "model": "m"},
        "workload": {"kind": "random", "input_tokens": 8, "output_tokens": 4},
        "load": {"concurrency": 2, "num_requests": 10},
    }


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    spec = spec_from_config(cfg)
    assert spec.timeout_s is not None and spec.timeout_s > 0
    assert build_adapter(cfg).name == cfg.server.kind
    assert validate_config(config_to_dict(cfg), cfg.source) == cfg  # run.json's dump reads back to the same config


def test_defaults_filled() -> None:
    cfg = validate_config(base())
    assert cfg.load.rate == math.inf and cfg.load.burstiness == 1.0 and cfg.load.warmup_requests == 0
    assert cfg.metrics == MetricsConfig(enabled=True, path="/metrics", interval_s=1.0, prefixes=None)
    assert cfg.server.endpoint == "completions"


def edit(table: str, key: str, value: Any) -> dict[str, Any]:
    d = base()
    d.setdefault(table, {})
    if value is None:
        del d[table][key]
    else:
        d[table][key] = value
    return d


@pytest.mark.parametrize(
    "data,message",
    [
        (edit("load", "rat", 3), r"unknown key \[load\]\.rat; allowed keys: concurrency, rate, num_requests"),
        (edit("server", "kind", "vllm"), r"<dict>: \[server\]\.kind must be one of openai, tgi; got 'vllm'"),
        (edit("server", "endpoint", "x"), r"\[server\]\.endpoint must be one of completions, chat"),
        (
            edit("workload", "kind", "csv"),
            r"\[workload\]\.kind must be one of random, jsonl, mtbench, sharegpt",
        ),
        (edit("load", "rate", "fast"), r'\[load\]\.rate must be a finite number > 0 or "inf"; got \'fast\''),
        (edit("load", "rate", 0), r"\[load\]\.rate must be a finite number > 0"),
        (edit("load", "concurrency", 0), r"\[load\]\.concurrency must be an integer from 1 to 100000; got 0"),
        (edit("load", "concurrency", 2.5), r"\[load\]\.concurrency must be an integer"),
        (edit("load", "seed", True), r"\[load\]\.seed must be an integer"),
        (edit("server", "ignore_eos", "yes"), r"\[server\]\.ignore_eos must be true or false"),
        (edit("server", "base_url", None), r"\[server\]\.base_url is required"),
        (edit("server", "model", None), r"\[server\]\.model is required for kind = \"openai\""),
        (
            edit("workload", "output_tokens", None),
            r"\[workload\]\.output_tokens is required for kind = \"random\"",
        ),
        (edit("metrics", "prefixes", "vllm:"), r"\[metrics\]\.prefixes must be a non-empty list of non-empty strings"),
        (
            {**base(), "extra": {}},
            r"unknown table \[extra\]; allowed tables: server, workload, load, bench, metrics",
        ),
        ({"server": base()["server"], "load": base()["load"]}, r"missing table \[workload\]"),
        (
            {**base(), "workload": {"kind": "sharegpt"}},
            r"\[workload\]\.path is required for kind = \"sharegpt\"",
        ),
        ({**base(), "workload": {"kind": "mtbench", "path": "q"}}, r"\[workload\]\.max_tokens is required"),
    ],
)
def test_errors_name_key_and_allowed_values(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(data)


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[load\nrate = 1\n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "none.toml")


def test_combination_checked_by_load_spec() -> None:
    data = base()
    data["load"] = {"duration_s": 5}
    with pytest.raises(ConfigError, match="rate = inf with duration_s needs a concurrency cap"):
        spec_from_config(validate_config(data))


@pytest.mark.parametrize(
    "table,key,value,message",
    [
        ("server", "base_url", "not a url", r"\[server\]\.base_url must be an http:// or https:// URL with a host"),
        ("server", "base_url", "ftp://127.0.0.1/x", r"\[server\]\.base_url must be an http:// or https:// URL"),
        ("server", "base_url", "http://", r"\[server\]\.base_url must be an http:// or https:// URL"),
        ("server", "base_url", "http://h:99999", r"\[server\]\.base_url must be an http:// or https:// URL"),
        ("load", "duration_s", math.nan, r"\[load\]\.duration_s must be a finite number > 0 .*; got nan"),
        ("load", "duration_s", math.inf, r"\[load\]\.duration_s must be a finite number > 0"),
        ("bench", "idle_baseline_s", math.nan, r"\[bench\]\.idle_baseline_s must be a finite number >= 0"),
        ("load", "rate", math.nan, r"\[load\]\.rate must be a finite number > 0 or \"inf\"; got nan"),
        ("workload", "input_tokens", 100_000_000, r"\[workload\]\.input_tokens must be an integer from 1 to 1000000"),
        ("workload", "max_tokens", 1e23, r"\[workload\]\.max_tokens must be an integer from 1 to 1000000; got 1e\+23"),
        ("workload", "max_tokens", 10**30, r"\[workload\]\.max_tokens must be an integer from 1 to 1000000"),
        ("bench", "gpus", [-1], r"\[bench\]\.gpus \[0\] must be a GPU index \(an integer >= 0\) or a GPU UUID"),
        ("bench", "gpus", ["gpu zero"], r"\[bench\]\.gpus \[0\] must be a GPU index"),
        ("bench", "period_us", 10, r"\[bench\]\.period_us must be an integer from 50 to 10000000"),
        ("bench", "sources", ["nvml", "tpu"], r"\[bench\]\.sources \[1\] must be one of auto, "),
        ("load", "concurrency", 10**9, r"\[load\]\.concurrency must be an integer from 1 to 100000"),
    ],
)
def test_values_are_checked_at_the_edge(table: str, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(edit(table, key, value), "<dict>")


def test_gpus_are_indices_or_uuids() -> None:
    cfg = validate_config(edit("bench", "gpus", [0, "1", "GPU-8f3e2a10-aaaa-bbbb"]))
    assert cfg.bench.gpus == (0, 1, "GPU-8f3e2a10-aaaa-bbbb")
    with pytest.raises(ConfigError, match=r"\[bench\]\.gpus selects NVIDIA GPUs, but \[bench\]\.sources"):
        validate_config({**edit("bench", "gpus", [0]), "bench": {"gpus": [0], "sources": ["rapl"]}})


def test_a_flag_error_names_the_flag_not_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^--rate must be a finite number > 0 or \"inf\"; got nan$"):
        validate_config(edit("load", "rate", math.nan), "my.toml", {("load", "rate"): "--rate"})
    with pytest.raises(ConfigError, match=r"^my.toml: \[load\]\.burstiness must be"):
        validate_config(edit("load", "burstiness", -1), "my.toml", {("load", "rate"): "--rate"})


def test_the_typed_config_is_frozen() -> None:
    cfg = validate_config(base())
    with pytest.raises(AttributeError):
        cfg.load.rate = 3.0  # type: ignore[misc]


def test_non_utf8_toml_is_one_error_naming_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    data = '[server]\nkind = "openai"\nmodel = "caf\u00e9"\n'.encode("latin-1")
    p.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(ConfigError, match=rf"latin1.toml:3: not UTF-8 text \(byte 0xe9 at offset {offset}\)"):
        load_config(p)


def test_deeply_nested_toml_is_one_error(tmp_path: Path) -> None:
    p = tmp_path / "deep.toml"
    p.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="deep.toml"):
        load_config(p)
