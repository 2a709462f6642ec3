"""`fastmeter bench` end to end: a scripted server, the NVML emulator drawing a known waveform, and per-request
energy checked against the exact time-share integral of that waveform over the recorded request intervals, and
each request's `uncertainty_j` against its actual error on a 100 ms counter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.attribution import attribute, event_times
from fastmeter.cli import main
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Square
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


def true_curve_attribution(spec: GpuSpec, out: Path, method: str) -> np.ndarray:
    """Per measured request (requests.arrow order), the attribution bench would have made on the true curve: the
    twin applied to the waveform's exact integral at every instant bench cuts at (span edges, request edges, first
    tokens, chunks, clipped to the span as bench clips them)."""
    lo, hi = json.loads((out / "run.json").read_text())["span_ns"]
    req = read(out / "requests.arrow")
    req = req.filter(pa.compute.invert(req.column("warmup")))
    chunks = read(out / "chunks.arrow").sort_by([("request_id", "ascending"), ("t_ns", "ascending")])

    def clip(x: pa.ChunkedArray) -> np.ndarray:
        return np.clip(x.to_numpy(), lo, hi).astype(np.int64)

    ids = req.column("request_id").to_pylist()
    owner = chunks.column("request_id").to_pylist()
    mine = np.array([i in set(ids) for i in owner], dtype=bool)
    order = np.argsort(np.array([ids.index(i) for i in np.array(owner)[mine]]), kind="stable")
    chunk_t = clip(chunks.column("t_ns"))[mine][order]
    chunk_k = chunks.column("tokens").to_numpy()[mine][order]
    offsets = np.concatenate([[0], np.cumsum([owner.count(i) for i in ids])])
    first = req.column("first_token_ns")
    first = np.ma.masked_array(np.clip(first.fill_null(lo).to_numpy(), lo, hi), mask=first.is_null().to_numpy())
    starts, ends = clip(req.column("send_ns")), clip(req.column("end_ns"))
    cuts = np.union1d(event_times(starts, ends, first, chunk_t), [lo, hi])
    truth_j = np.array([spec.energy_j(lo, int(c)) for c in cuts])
    a = attribute(
        cuts,
        truth_j,
        starts,
        ends,
        first,
        chunk_offsets=offsets,
        chunk_t_ns=chunk_t,
        chunk_tokens=chunk_k,
        method=method,
        backend="reference",
    )
    return a.energy_j


@pytest.mark.parametrize("method", ["time-share", "token-weighted"])
def test_each_requests_error_lies_within_its_uncertainty(fake_nvml: FakeNvml, tmp_path: Path, method: str) -> None:
    """A 100 ms counter (power windows of 25 ms every 100 ms, as on A100/H100) under a bursty load: attribution
    moves energy between requests by up to the counter's staleness, and `uncertainty_j`, built from the Meter's
    error bound at each cut, must cover what it actually moved, for every request."""
    wave = Square(100.0, 400.0, 0.17, 0.3)
    (spec,) = fake_nvml.configure(
        [GpuSpec(waveform=wave, counter_refresh_ms=100.0, power_refresh_ms=100.0, power_window_ms=25.0)]
    )
    out = tmp_path / "run"
    with openai_server(token_gap_s=0.006, prefill_s=0.02) as server:
        r = CliRunner().invoke(main, bench_args(server.url, out, attribution=method))
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    assert run["attribution"]["uncertainty"] == "bound"
    assert run["attribution"]["uncertainty_heuristic_points"] == 0
    req = read(out / "requests.arrow").to_pandas()
    measured = req[~req.warmup]
    got, bound = measured.energy_j.to_numpy(), measured.uncertainty_j.to_numpy()
    error = np.abs(got - true_curve_attribution(spec, out, method))
    assert (error <= bound + 1e-9 * run["attribution"]["total_j"]).all(), np.c_[error, bound]
    # The bound is not vacuous: each request is charged less than all the energy of the run.
    assert (bound < run["attribution"]["total_j"]).all() and (error > 0).any()


def test_a_gpu_without_energy_counter_falls_back_to_the_heuristic_and_says_so(
    fake_nvml: FakeNvml, tmp_path: Path
) -> None:
    # Steady power: its readings never change, so they show no update period either.
    fake_nvml.configure([GpuSpec(waveform=Constant(300.0), no_energy_counter=True)])
    out = tmp_path / "run"
    with openai_server() as server:
        r = CliRunner().invoke(main, bench_args(server.url, out, **{"num-requests": "4"}))
    assert r.exit_code == 0, r.output
    a = json.loads((out / "run.json").read_text())["attribution"]
    assert a["uncertainty"] == "heuristic"
    assert a["uncertainty_heuristic_points"] > 0
    assert a["uncertainty_unbounded_channels"] == {"gpu0": a["uncertainty_heuristic_points"]}
    assert "not a rigorous bound" in a["uncertainty_reason"]
    # Neither a bound nor an update period: the uncertainty is unknown, never 0.
    assert a["update_period_s"] is None
    measured = read(out / "requests.arrow").to_pandas().query("not warmup")
    assert measured.uncertainty_j.isna().all() and (measured.energy_j > 0).all()


def bench_args(url: str, out: Path, **extra: str) -> list[str]:
    args = {
        "server-kind": "openai",
        "base-url": url,
        "model": "tiny",
        "workload-kind": "random",
        "input-tokens": "8",
        "output-tokens": "12",
        "concurrency": "3",
        "num-requests": "15",
        "warmup-requests": "2",
        "sources": "nvml",
        "period-us": "1000",
        "metrics-enabled": "false",
        **extra,
    }
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


def test_failed_requests_are_recorded_and_excluded_from_per_token_figures(fake_nvml: FakeNvml, tmp_path: Path) -> None:
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
        r = CliRunner().invoke(
            main, bench_args(server.url, out, concurrency="1,4", **{"num-requests": "8", "slo-ttft-p99-ms": "1000"})
        )
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
    r = CliRunner().invoke(
        main,
        ["bench", str(bad), "--server-kind", "openai", "--model", "m", "--input-tokens", "4", "--output-tokens", "4"],
    )
    assert r.exit_code == 2 and "no run directory given" in r.output


def test_calibrated_counter_delay_is_corrected(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    """A GPU whose counter lags reality by 40 ms: with a calibration file saying so, per-request energy matches the
    waveform over the requests' true intervals; without it, the lag shifts energy between requests."""
    # A 200 ms period, far from a request's ~58 ms: a request covering a whole period would see its average power
    # whatever the lag, and the uncorrected run would look right by chance.
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 600.0, 0.2, 0.5), counter_delay_ms=40.0)])
    calibration = tmp_path / "calibration.json"
    calibration.write_text(
        json.dumps(
            {
                "schema": "fastmeter.calibration/1",
                "gpus": [{"index": 0, "uuid": spec.uuid or "", "fields": {"energy_counter": {"delay_ms": 40.0}}}],
            }
        )
    )
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
