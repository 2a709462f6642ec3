"""Accuracy, carbon and cost settings: config checks, the scorer hook's errors, and the arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastmeter.adapters.base import RequestRecord
from fastmeter.analysis.accuracy import accuracy_summary, load_scorer, run_scorer
from fastmeter.analysis.carbon import carbon_figures, cost_figures
from fastmeter.errors import ConfigError
from fastmeter.load.config import BenchSettings, validate_config

BASE = {"server": {"kind": "openai", "base_url": "http://x", "model": "m"},
        "workload": {"kind": "random", "input_tokens": 8, "output_tokens": 8}, "load": {"concurrency": 1}}


def bench(**keys: object) -> BenchSettings:
    return validate_config({**BASE, "bench": keys}).bench


def test_config_defaults_and_checks() -> None:
    b = bench()
    assert (b.pue, b.currency, b.scorer, b.grid_gco2_per_kwh, b.price_per_kwh) == (1.0, "USD", None, None, None)
    with pytest.raises(ConfigError, match="pue.*>= 1"):
        bench(pue=0.9)
    with pytest.raises(ConfigError, match="set either \\[bench\\].accuracy or \\[bench\\].scorer, not both"):
        bench(accuracy=0.5, scorer="m:f")


def test_carbon_and_cost_arithmetic() -> None:
    c = carbon_figures(3.6e6, 500.0, 1.2, requests=4, output_tokens=2000)
    assert c["gco2e"] == pytest.approx(600.0) and c["gco2e_per_request"] == pytest.approx(150.0)
    assert c["gco2e_per_1k_output_tokens"] == pytest.approx(300.0)
    k = cost_figures(7.2e6, 0.5, "EUR", 1.0, requests=0, output_tokens=0)
    assert k["cost"] == pytest.approx(1.0) and k["cost_per_request"] is None and k["currency"] == "EUR"


def records() -> list[RequestRecord]:
    return [RequestRecord("a", prompt="p1", text="yes"), RequestRecord("b", prompt="p2", text="no"),
            RequestRecord("c", prompt="p3", status="timeout")]


def test_scorer_sees_ok_pairs_only(tmp_path: Path) -> None:
    source = "def score(pairs):\n    return float(sum(t == 'yes' for _, t in pairs)) / len(pairs)\n"
    (tmp_path / "s.py").write_text(source)
    assert run_scorer(f"{tmp_path / 's.py'}:score", records()) == 0.5
    s = accuracy_summary(bench(scorer=f"{tmp_path / 's.py'}:score"), records(), 2.0)
    assert (s["accuracy"], s["accuracy_per_j"], s["accuracy_per_kwh"]) == (0.5, 0.25, 0.5 / (2.0 / 3.6e6))


@pytest.mark.parametrize(("source", "match"), [
    ("def score(pairs):\n    return -1.0\n", "finite number >= 0"),
    ("def score(pairs):\n    return 'good'\n", "finite number >= 0"),
    ("def other(pairs):\n    return 1.0\n", "no function 'score'"),
    ("raise ImportError('no model here')\n", "cannot import.*no model here"),
])
def test_bad_scorers_say_what_is_wrong(tmp_path: Path, source: str, match: str) -> None:
    path = tmp_path / f"bad_{abs(hash(source))}.py"
    path.write_text(source)
    with pytest.raises(ConfigError, match=match):
        run_scorer(f"{path}:score", records())


def test_failing_scorer_is_recorded_not_raised(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("def score(pairs):\n    raise RuntimeError('judge offline')\n")
    s = accuracy_summary(bench(scorer=f"{tmp_path / 'boom.py'}:score"), records(), 1.0)
    assert s == {"accuracy_error": f"{tmp_path / 'boom.py'}:score: RuntimeError: judge offline"}


def test_scorer_spec_shape() -> None:
    with pytest.raises(ConfigError, match='"module:function"'):
        load_scorer("just_a_module")
    with pytest.raises(ConfigError, match="no file"):
        load_scorer("/nonexistent/x.py:score")
