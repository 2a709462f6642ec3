"""`fastmeter bench` end to end: a scripted server, the NVML emulator drawing a known waveform, and per-request
energy checked against the exact time-share integral of that waveform over the recorded request intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.emulators.openai_server import openai_server


def read(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as f:
        return pa.ipc.open_file(f).read_all()


def time_share_truth(spec: GpuSpec, starts: np.ndarray, ends: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """Exact time-share split: between consecutive events the waveform's energy divides equally among active
    requests (the waveform's own integral, so no numerical integration error)."""
    events = np.unique(np.concatenate([starts, ends, np.array(span)]))
    out = np.zeros(len(starts))
    for a, b in zip(events[:-1], events[1:]):
        active = (starts <= a) & (ends >= b)
        if active.any():
            out[active] += spec.energy_j(int(a), int(b)) / active.sum()
    return out


def bench_args(url: str, out: Path, **extra: str) -> list[str]:
    args = {"server-kind": "openai", "base-url": url, "model": "tiny", "workload-kind": "random",
            "input-tokens": "8", "output-tokens": "12", "concurrency": "3", "num-requests": "15",
            "warmup-requests": "2", "sources": "nvml", "period-us": "1000", "metrics-enabled": "false", **extra}
    # The emulator makes every run synthetic (emulated_source): --allow-degraded accepts that chosen source.
    return ["bench", "-o", str(out), "--allow-degraded", *[x for k, v in args.items() for x in (f"--{k}", v)]]


def test_per_request_energy_matches_the_waveform(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 400.0, 0.07, 0.4))])
    out = tmp_path / "run"
    with openai_server(token_gap_s=0.004, prefill_s=0.01) as server:
        r = CliRunner().invoke(main, bench_args(server.url, out))
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    assert run["validity"]["verdict"] == "synthetic"
    assert "emulated_source" in {r["code"] for r in run["validity"]["reasons"]}
    req = read(out / "requests.arrow").to_pandas()
    measured = req[~req.warmup]
    assert len(measured) == 15 and (measured.status == "ok").all()
    assert (measured.completion_tokens == 12).all()

    span = tuple(run["span_ns"])
    truth = time_share_truth(spec, measured.send_ns.to_numpy(), measured.end_ns.to_numpy(), span)
    got = measured.energy_j.to_numpy()
    # Continuous counter polled at 1 kHz: each request edge is located within a poll; 300 W x 1 ms per edge.
    assert got == pytest.approx(truth, rel=0.03, abs=2 * 0.3)
    assert got.sum() == pytest.approx(truth.sum(), rel=0.01)

    a = run["attribution"]
    assert a["requests_j"] + a["idle_j"] == pytest.approx(a["total_j"], rel=1e-12)
    assert a["total_j"] == pytest.approx(spec.energy_j(*span), rel=0.005)
    assert run["summary"]["energy_j"] == pytest.approx(spec.energy_j(*span), rel=0.005)
    s = run["summary"]
    assert s["output_tokens"] == 15 * 12 and s["requests_ok"] == 15 and s["requests_failed"] == 0
    assert s["energy_per_output_token_j"] == pytest.approx(s["energy_j"] / 180)
    assert s["inferences_per_kwh"] == pytest.approx(15 / (s["energy_j"] / 3.6e6))
    pre, dec = measured.prefill_energy_j.to_numpy(), measured.decode_energy_j.to_numpy()
    assert pre + dec == pytest.approx(got)
    assert (pre > 0).all() and (dec > 0).all()
    chunks = read(out / "chunks.arrow")
    assert chunks.num_rows == 17 * 12  # warm-up requests' chunks are recorded too
    assert "energy-to-solution" in r.output and "J / output token" in r.output


def test_failed_requests_are_recorded_and_excluded_from_per_token_figures(fake_nvml: FakeNvml,
                                                                         tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(waveform=Square(100.0, 200.0, 0.05, 0.5))])
    out = tmp_path / "run"
    with openai_server(fail=lambda i: i in (4, 7)) as server:  # two measured requests fail (2 warm-ups first)
        r = CliRunner().invoke(main, bench_args(server.url, out))
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    req = read(out / "requests.arrow").to_pandas()
    failed = req[(req.status != "ok") & ~req.warmup]
    assert len(failed) == 2 and (failed.status == "http_error").all() and (failed.http_status == 500).all()
    assert all("scripted failure" in e for e in failed.error)
    s = run["summary"]
    assert s["requests_ok"] == 13 and s["requests_failed"] == 2
    assert s["failed_energy_j"] == pytest.approx(failed.energy_j.sum())
    assert s["energy_per_output_token_j"] == pytest.approx((s["energy_j"] - s["failed_energy_j"]) / (13 * 12))


def test_concurrency_sweep_marks_the_best_point_within_the_slo(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(waveform=Square(100.0, 200.0, 0.05, 0.5))])
    out = tmp_path / "sweep"
    with openai_server() as server:
        r = CliRunner().invoke(main, bench_args(server.url, out, concurrency="1,4", **{"num-requests": "8",
                                                                                        "slo-ttft-p99-ms": "1000"}))
    assert r.exit_code == 0, r.output
    sweep = json.loads((out / "sweep.json").read_text())
    assert [p["point"] for p in sweep["points"]] == ["concurrency-1", "concurrency-4"]
    assert all(p["meets_slo"] for p in sweep["points"])
    best = max(sweep["points"], key=lambda p: p["output_tokens_per_j"])
    assert sweep["best"] == best["point"]
    assert (out / "concurrency-4" / "run.json").exists() and "<- best" in r.output


def test_bench_rejects_bad_config_with_the_key_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nkind = "grpc"\nbase_url = "http://x"\n[workload]\nkind = "random"\n[load]\n')
    r = CliRunner().invoke(main, ["bench", str(bad), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "[server].kind must be one of openai, tgi" in r.output
    r = CliRunner().invoke(main, ["bench", str(bad), "--server-kind", "openai", "--model", "m",
                                  "--input-tokens", "4", "--output-tokens", "4"])
    assert r.exit_code == 2 and "no run directory given" in r.output


def test_calibrated_counter_delay_is_corrected(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    """A GPU whose counter lags reality by 40 ms: with a calibration file saying so, per-request energy matches the
    waveform over the requests' true intervals; without it, the lag shifts energy between requests."""
    # A 200 ms period, far from a request's ~58 ms: a request covering a whole period would see its average power
    # whatever the lag, and the uncorrected run would look right by chance.
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 600.0, 0.2, 0.5), counter_delay_ms=40.0)])
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({
        "schema": "fastmeter.calibration/1",
        "gpus": [{"index": 0, "uuid": spec.uuid or "", "fields": {"energy_counter": {"delay_ms": 40.0}}}],
    }))
    errors = {}
    for name, extra in (("calibrated", {"calibration": str(calibration)}), ("raw", {})):
        out = tmp_path / name
        with openai_server(token_gap_s=0.004, prefill_s=0.01) as server:
            r = CliRunner().invoke(main, bench_args(server.url, out, concurrency="1", **extra))
        assert r.exit_code == 0, r.output
        run = json.loads((out / "run.json").read_text())
        req = read(out / "requests.arrow").to_pandas()
        measured = req[~req.warmup]
        truth = time_share_truth(spec, measured.send_ns.to_numpy(), measured.end_ns.to_numpy(), tuple(run["span_ns"]))
        errors[name] = float(np.median(np.abs(measured.energy_j.to_numpy() - truth) / truth))
        if name == "calibrated":
            assert run["counter_delay_ns"] == {"gpu0": 40_000_000}
            assert run["calibration"]["gpus"][0]["uuid"] == spec.uuid
    assert errors["calibrated"] < 0.05
    assert errors["calibrated"] < errors["raw"] / 2, errors
