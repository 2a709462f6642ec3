"""Bench config validation: the examples load, and each mistake names its key and the allowed values."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from fastmeter.errors import ConfigError
from fastmeter.load import load_config, validate_config
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
    assert build_adapter(cfg).name == cfg.server["kind"]


def test_defaults_filled() -> None:
    cfg = validate_config(base())
    assert cfg.load["rate"] == math.inf and cfg.load["burstiness"] == 1.0 and cfg.load["warmup_requests"] == 0
    assert cfg.metrics == {"enabled": True, "path": "/metrics", "interval_s": 1.0, "prefixes": None}
    assert cfg.server["endpoint"] == "completions"


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
        (edit("load", "rat", 3), r"unknown key \[load\]\.rat; allowed keys: concurrency, rate, burstiness"),
        (edit("server", "kind", "vllm"), r"\[server\]\.kind must be one of openai, tgi; got 'vllm'"),
        (edit("server", "endpoint", "x"), r"\[server\]\.endpoint must be one of completions, chat"),
        (
            edit("workload", "kind", "csv"),
            r"\[workload\]\.kind must be one of random, jsonl, mtbench, sharegpt",
        ),
        (edit("load", "rate", "fast"), r'\[load\]\.rate must be a positive number or "inf", got \'fast\''),
        (edit("load", "rate", 0), r"\[load\]\.rate must be a positive number"),
        (edit("load", "concurrency", 0), r"\[load\]\.concurrency must be an integer >= 1, got 0"),
        (edit("load", "concurrency", 2.5), r"\[load\]\.concurrency must be an integer"),
        (edit("load", "seed", True), r"\[load\]\.seed must be an integer"),
        (edit("server", "ignore_eos", "yes"), r"\[server\]\.ignore_eos must be true or false"),
        (edit("server", "base_url", None), r"\[server\]\.base_url is required"),
        (edit("server", "model", None), r"\[server\]\.model is required for kind = \"openai\""),
        (
            edit("workload", "output_tokens", None),
            r"\[workload\]\.output_tokens is required for kind = \"random\"",
        ),
        (edit("metrics", "prefixes", "vllm:"), r"\[metrics\]\.prefixes must be a list of non-empty strings"),
        (
            {**base(), "extra": {}},
            r"unknown table \[extra\]; allowed tables: server, workload, load, bench, metrics",
        ),
        ({"server": base()["server"], "workload": base()["workload"]}, r"missing table \[load\]"),
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
