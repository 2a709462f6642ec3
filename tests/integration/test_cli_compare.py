"""`fastmeter compare` on real run directories recorded against the NVML emulator: a known 20% power regression
is caught, a 2% one is not, controlled-variable mismatches are refused, every format parses, and a scorer hook
plus carbon and cost settings give exact numbers."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from tests.emulators.nvml import FakeNvml, build_fake_nvml, default_cache_dir
from tests.emulators.runs import record_run

# avg_power_w is what power_scale changes; on a shared 2-core VM the duration of a run (and so J/token) varies
# by tens of percent with scheduling, which would bury a 20% power change in three runs.
GATE = ["--metric", "avg_power_w"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """3 baseline runs (scale 1.0), 3 at 1.2, 2 at 1.02 (interleaved so that drift in machine load hits all)."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        fake = FakeNvml(build_fake_nvml(default_cache_dir()), root / "fake_nvml", mp.setenv)
        for i in range(3):
            record_run(root / "base" / f"b{i}", fake, num_requests=16)
            record_run(root / "hot" / f"h{i}", fake, power_scale=1.2, num_requests=16)
            if i < 2:
                record_run(root / "warm" / f"w{i}", fake, power_scale=1.02, num_requests=16)
        record_run(root / "other" / "o0", fake, output_tokens=4, num_requests=16)
        yield root


def compare(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["compare", *args])
    return r.exit_code, r.stdout, r.stderr


def test_twenty_percent_power_regression_is_caught(runs: Path) -> None:
    code, out, err = compare("--baseline", str(runs / "base"), str(runs / "hot"), *GATE, "--max-regression", "10%",
                             "--format", "json")
    assert code == 1, err
    report = json.loads(out)
    (v,) = report["verdicts"]
    assert v["test"] == "welch" and v["significant"] and v["verdict"] == "regression"
    assert v["change_pct"] == pytest.approx(20.0, abs=6.0)
    assert report["baseline"]["metrics"]["avg_power_w"]["n"] == 3
    assert "energy regression" in err


def test_two_percent_is_not_a_regression_at_fifteen(runs: Path) -> None:
    code, out, err = compare("--baseline", str(runs / "base"), str(runs / "warm"), *GATE, "--max-regression", "15")
    assert code == 0, err
    assert "Welch's t-test" in out
    assert "regression" not in err


def test_default_metric_and_first_run_as_baseline(runs: Path) -> None:
    code, out, _ = compare(str(runs / "base" / "b0"), str(runs / "hot" / "h0"), "--format", "json")
    assert code == 0  # no --max-regression: a report, never a failure
    report = json.loads(out)
    assert report["metric"] == "energy_per_output_token_j" and report["lower_is_better"]
    assert report["verdicts"][0]["test"] == "none"


def test_single_run_per_side_uses_the_threshold_only(runs: Path) -> None:
    code, out, _ = compare(str(runs / "base" / "b0"), str(runs / "hot" / "h0"), *GATE, "--max-regression", "5%")
    assert code == 1
    assert "no noise estimate" in out


def test_workload_mismatch_is_refused_unless_allowed(runs: Path) -> None:
    code, out, err = compare(str(runs / "base"), str(runs / "other"))
    assert code == 2 and out == ""
    assert "workload.output_tokens: 8 vs 4" in err and "--allow-mismatch" in err
    code, out, err = compare(str(runs / "base"), str(runs / "other"), "--allow-mismatch", "--format", "json")
    assert code == 0
    assert "warning: " in err and "workload.output_tokens" in err
    assert json.loads(out)["mismatches"]["o0"] == [{"key": "workload.output_tokens", "baseline": 8, "candidate": 4}]


def test_edited_fingerprint_is_refused(runs: Path, tmp_path: Path) -> None:
    run = json.loads((runs / "hot" / "h0" / "run.json").read_text())
    run["fingerprint"]["controlled"]["gpu"]["driver_version"] = "999.0"
    shutil.copytree(runs / "hot" / "h0", tmp_path / "edited")
    (tmp_path / "edited" / "run.json").write_text(json.dumps(run))
    code, _, err = compare(str(runs / "base"), str(tmp_path / "edited"))
    assert code == 2 and "gpu.driver_version" in err and "999.0" in err


def test_every_format_parses(runs: Path) -> None:
    # hot and other differ in config, so they are two candidate groups (runs of one config would be pooled)
    args = ["--baseline", str(runs / "base"), str(runs / "hot"), str(runs / "other"), "--allow-mismatch"]
    _, out, _ = compare(*args, "--format", "json")
    report = json.loads(out)
    assert [c["label"] for c in report["candidates"]] == ["h0,h1,h2", "o0"]

    _, out, _ = compare(*args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    gated = [r for r in rows if r["metric"] == "energy_per_output_token_j" and r["role"] == "candidate"]
    assert [(r["test"], 0 <= float(r["p_value"]) <= 1) for r in gated] == [("welch", True), ("single-run", True)]
    assert {r["group"] for r in rows} == {"b0,b1,b2", "h0,h1,h2", "o0"}

    _, out, _ = compare(*args, "--format", "markdown")
    tables = [b.splitlines() for b in out.split("\n\n") if b.startswith("|")]
    assert len(tables) == 2
    for lines in tables:
        assert lines[1] == "|" + "---|" * (lines[0].count(" | ") + 1)
        assert all(ln.startswith("| ") and ln.endswith(" |") for ln in lines[2:])
        assert len({ln.count(" | ") for ln in lines if ln != lines[1]}) == 1

    _, out, _ = compare(*args, "--format", "table")
    assert "average power (W)" in out and "b0,b1,b2 (baseline)" in out


def test_bad_input_exits_2(runs: Path, tmp_path: Path) -> None:
    assert compare(str(runs / "base"), str(runs / "hot"), "--max-regression", "lots")[0] == 2
    code, _, err = compare(str(runs / "base"), str(runs / "hot"), "--metric", "vibes")
    assert code == 2 and "unknown metric" in err
    code, _, err = compare(str(runs / "base"), str(runs / "hot"), "--metric", "accuracy")
    assert code == 2 and "not recorded" in err
    code, _, err = compare(str(tmp_path), str(runs / "hot"))
    assert code == 2 and "no run.json" in err


@pytest.mark.parametrize("damage", ["requests.arrow missing", "samples.arrow missing", "requests.arrow corrupt",
                                    "samples.arrow corrupt", "requests.arrow columns"])
def test_run_dirs_with_missing_or_corrupt_measurements_are_refused(runs: Path, tmp_path: Path, damage: str) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(runs / "hot" / "h0", bad)
    name, what = damage.split()
    if what == "missing":
        (bad / name).unlink()
    elif what == "corrupt":
        (bad / name).write_bytes((bad / name).read_bytes()[:200])
    else:
        pa_table = pa.table({"request_id": ["r"]})
        with pa.OSFile(str(bad / name), "wb") as f, pa.ipc.new_file(f, pa_table.schema) as w:
            w.write_table(pa_table)
    code, out, err = compare(str(runs / "base"), str(bad))
    assert code == 2 and out == ""
    assert str(bad / name) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_markdown_escapes_model_names_and_config_values(runs: Path, tmp_path: Path) -> None:
    evil = "m|x <script>alert(1)</script>"
    shutil.copytree(runs / "hot" / "h0", tmp_path / "evil")
    run = json.loads((tmp_path / "evil" / "run.json").read_text())
    run["config"]["server"]["model"] = evil
    (tmp_path / "evil" / "run.json").write_text(json.dumps(run))
    code, out, _ = compare(str(runs / "base"), str(tmp_path / "evil"), "--allow-mismatch", "--format", "markdown")
    assert code == 0
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    table = next(b.splitlines() for b in out.split("\n\n") if b.startswith("|"))
    # an escaped `|` does not split a cell: every row has the header's number of cells
    assert len({ln.replace("\\|", "").count("|") for ln in table}) == 1
    model_row = next(ln for ln in table if ln.startswith("| model |"))
    assert "m\\|x &lt;script&gt;" in model_row


SCORER = '''
def score(pairs):
    """0.1 per (prompt, text) pair whose text is non-empty."""
    assert all(isinstance(p, str) and p for p, _ in pairs)
    return 0.1 * sum(1 for _, text in pairs if text)
'''


def test_scorer_carbon_and_cost_are_exact(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    (tmp_path / "scorer.py").write_text(SCORER)
    extra = {"scorer": f"{tmp_path / 'scorer.py'}:score", "grid-gco2-per-kwh": "400", "pue": "1.5",
             "price-per-kwh": "0.25", "currency": "EUR"}
    out = record_run(tmp_path / "scored", fake_nvml, num_requests=8, extra=extra)
    s = json.loads((out / "run.json").read_text())["summary"]
    energy_j, kwh = s["energy_j"], s["energy_j"] / 3.6e6 * 1.5
    assert s["requests_ok"] == 8 and s["accuracy"] == pytest.approx(0.8)
    assert s["accuracy_per_j"] == pytest.approx(0.8 / energy_j, rel=1e-12)
    assert s["accuracy_per_kwh"] == pytest.approx(0.8 / (energy_j / 3.6e6), rel=1e-12)
    carbon, cost = s["carbon"], s["cost"]
    assert carbon["gco2e"] == pytest.approx(kwh * 400, rel=1e-12)
    assert carbon["gco2e_per_request"] == pytest.approx(kwh * 400 / 8, rel=1e-12)
    assert carbon["gco2e_per_1k_output_tokens"] == pytest.approx(kwh * 400 / s["output_tokens"] * 1e3, rel=1e-12)
    assert (carbon["grid_gco2_per_kwh"], carbon["pue"]) == (400, 1.5) and "pue" in carbon["assumption"]
    assert cost["cost"] == pytest.approx(kwh * 0.25, rel=1e-12) and cost["currency"] == "EUR"
    assert cost["cost_per_1m_output_tokens"] == pytest.approx(kwh * 0.25 / s["output_tokens"] * 1e6, rel=1e-12)

    code, table, _ = compare(str(out), str(out), "--metric", "accuracy_per_j", "--format", "json")
    assert code == 0
    metrics = json.loads(table)["baseline"]["metrics"]
    assert metrics["gco2e"]["mean"] == carbon["gco2e"] and metrics["cost"]["mean"] == cost["cost"]
