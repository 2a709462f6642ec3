"""Prometheus text exposition parsing and metric selection."""

from __future__ import annotations

import math

import pytest

from fastmeter.adapters.prometheus import ExpositionError, family_of, parse_exposition, select

TEXT = r"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 3.0
vllm:num_requests_waiting{model_name="tiny"}	0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.3",model_name="tiny"} 2.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="tiny"} 5.0
vllm:e2e_request_latency_seconds_sum{model_name="tiny"} 1.25e+00
vllm:e2e_request_latency_seconds_count{model_name="tiny"} 5
tgi_queue_size 4 1700000000000
weird{path="C:\\dir",msg="say \"hi\"\nbye", trailing="x",} NaN
process_cpu_seconds_total 12.5
neg{} -Inf
"""


def test_parse_all_sample_forms() -> None:
    s = parse_exposition(TEXT)
    assert s[0] == ("vllm:num_requests_running", {"engine": "0", "model_name": "tiny"}, 3.0)
    assert s[1] == ("vllm:num_requests_waiting", {"model_name": "tiny"}, 0.0)
    assert s[3] == ("vllm:e2e_request_latency_seconds_bucket", {"le": "+Inf", "model_name": "tiny"}, 5.0)
    assert s[4][2] == 1.25
    assert s[6] == ("tgi_queue_size", {}, 4.0)
    name, labels, value = s[7]
    assert name == "weird" and math.isnan(value)
    assert labels == {"path": "C:\\dir", "msg": 'say "hi"\nbye', "trailing": "x"}
    assert s[9] == ("neg", {}, -math.inf)
    assert len(s) == 10


def test_select_by_prefix_and_by_family_name() -> None:
    s = parse_exposition(TEXT)
    rows = select(s, 42)
    assert [r.name for r in rows] == [n for n, _, _ in s[:7]]
    assert all(r.t_ns == 42 for r in rows)
    rows = select(
        s, 1, prefixes=(), names=frozenset({"vllm:e2e_request_latency_seconds", "process_cpu_seconds"})
    )
    assert [r.name for r in rows] == [
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_sum",
        "vllm:e2e_request_latency_seconds_count",
        "process_cpu_seconds_total",
    ]
    assert family_of("tgi_request_count") == "tgi_request" and family_of("x") == "x"


@pytest.mark.parametrize(
    "line",
    ['m{a="1"', "m{a=1} 2", "m", 'm{a="1"} x', "1abc 2", 'm{a="1" b="2"} 3', "m 1 2 3"],
)
def test_bad_lines_name_the_line(line: str) -> None:
    with pytest.raises(ExpositionError, match="line 2"):
        parse_exposition("ok 1\n" + line + "\n")
