"""Number flags of trace and calibrate refuse nan and inf at parse time, naming the flag (a nan passes every
range comparison, so `--duration nan` used to be accepted)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fastmeter.cli import main


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "--source", "synthetic", "--duration", "nan"],
        ["trace", "--source", "synthetic", "--duration", "inf"],
        ["trace", "--source", "synthetic", "--duration", "0.1", "--idle-baseline", "nan"],
        ["calibrate", "--duration-s", "nan"],
        ["calibrate", "--period-ms", "inf"],
        ["calibrate", "--duty", "nan"],
    ],
)
def test_nan_and_inf_are_refused_naming_the_flag(args: list[str]) -> None:
    r = CliRunner().invoke(main, args)
    flag = next(a for a in args if a.startswith("--") and a != "--source" and args[args.index(a) + 1] in
                ("nan", "inf"))
    assert r.exit_code == 2, r.output
    assert f"Invalid value for '{flag}'" in r.output, r.output  # a usage error about that flag, before any run
    assert "Traceback" not in r.output


@pytest.mark.parametrize("gpu", ["-1", "first", "GPU"])
def test_trace_gpu_is_checked_like_bench_gpus(gpu: str) -> None:
    r = CliRunner().invoke(main, ["trace", "--gpu", gpu, "--duration", "0.1"])
    assert r.exit_code == 2 and "Invalid value for '--gpu'" in r.output
    assert "must be a GPU index (an integer >= 0) or a GPU UUID (GPU-...)" in r.output
