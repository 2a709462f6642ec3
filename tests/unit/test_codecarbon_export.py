"""A run directory exported as CodeCarbon's emissions.csv: CodeCarbon's columns in its order and units, energies
from the measured channels (checked against the emulator's analytic truth), unknowns left empty, never 0."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from fastmeter.errors import ConfigError
from fastmeter.integrations.codecarbon import CODECARBON_COLUMNS, write_emissions_csv
from fastmeter.training import TrainingRun
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Square

J_PER_KWH = 3.6e6


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_a_training_run_reads_back_from_emissions_csv(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    gpus = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.02, 0.5)), GpuSpec(waveform=Constant(60.0))])
    with TrainingRun(tmp_path / "run", "nvml") as run:
        with run.step():
            time.sleep(0.05)
    out = write_emissions_csv(tmp_path / "run", tmp_path / "emissions.csv", grid_gco2_per_kwh=400.0, pue=1.2)
    header, (row,) = _rows(out)
    assert header == list(CODECARBON_COLUMNS)
    t0, t1 = run.summary["span_ns"]
    truth_j = sum(g.energy_j(t0, t1) for g in gpus)
    bound_j = run.summary["energy_bound_j"]
    gpu_kwh = float(row["gpu_energy"])
    assert abs(gpu_kwh / 1.2 * J_PER_KWH - truth_j) <= bound_j
    assert float(row["energy_consumed"]) == pytest.approx(gpu_kwh)  # only GPUs were measured
    assert float(row["emissions"]) == pytest.approx(gpu_kwh * 400.0 / 1000)  # kg
    assert float(row["duration"]) == pytest.approx((t1 - t0) * 1e-9)
    assert float(row["gpu_power"]) == pytest.approx(gpu_kwh / 1.2 * J_PER_KWH / float(row["duration"]))
    assert row["gpu_count"] == "2" and row["tracking_mode"] == "machine" and row["run_id"] == "run"
    # Not measured, not given: empty, never 0.
    for col in ("cpu_energy", "ram_energy", "cpu_power", "water_consumed", "country_name", "gpu_model", "wue"):
        assert row[col] == "", col
    time.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S")


def test_rows_append_and_unknowns_stay_empty(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(waveform=Constant(100.0))])
    with TrainingRun(tmp_path / "run", "nvml") as run:
        with run.step():
            time.sleep(0.01)
    out = tmp_path / "emissions.csv"
    write_emissions_csv(tmp_path / "run", out)
    write_emissions_csv(tmp_path / "run", out, project_name="second")
    header, rows = _rows(out)
    assert header == list(CODECARBON_COLUMNS) and [r["project_name"] for r in rows] == ["fastmeter", "second"]
    assert rows[0]["emissions"] == "" and rows[0]["emissions_rate"] == ""  # no grid intensity given
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="other columns"):
        write_emissions_csv(tmp_path / "run", foreign)
    with pytest.raises(ConfigError, match="pue"):
        write_emissions_csv(tmp_path / "run", out, pue=float("inf"))


def test_a_bench_run_exports_too(report_runs: dict[str, Path], tmp_path: Path) -> None:
    import json

    run = json.loads((report_runs["low"] / "run.json").read_text())
    out = write_emissions_csv(report_runs["low"], tmp_path / "emissions.csv", grid_gco2_per_kwh=250.0)
    _, (row,) = _rows(out)
    assert float(row["gpu_energy"]) == pytest.approx(run["energy_by_channel_j"]["gpu0"] / J_PER_KWH)
    assert float(row["duration"]) == pytest.approx((run["span_ns"][1] - run["span_ns"][0]) * 1e-9)
    assert float(row["emissions"]) == pytest.approx(float(row["energy_consumed"]) * 250.0 / 1000)


def test_the_command_appends_each_run_and_refuses_bad_input(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fastmeter.cli import main

    fake_nvml.configure([GpuSpec(waveform=Constant(100.0))])
    for name in ("a", "b"):
        with TrainingRun(tmp_path / name, "nvml") as run:
            with run.step():
                time.sleep(0.005)
    out = tmp_path / "emissions.csv"
    args = ["export-codecarbon", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--pue", "1.1"]
    r = CliRunner().invoke(main, [*args, "--grid-gco2-per-kwh", "300"])
    assert r.exit_code == 0, r.output
    _, rows = _rows(out)
    assert [row["run_id"] for row in rows] == ["a", "b"] and {row["pue"] for row in rows} == {"1.1"}
    bad = CliRunner().invoke(main, ["export-codecarbon", str(tmp_path / "missing"), "-o", str(out)])
    assert bad.exit_code == 2 and "neither training.json nor run.json" in bad.output and "Traceback" not in bad.output
    assert len(_rows(out)[1]) == 2  # nothing appended for the bad run
    nan = CliRunner().invoke(main, [*args, "--grid-gco2-per-kwh", "nan"])
    assert nan.exit_code == 2 and "finite" in nan.output
