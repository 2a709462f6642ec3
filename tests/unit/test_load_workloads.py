"""Workload builders read each dataset format and reject bad files with a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fastmeter.adapters import GenRequest
from fastmeter.errors import ConfigError
from fastmeter.load import workloads as w


def test_random_workload_lengths_and_determinism() -> None:
    reqs = w.random_workload(5, input_tokens=32, output_tokens=7, seed=3)
    assert reqs == w.random_workload(5, 32, 7, seed=3)
    assert reqs != w.random_workload(5, 32, 7, seed=4)
    assert all(len(r.prompt.split()) == 32 and r.max_tokens == 7 for r in reqs)
    assert [r.prompt.split()[0] for r in reqs] == ["0", "1", "2", "3", "4"]
    with pytest.raises(ConfigError):
        w.random_workload(1, 0, 5)


def test_jsonl_with_default_max_tokens(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text('{"prompt": "a b", "max_tokens": 3}\n\n{"prompt": "c"}\n')
    assert w.jsonl_workload(p, default_max_tokens=9) == [GenRequest("a b", 3), GenRequest("c", 9)]
    with pytest.raises(ConfigError, match=r"c.jsonl:3: 'max_tokens'"):
        w.jsonl_workload(p)
    p.write_text('{"text": "x"}\n')
    with pytest.raises(ConfigError, match="c.jsonl:1: needs a string field 'prompt'"):
        w.jsonl_workload(p, 4)
    p.write_text("{oops\n")
    with pytest.raises(ConfigError, match="c.jsonl:1: not valid JSON"):
        w.jsonl_workload(p, 4)


def test_mtbench_uses_first_turn(tmp_path: Path) -> None:
    p = tmp_path / "question.jsonl"
    rows = [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]},
        {"question_id": 82, "category": "math", "turns": ["2+2?"], "reference": ["4"]},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    assert w.mtbench_workload(p, 64) == [GenRequest("Write a poem.", 64), GenRequest("2+2?", 64)]


def test_sharegpt_first_human_turn_and_reply_length(tmp_path: Path) -> None:
    p = tmp_path / "sg.json"
    data = [
        {
            "id": "a",
            "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello there you"}],
        },
        {"id": "b", "conversations": [{"from": "human", "value": "alone"}]},
        {"id": "c", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
        {"id": "d", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A B"}]},
    ]
    p.write_text(json.dumps(data))
    assert w.sharegpt_workload(p) == [GenRequest("Hi?", 3), GenRequest("Q", 2)]
    assert w.sharegpt_workload(p, max_tokens=10) == [GenRequest("Hi?", 10), GenRequest("Q", 10)]
    p.write_text(json.dumps(data[1:3]))
    with pytest.raises(ConfigError, match="no usable prompts"):
        w.sharegpt_workload(p)
    p.write_text("{}")
    with pytest.raises(ConfigError, match="JSON list"):
        w.sharegpt_workload(p)


def test_template_take_and_missing_file(tmp_path: Path) -> None:
    reqs = [GenRequest("x", 1), GenRequest("y", 2)]
    assert w.apply_template(reqs, "<s>{prompt} {not a field}") == [
        GenRequest("<s>x {not a field}", 1),
        GenRequest("<s>y {not a field}", 2),
    ]
    with pytest.raises(ConfigError, match=r"\{prompt\}"):
        w.apply_template(reqs, "no placeholder")
    assert w.take(reqs, 5) == [reqs[0], reqs[1], reqs[0], reqs[1], reqs[0]]
    shuffled = w.take(list(w.random_workload(20, 2, 1)), 20, shuffle=True, seed=1)
    assert shuffled == w.take(list(w.random_workload(20, 2, 1)), 20, shuffle=True, seed=1)
    assert sorted(r.prompt for r in shuffled) == sorted(r.prompt for r in w.random_workload(20, 2, 1))
    with pytest.raises(ConfigError, match="cannot read workload file"):
        w.jsonl_workload(tmp_path / "missing.jsonl", 3)


@pytest.mark.parametrize(
    "reader,content,message",
    [
        (lambda p: w.jsonl_workload(p, 4), b"\x89PNG\r\n\x1a\n\x00\x00binary", r"x.data:1: not UTF-8 text"),
        (lambda p: w.jsonl_workload(p, 4), b'{"prompt": "a"}\n{"prompt": "\xff"}\n', r"x.data:2: not UTF-8 text"),
        (lambda p: w.mtbench_workload(p, 4), b"\xfe\xff\x00{", r"x.data:1: not UTF-8 text"),
        (lambda p: w.sharegpt_workload(p), b"\x00\x9f\x92\x96", r"x.data:1: not UTF-8 text"),
        (lambda p: w.sharegpt_workload(p), b'[{"conversations": [1, 2]}]',
         r"x.data: conversation \[0\] must be an object whose 'conversations' is a list of"),
        (lambda p: w.sharegpt_workload(p), b'[{"conversations": [{"from": "human", "value": 3}, {}]}]',
         r"x.data: conversation \[0\] must be"),
        (lambda p: w.sharegpt_workload(p), b"[" * 100_000, r"ShareGPT file .*x.data is not valid JSON"),
        (lambda p: w.mtbench_workload(p, 4), b'{"question_id": 1, "turns": [1, 2]}\n',
         r"x.data:1: an MT-Bench question needs 'turns', a non-empty list of strings"),
        (lambda p: w.mtbench_workload(p, 4), b'{"question_id": 1, "turns": "Write a poem."}\n',
         r"x.data:1: an MT-Bench question needs 'turns'"),
        (lambda p: w.mtbench_workload(p, 4), b'{"question_id": 1}\n{"turns": ["ok"]}\n', r"x.data:1: an MT-Bench"),
        (lambda p: w.mtbench_workload(p, 4), b"[" * 100_000, r"x.data:1: not valid JSON"),
        (lambda p: w.jsonl_workload(p), b'{"prompt": "a", "max_tokens": 1e23}\n', r"x.data:1: 'max_tokens' must be"),
        (lambda p: w.jsonl_workload(p), b'{"prompt": "a", "max_tokens": true}\n', r"x.data:1: 'max_tokens' must be"),
    ],
)
def test_bad_dataset_files_are_one_clear_error(tmp_path: Path, reader: Any, content: bytes, message: str) -> None:
    p = tmp_path / "x.data"
    p.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        reader(p)
