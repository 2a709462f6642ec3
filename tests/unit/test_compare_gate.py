"""The regression gate on runs with exact, known figures: threshold, noise, metric direction, grouping."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastmeter.analysis.compare import Run, RunMismatchError, compare_runs
from fastmeter.cli.compare import parse_percent
from fastmeter.errors import ConfigError
from fastmeter.validity import Validity

CONFIG = {"server": {"kind": "openai", "base_url": "http://x", "model": "m"},
          "workload": {"kind": "random", "input_tokens": 8, "output_tokens": 8}, "load": {"concurrency": 2}}
FINGERPRINT = {"controlled": {"gpu": {"driver_version": "550"}}}


def runs(prefix: str, values: list[float], key: str = "energy_per_output_token_j", validity: Validity | None = None,
         **config: object) -> list[Run]:
    """Runs with exact figures; valid measurements unless `validity` says otherwise."""
    cfg = {**CONFIG, **config}
    v = Validity() if validity is None else validity
    return [Run(Path(f"{prefix}{i}"), f"{prefix}{i}", cfg, FINGERPRINT, {key: x}, False, v)
            for i, x in enumerate(values)]


def test_worse_beyond_threshold_and_noise_is_a_regression() -> None:
    c = compare_runs(runs("b", [1.0, 1.01, 0.99]), runs("c", [1.2, 1.21, 1.19]), max_regression_pct=15)
    (v,) = c.verdicts
    assert v.change_pct == pytest.approx(20.0) and v.test.test == "welch" and v.test.significant
    assert c.regression and v.status == "regression"


def test_worse_beyond_threshold_but_within_noise_is_not() -> None:
    # mean +8.3% (beyond 5%) but the spread is +-10%: Welch's interval includes zero
    c = compare_runs(runs("b", [1.0, 1.1, 0.9]), runs("c", [1.2, 0.95, 1.1]), max_regression_pct=5)
    (v,) = c.verdicts
    assert v.change_pct == pytest.approx(100 * (3.25 / 3 - 1))
    assert not v.test.significant and not c.regression and v.status == "within noise"


def test_significant_but_below_threshold_is_not_a_regression() -> None:
    c = compare_runs(runs("b", [1.0, 1.001, 0.999]), runs("c", [1.05, 1.051, 1.049]), max_regression_pct=10)
    assert not c.regression and c.verdicts[0].status == "worse, within threshold"


def test_higher_is_better_metric_regresses_downwards() -> None:
    key = "output_tokens_per_j"
    up = compare_runs(runs("b", [2.0, 2.02, 1.98], key), runs("c", [2.6, 2.62, 2.58], key), key, 15)
    down = compare_runs(runs("b", [2.0, 2.02, 1.98], key), runs("c", [1.4, 1.42, 1.38], key), key, 15)
    assert not up.regression and up.verdicts[0].status == "better"
    assert down.regression and down.verdicts[0].worse_pct == pytest.approx(30.0)


def test_single_runs_use_the_threshold_alone() -> None:
    assert compare_runs(runs("b", [1.0]), runs("c", [1.16]), max_regression_pct=15).regression
    assert not compare_runs(runs("b", [1.0]), runs("c", [1.14]), max_regression_pct=15).regression


def test_one_run_against_repeats_uses_their_spread() -> None:
    c = compare_runs(runs("b", [1.0, 1.1, 0.9]), runs("c", [1.3]), max_regression_pct=10)
    v = c.verdicts[0]
    assert v.test.test == "single-run" and v.test.df == 2
    assert v.test.t == pytest.approx(0.3 / (0.1 * (1 + 1 / 3) ** 0.5))
    assert not c.regression  # t = 2.6 < t_{0.975,2} = 4.30


def test_repeats_of_one_config_are_pooled_and_others_split() -> None:
    cands = runs("c", [1.0, 1.0]) + runs("d", [2.0], load={"concurrency": 2}, bench={"output_dir": "elsewhere"})
    c = compare_runs(runs("b", [1.0, 1.0]), cands)
    assert [len(g.runs) for g in c.candidates] == [3]  # output_dir and base_url do not make a new config


def test_mismatched_workload_is_refused() -> None:
    with pytest.raises(RunMismatchError, match="load.concurrency: 2 vs 8"):
        compare_runs(runs("b", [1.0]), runs("c", [1.0], load={"concurrency": 8}))
    c = compare_runs(runs("b", [1.0]), runs("c", [1.0], load={"concurrency": 8}), allow_mismatch=True)
    assert "load.concurrency" in c.warnings[0]


@pytest.mark.parametrize(("text", "value"), [("15%", 15.0), ("15", 15.0), (" 2.5 % ", 2.5), ("0", 0.0)])
def test_parse_percent(text: str, value: float) -> None:
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["-3%", "abc", "inf", "nan"])
def test_parse_percent_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--max-regression"):
        parse_percent(text)
