"""Matrix configs are checked whole before anything starts (one error naming the key), the shipped examples
validate, and the run order covers every cell once per repeat, each round holding every entry once."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmeter.errors import ConfigError
from fastmeter.load.config import read_config_file
from fastmeter.matrix.config import validate_matrix
from fastmeter.matrix.plan import plan

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "matrix"  # not plain bench configs: a folder of their own


def _data(matrix: dict[str, Any] | None = None, servers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "server": {"kind": "openai", "base_url": "http://127.0.0.1:8000", "model": "m"},
        "workload": {"kind": "random", "input_tokens": 4, "output_tokens": 4},
        "matrix": {
            "concurrency": [1, 2],
            **(matrix or {}),
            "servers": servers if servers is not None else [{"name": "a"}, {"name": "b", "model": "n"}],
        },
    }


@pytest.mark.parametrize("name", ["servers.toml", "two-models.toml"])
def test_shipped_matrix_examples_validate(name: str) -> None:
    m = validate_matrix(read_config_file(CONFIGS / name), name)
    assert len({e.name for e in m.entries}) == len(m.entries) >= 2
    for e in m.entries:
        assert [c.load.concurrency for c in e.points.values()] == [8, 32, 128]
        assert all(
            c.server.container is not None and "PLACEHOLDER" in c.server.container.image for c in e.points.values()
        )


def test_cells_get_the_entry_keys_and_the_load_point() -> None:
    m = validate_matrix(_data(), "t")
    assert [(e.name, e.server, e.model) for e in m.entries] == [("a", "a", "m"), ("b", "b", "n")]
    assert m.points == ("concurrency-1", "concurrency-2")
    assert m.entries[1].points["concurrency-2"].load.concurrency == 2
    assert m.entries[1].points["concurrency-2"].server.model == "n"
    data = _data({"rate": [1.5, "inf"]})
    del data["matrix"]["concurrency"]
    rates = validate_matrix(data, "t")
    assert rates.points == ("rate-1.5", "rate-inf")
    assert rates.entries[0].points["rate-inf"].load.rate == float("inf")


@pytest.mark.parametrize(
    ("matrix", "servers", "message"),
    [
        ({"concurrency": None}, None, "needs load points"),
        ({"rate": [1.0]}, None, "set concurrency = [...] or rate = [...] (one)"),
        ({"repeats": 0}, None, "[matrix].repeats must be an integer from 1"),
        ({"colldown_max_s": 3}, None, "unknown key [matrix].colldown_max_s"),
        ({}, [], "at least one [[matrix.servers]]"),
        ({}, [{"name": "a"}, {"name": "a"}], "two [[matrix.servers]] entries are named 'a'"),
        ({}, [{"name": "a/b"}], "must be letters, digits"),
        ({}, [{"model": "x"}], "entry 1 needs name"),
        ({}, [{"name": "a"}, {"name": "b", "base_url": "ftp://x"}], "entry 2 (b), concurrency-1: [server].base_url"),
    ],
)
def test_bad_matrices_are_one_error_naming_the_key(
    matrix: dict[str, Any], servers: list[dict[str, Any]] | None, message: str
) -> None:
    data = _data(matrix, servers)
    data["matrix"] = {k: v for k, v in data["matrix"].items() if v is not None}
    with pytest.raises(ConfigError) as e:
        validate_matrix(data, "t")
    assert message in str(e.value)


def test_a_sweep_inside_a_matrix_is_refused() -> None:
    data = _data()
    data["bench"] = {"sweep_concurrency": [1, 2]}
    with pytest.raises(ConfigError, match="remove \\[bench\\].sweep_"):
        validate_matrix(data, "t")


@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32))
def test_plan_runs_every_cell_once_per_repeat_in_rounds(n_entries: int, n_points: int, repeats: int, seed: int) -> None:
    entries, points = [f"e{i}" for i in range(n_entries)], [f"p{i}" for i in range(n_points)]
    blocks = plan(entries, points, repeats, seed)
    cells = [(b.entry, p, b.repeat) for b in blocks for p in b.points]
    assert sorted(cells) == sorted(itertools.product(entries, points, range(1, repeats + 1)))
    for r in range(1, repeats + 1):  # each round (repeat) holds every entry once, in some order
        assert sorted(b.entry for b in blocks if b.repeat == r) == entries
    assert [b.repeat for b in blocks] == sorted(b.repeat for b in blocks)
    assert plan(entries, points, repeats, seed) == blocks  # the seed fixes the order


def test_plan_orders_differ_between_seeds() -> None:
    orders = {tuple((b.entry, b.points) for b in plan(["a", "b", "c"], ["1", "2", "3"], 3, s)) for s in range(20)}
    assert len(orders) > 1
