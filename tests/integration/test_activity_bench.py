"""`fastmeter bench --attribution activity` end to end over HTTP: the scripted engine streams on its schedule and
writes its power for the NVML emulator; run.json reports the fit and requests.arrow's energies match the engine's
exact per-request truth."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from tests.emulators.activity_harness import SENSOR
from tests.emulators.activity_server import ActivityEngine, activity_server
from tests.emulators.nvml import FakeNvml, FileSteps, GpuSpec


def workload(path: Path, n: int) -> Path:
    rng = random.Random(3)
    lines = []
    for i in range(n):
        words = rng.randint(8, 60) if rng.random() < 0.5 else rng.randint(800, 1800)
        lines.append(json.dumps({"prompt": " ".join(["w"] * words), "max_tokens": rng.randint(4, 30)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_activity_reports_its_fit_and_matches_the_truth(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    engine = ActivityEngine(tmp_path / "power.txt")
    fake_nvml.configure([GpuSpec(waveform=FileSteps(engine.power_file, engine.t0_ns), **SENSOR)], t0_ns=engine.t0_ns)
    out = tmp_path / "run"
    args = {
        "server-kind": "openai",
        "model": "tiny",
        "workload-kind": "jsonl",
        "workload-path": str(workload(tmp_path / "w.jsonl", 48)),
        "concurrency": "8",
        "num-requests": "48",
        "sources": "nvml",
        "period-us": "1000",
        "metrics-enabled": "false",
        "attribution": "activity",
    }
    engine.start()
    try:
        with activity_server(engine) as server:
            flags = [x for k, v in {**args, "base-url": server.url}.items() for x in (f"--{k}", v)]
            r = CliRunner().invoke(main, ["bench", "-o", str(out), "--allow-degraded", *flags])
    finally:
        engine.stop()
    assert r.exit_code == 0, r.output
    assert engine.late_lines == 0
    run = json.loads((out / "run.json").read_text())
    a = run["attribution"]
    assert a["method"] == "activity"
    fit = a["activity_fit"]
    assert fit["used"] and fit["rejected"] is None
    assert len(fit["residuals_j"]) == fit["intervals"] == len(fit["interval_end_ns"]) >= 20
    lo, hi = fit["coefficients"]["prefill_j_per_token"]["ci95"]
    assert lo <= engine.model.prefill_j_per_token * 1.2 and engine.model.prefill_j_per_token * 0.8 <= hi
    assert "activity_fit_too_few_intervals" not in {x["code"] for x in run["validity"]["reasons"]}
    with pa.OSFile(str(out / "requests.arrow")) as f:
        req = pa.ipc.open_file(f).read_all().to_pandas()
    truth = np.array([engine.truth(rid).energy_j for rid in req.request_id])
    error = np.abs(req.energy_j.to_numpy() - truth) / truth
    # Over HTTP the client sees each token late by the server's and its own scheduling on a loaded host (tens of ms
    # on a shared 2-core VM, comparable to a step), which misplaces activity: a looser bound than the library-level
    # test's. Time-share is ~30 % off on this workload (benchmarks/bench_activity.py).
    assert np.median(error) <= 0.15, np.sort(error)
    assert a["requests_j"] + a["idle_j"] == pytest.approx(a["total_j"], rel=1e-9)
    # The report shows the fit: each cost with its interval, R² and that it was used.
    page = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["report", str(out), "--html", str(page)])
    assert r.exit_code == 0, r.output
    html = page.read_text()
    assert "Activity power model" in html and "J / prefill token" in html
    assert f"{fit['coefficients']['prefill_j_per_token']['value']:.3g} [" in html
