"""Task configs: the examples validate and read back from run.json's dump; each mistake is one error naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastmeter.errors import ConfigError
from fastmeter.load.config import read_config_file
from fastmeter.tasks.base import EXTRAS, need_extra
from fastmeter.tasks.config import TASK_KINDS, task_config_to_dict, validate_task_config

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "tasks"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_task_configs_validate_and_read_back(path: Path) -> None:
    cfg = validate_task_config(read_config_file(path), str(path))
    assert validate_task_config(task_config_to_dict(cfg), str(path)) == cfg


def test_every_kind_has_an_example() -> None:
    kinds = {validate_task_config(read_config_file(p)).task.kind for p in EXAMPLES.glob("*.toml")}
    assert kinds == set(TASK_KINDS)


def _task(**keys: Any) -> dict[str, Any]:
    return {"task": {"kind": "text-generation", "model": "m", "data": "d.jsonl", **keys}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_task(batch_size=0), "[task].batch_size"),
        (_task(precision="fp8"), "[task].precision"),
        (_task(kind="object-detection"), "[task].weights is required"),
        (_task(annotations="a.json"), '[task].annotations does not apply to kind = "text-generation"'),
        (_task(colour="red"), "unknown key [task].colour"),
        ({**_task(), "server": {"kind": "openai"}}, "[server] does not apply to a task config"),
        ({**_task(), "bench": {"scorer": "m:f"}}, "[bench].scorer applies to server benchmarks only"),
        ({**_task(), "bench": {"sources": ["rapl"], "gpus": [0]}}, "does not include nvml"),
        ({"task": {"kind": "callable", "function": "m:f", "data": "x", "num_items": 3}}, "not both"),
    ],
)
def test_mistakes_name_their_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_task_config(data, "t.toml")
    assert message in str(e.value)


def test_a_missing_library_is_one_error_naming_what_to_install() -> None:
    with pytest.raises(ConfigError, match=r"needs fastmeter_no_such_module, .*; pip install fastmeter_no_such_module"):
        need_extra("fastmeter_no_such_module.sub", 'kind = "x"')
    for module, extra in EXTRAS.items():
        assert extra in ("vision", "hf"), module  # every heavy module is behind one of the documented extras
