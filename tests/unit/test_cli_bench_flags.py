"""`fastmeter bench` flags: generated from the typed config, checked at the edge, errors naming the flag, and a
--help a newcomer can read (meaning, type, default and allowed values; most used first)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.cli.bench import FLAGS, merge_overrides
from fastmeter.load.config import config_fields

# Everything a run needs except a run directory: a command that gets past validation stops at "no run directory".
MINIMAL = ["--server-kind", "openai", "--base-url", "http://127.0.0.1:9", "--model", "m", "--workload-kind",
           "random", "--input-tokens", "4", "--output-tokens", "4"]
PASSED_VALIDATION = "no run directory given"


def bench(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["bench", *args])
    return r.exit_code, r.output


@pytest.mark.parametrize("gpus", ["0", "0,1", "GPU-8f3e2a10-1111-2222"])
def test_gpus_flag_takes_indices_like_trace(gpus: str) -> None:
    code, out = bench(*MINIMAL, "--gpus", gpus)
    assert code == 2 and PASSED_VALIDATION in out, out


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--duration-s", "nan", "--duration-s must be a finite number > 0"),
        ("--idle-baseline-s", "nan", "--idle-baseline-s must be a finite number >= 0"),
        ("--idle-baseline-s", "inf", "--idle-baseline-s must be a finite number >= 0"),
        ("--rate", "nan", '--rate must be a finite number > 0 or "inf"; got nan'),
        ("--base-url", "ftp://127.0.0.1/", "--base-url must be an http:// or https:// URL with a host"),
        ("--base-url", "not a url", "--base-url must be an http:// or https:// URL with a host"),
        ("--input-tokens", "100000000", "--input-tokens must be an integer from 1 to 1000000"),
        ("--max-tokens", "1e23", "--max-tokens must be an integer from 1 to 1000000; got 1e+23"),
        ("--gpus", "-1", "--gpus [0] must be a GPU index (an integer >= 0) or a GPU UUID"),
        ("--concurrency", "1,0", "--concurrency [1] must be an integer from 1 to 100000"),
    ],
)
def test_a_bad_flag_is_one_error_naming_the_flag(flag: str, value: str, message: str) -> None:
    code, out = bench(*MINIMAL, flag, value)
    assert code == 2
    assert out == f"Error: {message}" + out.split(message, 1)[1], out
    assert "Traceback" not in out and "config" not in out.split(message, 1)[1]


def test_a_file_error_names_the_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nkind = "openai"\nbase_url = "http://h:1"\nmodel = "m"\n'
                   '[workload]\nkind = "random"\ninput_tokens = 100000000\noutput_tokens = 4\n[load]\n')
    code, out = bench(str(cfg))
    assert code == 2 and f"{cfg}: [workload].input_tokens must be an integer from 1 to 1000000" in out
    # a flag that fixes the file's value wins, and its own error would name the flag
    code, out = bench(str(cfg), "--input-tokens", "8")
    assert code == 2 and PASSED_VALIDATION in out


def _help_options(text: str) -> list[tuple[str, str]]:
    """(option, its help text) in the order --help lists them."""
    body = text.split("Options:", 1)[1]
    entries: list[tuple[str, str]] = []
    for line in body.splitlines():
        m = re.match(r"^  (-\S.*?)(?:\s{2,}(.*))?$", line)
        if m:
            entries.append((m.group(1), m.group(2) or ""))
        elif entries and line.startswith(" " * 6):  # a wrapped line (click breaks words at hyphens)
            sep = "" if entries[-1][1].endswith("-") else " "
            entries[-1] = (entries[-1][0], (entries[-1][1] + sep + line.strip()).strip())
    return entries


def test_help_is_generated_from_the_typed_config() -> None:
    code, text = bench("--help")
    assert code == 0
    options = _help_options(text)
    by_flag = {o.split()[0].rstrip(","): h for o, h in options}
    assert len(FLAGS) == len(config_fields())
    for fl in FLAGS:
        helptext = by_flag[fl.names[0]]
        assert helptext.startswith(fl.option.help), (fl.names, helptext)
        assert "default:" in helptext and fl.option.check.allowed in helptext
    # choices and types are visible
    assert "one of openai, tgi" in by_flag["--server-kind"]
    assert any(o == "--concurrency INT" for o, _ in options)
    # the most used options come first, not alphabetized `[bench].accuracy`-style names
    first = [o.split()[0].rstrip(",") for o, _ in options[:8]]
    assert first[:4] == ["-o", "--base-url", "--server-kind", "--model"]
    assert not any(h.startswith("[") for _, h in options)


@pytest.mark.parametrize(("check_flag", "text", "value"), [
    ("--model", "7", "7"), ("--model", "inf", "inf"), ("--rate", "inf", float("inf")), ("--concurrency", "4", 4),
    ("--gpus", "0,GPU-ab12", [0, "GPU-ab12"]), ("--ignore-eos", "true", True), ("--rate", "1,2.5,inf", None),
])
def test_flag_text_becomes_the_keys_type(check_flag: str, text: str, value: Any) -> None:
    fl = next(f for f in FLAGS if f.names[0] == check_flag)
    merged, origins = merge_overrides({}, {fl.param: (check_flag, text)})
    if value is None:  # a comma list of rates is a sweep
        assert merged["bench"]["sweep_rate"] == [1, 2.5, float("inf")]
        assert origins == {("bench", "sweep_rate"): "--rate"}
    else:
        assert merged[fl.table][fl.key] == value and origins == {(fl.table, fl.key): check_flag}
