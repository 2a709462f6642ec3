"""Matrices against launched scripted servers and the NVML emulator: every cell runs once per repeat in the
planned interleaved order, servers start once per block, cool-downs are recorded, and the decision table agrees
with the cells' own run directories."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.matrix.cooldown import Baseline, GpuTelemetry, cool_down, cooldown_reasons
from fastmeter.matrix.plan import plan
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Steps
from tests.servers.launch_helpers import read_json, scripted_launch, toml_value, write_config
from tests.servers.vllm_server import free_loopback_port


def _matrix_config(tmp_path: Path, slo_ttft_ms: float | None = None, exit_after: int = 0) -> Path:
    port_fast, port_slow = free_loopback_port(), free_loopback_port()
    fast = scripted_launch(port_fast, "--token-gap-ms", "1")
    slow = scripted_launch(port_slow, "--token-gap-ms", "6", *(("--exit-after", str(exit_after)) if exit_after else ()))
    entries = [("fast", "scripted-a", port_fast, fast), ("slow", "scripted-b", port_slow, slow)]
    text = "[matrix]\nrepeats = 2\nseed = 11\nconcurrency = [1, 3]\ncooldown_max_s = 5.0\nbaseline_s = 0.5\n\n"
    for name, label, port, launch in entries:
        text += (
            f'[[matrix.servers]]\nname = "{name}"\nserver = "{label}"\n'
            f'base_url = "http://127.0.0.1:{port}"\nlaunch = {toml_value(launch)}\n\n'
        )
    slo = f"slo_ttft_p99_ms = {slo_ttft_ms}\n" if slo_ttft_ms is not None else ""
    cfg = write_config(tmp_path / "matrix.toml", {"base_url": "http://127.0.0.1:1"}, load={"num_requests": 4})
    body = cfg.read_text().replace("[bench]\n", f"[bench]\n{slo}")
    cfg.write_text(body + text)
    return cfg


def _bench(cfg: Path, out: Path, fake_nvml: FakeNvml) -> str:
    fake_nvml.configure([GpuSpec(waveform=Constant(150.0), average_window_ms=10.0)])
    r = CliRunner().invoke(main, ["bench", str(cfg), "-o", str(out), "--allow-degraded"])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def matrix_run(fake_nvml_library: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(matrix directory, bench output) of one 2 servers x 2 concurrencies x 2 repeats matrix, shared by the tests
    that read it."""
    root = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as mp:
        nvml = FakeNvml(fake_nvml_library, root / "fake_nvml", mp.setenv)
        return root / "m", _bench(_matrix_config(root), root / "m", nvml)


def test_matrix_runs_every_cell_interleaved_and_ends_with_a_consistent_decision_table(
    matrix_run: tuple[Path, str],
) -> None:
    out, output = matrix_run
    doc = read_json(out / "matrix.json")
    # The order is the seeded plan, and the cells ran in it (their measured spans follow one another).
    blocks = plan(["fast", "slow"], ["concurrency-1", "concurrency-3"], 2, 11)
    assert doc["order"] == [{"entry": b.entry, "repeat": b.repeat, "points": list(b.points)} for b in blocks]
    expected = [f"{b.entry}/{p}/r{b.repeat}" for b in blocks for p in b.points]
    assert [c["dir"] for c in doc["cells"]] == expected
    spans = [read_json(out / d / "run.json")["span_ns"] for d in expected]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert sorted(expected) == sorted(
        {f"{e}/{p}/r{r}" for e in ("fast", "slow") for p in ("concurrency-1", "concurrency-3") for r in (1, 2)}
    )
    # One server start per block; each block's server was ready before its cells and stopped after them.
    for b in blocks:
        launch = read_json(out / b.entry / f"server-r{b.repeat}" / "launch.json")
        cells = [read_json(out / f"{b.entry}/{p}/r{b.repeat}" / "run.json")["span_ns"] for p in b.points]
        assert launch["ready_ns"] <= min(s[0] for s in cells)
        assert launch["stop"]["signal"] == "SIGTERM" and launch["exited_on_its_own"] is False
        fp = read_json(out / f"{b.entry}/{b.points[0]}/r{b.repeat}" / "run.json")["fingerprint"]["controlled"]
        assert fp["server_launch"]["command"] == launch["command"]
    # Cool-down: none before the first cell, recorded before every other one; a constant GPU is at its baseline.
    assert doc["cells"][0]["cooldown"]["first_cell"] is True
    assert all(c["cooldown"]["reached"] is True for c in doc["cells"][1:])
    assert doc["idle_baseline"]["power_w"] == {"0": 150.0}
    # The decision table, recomputed from the cells' own run.json files.
    by_entry = {}
    for name in ("fast", "slow"):
        medians = {
            p: statistics.median(
                read_json(out / f"{name}/{p}/r{r}" / "run.json")["summary"]["output_tokens_per_j"] for r in (1, 2)
            )
            for p in ("concurrency-1", "concurrency-3")
        }
        by_entry[name] = max(medians.items(), key=lambda kv: kv[1])
    top = max(v for _, v in by_entry.values())
    rows = {r["entry"]: r for r in doc["decision"]}
    for name, (point, value) in by_entry.items():
        assert rows[name]["best_point"] == point
        assert math.isclose(rows[name]["output_tokens_per_j"], value, rel_tol=1e-12)
        assert math.isclose(rows[name]["ratio_to_best"], value / top, rel_tol=1e-12)
    assert doc["best"] == max(by_entry, key=lambda n: by_entry[n][1])
    assert "decision table" in output and rows["fast"]["server"] == "scripted-a"


def test_an_unmeetable_slo_leaves_no_best_point(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    out = tmp_path / "m"
    output = _bench(_matrix_config(tmp_path, slo_ttft_ms=1e-6), out, fake_nvml)
    doc = read_json(out / "matrix.json")
    assert doc["best"] is None and all(r["best_point"] is None for r in doc["decision"])
    assert "no point meets the SLO" in output


def test_a_server_dying_in_a_matrix_invalidates_its_cell_and_skips_the_rest_of_its_block(
    tmp_path: Path, fake_nvml: FakeNvml
) -> None:
    fake_nvml.configure([GpuSpec(waveform=Constant(150.0), average_window_ms=10.0)])
    out = tmp_path / "m"
    r = CliRunner().invoke(
        main, ["bench", str(_matrix_config(tmp_path, exit_after=2)), "-o", str(out), "--allow-degraded"]
    )
    assert r.exit_code == 4, r.output  # invalid
    doc = read_json(out / "matrix.json")
    dead = [c for c in doc["cells"] if c["entry"] == "slow"]
    assert dead and all(c["verdict"] == "invalid" for c in dead)
    assert "server_exited" in json.dumps(doc["validity"]) and "matrix_incomplete" in json.dumps(doc["validity"])
    assert len(doc["cells"]) < 8 and all(c["verdict"] != "invalid" for c in doc["cells"] if c["entry"] == "fast")


def test_cool_down_waits_for_the_gpu_to_return_to_baseline_and_is_bounded(fake_nvml: FakeNvml) -> None:
    spec = GpuSpec(waveform=Steps(((0.0, 300.0), (1.0, 100.0))), average_window_ms=10.0, temperature_c=40)
    fake_nvml.configure([spec])
    telemetry = GpuTelemetry(())
    try:
        baseline = Baseline({"0": 100.0}, {"0": 40.0})
        bounded = cool_down(telemetry, baseline, 0.0, 0.3)  # the GPU is at 300 W until 1 s after t0
        assert bounded["reached"] is False and bounded["waited_s"] >= 0.3 and bounded["power_w"]["0"] == 300.0
        done = cool_down(telemetry, baseline, 0.0, 30.0)
        assert done["reached"] is True and done["power_w"]["0"] == 100.0
    finally:
        telemetry.close()
    assert [r.code for r in cooldown_reasons([bounded, done])] == ["cooldown_incomplete"]


def test_without_gpu_telemetry_the_cool_down_is_unknown_not_assumed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(tmp_path / "missing-libnvidia-ml.so"))
    telemetry = GpuTelemetry(())
    assert telemetry.unavailable is not None
    record = cool_down(telemetry, None, 0.0, 10.0)
    assert record["reached"] is None and "no GPU telemetry" in record["reason"]
    assert [r.code for r in cooldown_reasons([record])] == ["cooldown_unknown"]


def _compare(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["compare", *args])
    return r.exit_code, r.output


def test_compare_a_matrix_across_servers_and_across_load_points(matrix_run: tuple[Path, str]) -> None:
    out, _ = matrix_run
    code, text = _compare(str(out), "--vary", "server")
    assert code == 0, text
    assert "== at concurrency-1" in text and "== at concurrency-3" in text
    assert text.count("differs from the baseline in: server") == 2
    code, text = _compare(str(out), "--vary", "concurrency")
    assert code == 0, text
    assert "== fast" in text and "== slow" in text and text.count("differs from the baseline in: concurrency") == 2


def test_compare_refuses_cells_that_differ_in_more_than_the_declared_variable(matrix_run: tuple[Path, str]) -> None:
    out, _ = matrix_run
    code, text = _compare(str(out / "fast" / "concurrency-1"), str(out / "slow" / "concurrency-3"), "--vary", "server")
    assert code == 2 and "--vary server declares that only server differs" in text and "concurrency (" in text
    code, text = _compare(str(out / "fast" / "concurrency-1"), str(out / "slow" / "concurrency-1"))
    assert code == 2 and "server_launch.command" in text  # no --vary: the launch spec is a controlled variable
    code, text = _compare(str(out))
    assert code == 2 and "is a matrix directory: pass --vary" in text


def test_two_models_on_one_server_vary_the_model_not_the_server(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    ports = [free_loopback_port(), free_loopback_port()]
    text = "[matrix]\nconcurrency = [2]\nbaseline_s = 0.1\n\n"
    for name, port in zip(("m1", "m2"), ports):
        launch = scripted_launch(port, "--token-gap-ms", "1")
        text += (
            f'[[matrix.servers]]\nname = "{name}"\nserver = "scripted"\nmodel = "{name}"\n'
            f'base_url = "http://127.0.0.1:{port}"\nlaunch = {toml_value(launch)}\n\n'
        )
    cfg = write_config(tmp_path / "matrix.toml", {"base_url": "http://127.0.0.1:1"}, load={"num_requests": 3})
    cfg.write_text(cfg.read_text() + text)
    out = tmp_path / "m"
    _bench(cfg, out, fake_nvml)
    code, output = _compare(str(out), "--vary", "model")
    assert code == 0, output
    assert "differs from the baseline in: model" in output
    code, output = _compare(str(out), "--vary", "server")
    assert code == 2 and "differs in model" in output


def test_report_reads_a_matrix_directory(matrix_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = matrix_run
    r = CliRunner().invoke(main, ["report", str(out)])
    assert r.exit_code == 0, r.output
    doc = read_json(out / "matrix.json")
    assert "decision table" in r.output
    for cell in doc["cells"]:
        assert f"m/{cell['dir']}" in r.output  # every cell is a row
    best = next(x for x in doc["decision"] if x["entry"] == doc["best"])
    assert f"best point m/{doc['best']}/{best['best_point']}/r1" in r.output
    html = tmp_path / "report.html"
    r = CliRunner().invoke(main, ["report", str(out), "--html", str(html)])
    assert r.exit_code == 0, r.output
    assert f"m/{doc['best']}/{best['best_point']}/r1" in html.read_text()
