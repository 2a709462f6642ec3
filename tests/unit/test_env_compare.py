"""compare_fingerprints: differences over controlled variables only, exact keys and values."""

from __future__ import annotations

import copy
from typing import Any

from fastmeter.env import Difference, compare_fingerprints
from fastmeter.env.compare import ABSENT, flatten


def _fp() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "controlled": {
            "gpu": {
                "driver_version": "550.54.15",
                "devices": [{"name": "NVIDIA H200", "power_limit_w": 700.0}],
            },
            "cpu": {"governors": {"policy0": "performance"}},
            "packages": {"torch": "2.5.1", "vllm": "not installed"},
        },
        "observed": {"gpu": {"devices": [{"temperature_c": 31}]}, "load_average": [0.1, 0.1, 0.1]},
    }


def test_flatten_nested_dicts_and_lists() -> None:
    assert flatten({"a": {"b": [1, {"c": 2}], "d": {}, "e": []}}) == {
        "a.b.0": 1,
        "a.b.1.c": 2,
        "a.d": {},
        "a.e": [],
    }


def test_identical_fingerprints_have_no_differences() -> None:
    assert compare_fingerprints(_fp(), _fp()) == []


def test_observed_changes_are_ignored() -> None:
    b = _fp()
    b["observed"]["gpu"]["devices"][0]["temperature_c"] = 80
    b["observed"]["load_average"] = [9.0, 9.0, 9.0]
    assert compare_fingerprints(_fp(), b) == []


def test_each_changed_controlled_variable_is_listed_sorted() -> None:
    b = _fp()
    b["controlled"]["gpu"]["driver_version"] = "560.28.03"
    b["controlled"]["gpu"]["devices"][0]["power_limit_w"] = 500.0
    b["controlled"]["packages"]["torch"] = "2.6.0"
    assert compare_fingerprints(_fp(), b) == [
        Difference("gpu.devices.0.power_limit_w", 700.0, 500.0),
        Difference("gpu.driver_version", "550.54.15", "560.28.03"),
        Difference("packages.torch", "2.5.1", "2.6.0"),
    ]


def test_added_and_removed_items_are_absent_on_one_side() -> None:
    b = copy.deepcopy(_fp())
    b["controlled"]["gpu"]["devices"].append({"name": "NVIDIA H200", "power_limit_w": 700.0})
    del b["controlled"]["cpu"]
    assert compare_fingerprints(_fp(), b) == [
        Difference("cpu.governors.policy0", "performance", ABSENT),
        Difference("gpu.devices.1.name", ABSENT, "NVIDIA H200"),
        Difference("gpu.devices.1.power_limit_w", ABSENT, 700.0),
    ]


def test_gpu_unavailable_versus_present_differs_at_every_gpu_key() -> None:
    b = _fp()
    b["controlled"]["gpu"] = "unavailable: NVML library not found"
    diffs = compare_fingerprints(_fp(), b)
    assert [d.key for d in diffs] == [
        "gpu",
        "gpu.devices.0.name",
        "gpu.devices.0.power_limit_w",
        "gpu.driver_version",
    ]
    assert diffs[0] == Difference("gpu", ABSENT, "unavailable: NVML library not found")
