"""Issue 9's failure modes end to end: each one runs the real commands against the emulators and asserts the
verdict, the exit code, and that no published figure is silently wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.io import read_trace
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.emulators.openai_server import openai_server


def read(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as f:
        return pa.ipc.open_file(f).read_all()


def bench(url: str, out: Path, *flags: str, **extra: str) -> list[str]:
    args = {
        "server-kind": "openai",
        "base-url": url,
        "model": "tiny",
        "workload-kind": "random",
        "input-tokens": "8",
        "output-tokens": "8",
        "concurrency": "2",
        "num-requests": "8",
        "warmup-requests": "1",
        "period-us": "1000",
        "metrics-enabled": "false",
        **extra,
    }
    return ["bench", "-o", str(out), *flags, *[x for k, v in args.items() for x in (f"--{k}", v)]]


def codes(validity: dict) -> set[str]:
    return {r["code"] for r in validity["reasons"]}


@pytest.fixture
def no_hardware(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with no GPU, no powercap zones and no MSR files, whatever the host has."""
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(tmp_path / "no-nvml.so"))
    (tmp_path / "no-powercap").mkdir()
    monkeypatch.setenv("FASTMETER_POWERCAP_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("FASTMETER_MSR_ROOT", str(tmp_path / "no-msr"))


# --- 3: GPU lost in the middle of a bench ---------------------------------------------------------------------


def test_gpu_lost_mid_bench_is_invalid_and_publishes_nothing_over_the_lost_part(
    fake_nvml: FakeNvml, tmp_path: Path
) -> None:
    # Every poll makes one NVML value call: the GPU is lost after 1500 polls (>= 1.5 s, well after the load's start
    # even on a loaded host), while the 200 requests (~4 s at concurrency 2) are still running.
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.05, 0.5), fail_after_calls=(1500, 15))])
    out = tmp_path / "lost"
    with openai_server(token_gap_s=0.004, prefill_s=0.005) as server:
        r = CliRunner().invoke(
            main, bench(server.url, out, "--allow-degraded", **{"sources": "nvml", "num-requests": "200"})
        )
    assert r.exit_code == 4, r.output  # invalid: --allow-degraded never accepts it
    assert "INVALID" in r.output and "channel_failed" in r.output
    run = json.loads((out / "run.json").read_text())
    assert run["validity"]["verdict"] == "invalid"
    (lost,) = [x for x in run["validity"]["reasons"] if x["code"] == "channel_failed"]
    assert lost["channel"] == "gpu0" and lost["verdict"] == "invalid"
    span = run["span_ns"]
    # The measured span ends at the lost GPU's last sample, the poll before its first failed reading (t_ns).
    samples = read(out / "samples.arrow").to_pandas()
    assert span[1] == samples.t_ns[samples.t_ns < lost["t_ns"]].max()

    req = read(out / "requests.arrow").to_pandas()
    measured = req[~req.warmup & (req.status == "ok")]
    after = measured[measured.end_ns > span[1]]
    within = measured[measured.end_ns <= span[1]]
    assert len(after) > 0 and len(within) > 0
    assert after.energy_j.isna().all()  # unknown, never 0
    assert (within.energy_j > 0).all()
    s = run["summary"]
    assert s["requests_unmeasured"] == len(after) and s["requests_ok"] == len(within)
    # Tokens and time are those of the measured span only: no tokens/s over a span that ended early.
    assert s["output_tokens"] == within.completion_tokens.sum()
    assert s["duration_s"] == pytest.approx((span[1] - span[0]) * 1e-9)
    assert s["output_tokens_per_s"] == pytest.approx(s["output_tokens"] / s["duration_s"])
    # The span's energy is the waveform's over the measured span (not over the load's): each edge is placed within
    # a poll, and a loaded host may stretch a poll to a few ms (300 W x 5 ms of ~60 J).
    assert s["energy_j"] == pytest.approx(spec.energy_j(*span), rel=0.05)

    good = tmp_path / "good"
    fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.05, 0.5))])
    with openai_server(token_gap_s=0.004, prefill_s=0.005) as server:
        r = CliRunner().invoke(
            main, bench(server.url, good, "--allow-degraded", **{"sources": "nvml", "num-requests": "20"})
        )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["compare", str(good), str(out)])
    assert r.exit_code == 2 and "invalid runs cannot be compared" in r.output and "lost" in r.output


def test_a_trace_whose_gpu_was_lost_is_invalid_in_its_metadata_and_in_show(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(fail_after_calls=(20, 15))])  # 20 polls: well inside 0.4 s on a loaded host
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(main, ["trace", "--source", "nvml", "--duration", "0.4", "-o", str(out)])
    assert r.exit_code == 0, r.output  # trace's own exit code is its command's; the verdict is in the file
    meta = read_trace(out).metadata
    assert meta["validity"]["verdict"] == "invalid" and "channel_failed" in codes(meta["validity"])
    r = CliRunner().invoke(main, ["show", str(out)])
    assert r.output.startswith("validity      INVALID") and "[channel_failed]" in r.output


def test_a_starved_sampler_shows_in_the_verdict(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    # Each NVML call takes 3 ms: at a 1 ms period most deadlines pass unpolled, as under heavy CPU contention.
    fake_nvml.configure([GpuSpec(latency_us=3000)])
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(main, ["trace", "--source", "nvml", "--duration", "0.3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    (missed,) = [x for x in read_trace(out).metadata["validity"]["reasons"] if x["code"] == "missed_deadlines"]
    assert missed["verdict"] == "degraded" and "deadlines" in missed["message"]


def test_gpu_lost_before_the_measured_phase_publishes_unknown_not_zero(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(fail_after_calls=(5, 15))])  # lost within the first polls, during warm-up
    out = tmp_path / "lost"
    with openai_server(token_gap_s=0.004, prefill_s=0.005) as server:
        r = CliRunner().invoke(main, bench(server.url, out, sources="nvml", **{"warmup-requests": "2"}))
    assert r.exit_code == 4, r.output
    run = json.loads((out / "run.json").read_text())
    s = run["summary"]
    assert s["energy_j"] is None and s["energy_per_output_token_j"] is None  # null in JSON: unknown, never 0
    assert run["energy_by_channel_j"] == {"gpu0": None}
    req = read(out / "requests.arrow").to_pandas()
    assert req[~req.warmup].energy_j.isna().all()


# --- 4: hardware asked for is hardware required ---------------------------------------------------------------


def test_a_mistyped_gpu_never_falls_back_to_synthetic(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(main, ["trace", "--gpu", "5", "--duration", "0.1", "-o", str(out)])
    assert r.exit_code == 2 and "no GPU '5'" in r.output and "0 (NVIDIA H200" in r.output
    assert not out.exists()
    config = tmp_path / "bench.toml"
    config.write_text('[bench]\ngpus = ["5"]\n')
    with openai_server() as server:
        r = CliRunner().invoke(
            main, [*bench(server.url, tmp_path / "run")[:1], str(config), *bench(server.url, tmp_path / "run")[1:]]
        )
    assert r.exit_code == 2 and "no GPU '5'" in r.output and "0 (NVIDIA H200" in r.output
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_named_source_that_is_missing_is_an_error(no_hardware: None, tmp_path: Path) -> None:
    for source in ("nvml", "rapl"):
        r = CliRunner().invoke(main, ["trace", "--source", source, "--duration", "0.1", "-o", str(tmp_path / "t")])
        assert r.exit_code == 2 and r.output.startswith("Error:"), r.output
        assert "Traceback" not in r.output


def test_auto_without_hardware_says_synthetic_at_every_output(no_hardware: None, tmp_path: Path) -> None:
    trace = tmp_path / "t.arrow"
    r = CliRunner().invoke(main, ["trace", "--duration", "0.2", "-o", str(trace)])
    assert r.exit_code == 0, r.output
    assert "no hardware source is available" in r.output and "not a measurement" in r.output
    meta = read_trace(trace).metadata
    assert meta["validity"]["verdict"] == "synthetic" and "synthetic_fallback" in codes(meta["validity"])
    r = CliRunner().invoke(main, ["show", str(trace)])
    assert r.exit_code == 0 and r.output.startswith("validity      SYNTHETIC")
    assert "not a measurement" in r.output.splitlines()[1]

    runs = []
    for name in ("a", "b"):
        runs.append(tmp_path / name)
        with openai_server(token_gap_s=0.003, prefill_s=0.005) as server:
            r = CliRunner().invoke(main, bench(server.url, runs[-1], "--allow-degraded"))
        # "auto" that found no hardware is never accepted, not even with --allow-degraded.
        assert r.exit_code == 5, r.output
        assert "validity                  SYNTHETIC" in r.output and "not a measurement" in r.output
        run = json.loads((runs[-1] / "run.json").read_text())
        assert run["validity"]["verdict"] == "synthetic" and "synthetic_fallback" in codes(run["validity"])
        samples_meta = read_trace(runs[-1] / "samples.arrow").metadata  # `show` of a run's samples says it too
        assert "synthetic_fallback" in codes(samples_meta["validity"])

    r = CliRunner().invoke(main, ["report", str(runs[0])])
    assert r.exit_code == 0 and r.output.startswith("NOT A MEASUREMENT")
    html = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["report", str(runs[0]), "--html", str(html)])
    page = html.read_text()
    assert r.exit_code == 0 and page.index('id="validity"') < page.index("<h2>Warnings</h2>")
    assert "NOT A MEASUREMENT" in page and "synthetic_fallback" in page

    r = CliRunner().invoke(main, ["compare", str(runs[0]), str(runs[1]), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "every run is synthetic" in r.output
    # A hardware run (its recorded verdict says so) against a synthetic one: refused.
    hw = json.loads((runs[1] / "run.json").read_text())
    hw["validity"] = {"verdict": "measured", "reasons": []}
    (runs[1] / "run.json").write_text(json.dumps(hw))
    r = CliRunner().invoke(main, ["compare", str(runs[0]), str(runs[1])])
    assert r.exit_code == 2 and "cannot be compared" in r.output


# --- 5: an emulator is not hardware ---------------------------------------------------------------------------


def test_an_emulated_nvml_library_makes_the_run_synthetic(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with openai_server(token_gap_s=0.003) as server:
        r = CliRunner().invoke(main, bench(server.url, out, sources="nvml"))
        assert r.exit_code == 5, r.output  # synthetic, and not accepted without --allow-degraded
        r2 = CliRunner().invoke(main, bench(server.url, tmp_path / "ok", "--allow-degraded", sources="nvml"))
        assert r2.exit_code == 0, r2.output  # the emulator was chosen through an override: accepted
    run = json.loads((out / "run.json").read_text())
    (emulated,) = [x for x in run["validity"]["reasons"] if x["code"] == "emulated_source"]
    assert emulated["verdict"] == "synthetic" and "FASTMETER_NVML_LIBRARY" in emulated["message"]
    fp = run["fingerprint"]
    assert "FASTMETER_NVML_LIBRARY" in fp["controlled"]["overrides"]
    assert fp["observed"]["overrides"]["FASTMETER_NVML_LIBRARY"] == str(fake_nvml.library)


# --- 6: bunched streams ---------------------------------------------------------------------------------------


def test_bunched_streams_are_left_out_of_itl_and_degrade_the_run(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    from tests.emulators.fake_server import FakeServer, Request, Script
    from tests.emulators.openai_server import completion_script, info_reply

    counter = {"n": 0}

    def handler(req: Request) -> Script:  # every other request arrives in one burst
        if (info := info_reply(req, None)) is not None:
            return info
        counter["n"] += 1
        return completion_script(8, 0.0 if counter["n"] % 2 else 0.006, 0.005)

    out = tmp_path / "run"
    with FakeServer(handler) as server:
        r = CliRunner().invoke(
            main, bench(server.url, out, "--allow-degraded", sources="nvml", concurrency="1", **{"num-requests": "10"})
        )
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    s = run["summary"]
    assert s["bunched_requests"] >= 4 and s["streamed_requests"] >= 4
    assert "bunched_streams" in codes(run["validity"])
    share = s["bunched_requests"] / (s["bunched_requests"] + s["streamed_requests"])
    assert f"{s['bunched_requests']} ({share:.0%}) arrived bunched and are left out" in r.output
    # The ITL percentiles are the streamed requests' 6 ms gaps, not the bunched ones' microseconds.
    assert s["itl_ms_p50"] >= 5.0
    assert not math.isnan(s["itl_ms_p99"])
    # The split is marked client-side; a bunched response has none (its first token was read with its last).
    assert run["attribution"]["prefill_split"]["first_token"] == "client_side"
    req = read(out / "requests.arrow").to_pandas()
    req = req[~req.warmup]
    chunks = read(out / "chunks.arrow").to_pandas()
    spread = chunks.groupby("request_id", observed=True).t_ns.agg(lambda t: t.max() - t.min())
    bunched = req.request_id.map(spread) <= 1_000_000
    assert bunched.sum() == s["bunched_requests"]
    assert req[bunched].prefill_energy_j.isna().all() and req[bunched].decode_energy_j.isna().all()
    assert (req[bunched].energy_j > 0).all()
    assert (req[~bunched].prefill_energy_j > 0).all() and (req[~bunched].decode_energy_j > 0).all()


# --- 7: server-side deltas exclude warm-up --------------------------------------------------------------------


def test_server_metric_deltas_start_after_warm_up(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    from tests.emulators.fake_server import FakeServer, Request, Script, Send
    from tests.emulators.openai_server import completion_script, info_reply

    arrived = {"n": 0}

    def handler(req: Request) -> Script:
        if req.method == "GET" and req.path == "/metrics":
            text = f"# TYPE vllm:request_arrivals counter\nvllm:request_arrivals_total {arrived['n']}\n"
            return Script([Send(text.encode())], content_type="text/plain", chunked=False)
        if (info := info_reply(req, None)) is not None:
            return info
        arrived["n"] += 1  # counted on arrival: warm-ups all arrive before the baseline scrape
        return completion_script(4, 0.002, 0.002)

    out = tmp_path / "run"
    with FakeServer(handler) as server:
        r = CliRunner().invoke(
            main,
            bench(
                server.url,
                out,
                "--allow-degraded",
                sources="nvml",
                **{
                    "metrics-enabled": "true",
                    "metrics-interval-s": "0.05",
                    "warmup-requests": "3",
                    "num-requests": "6",
                },
            ),
        )
    assert r.exit_code == 0, r.output
    sm = json.loads((out / "run.json").read_text())["server_metrics"]
    assert sm["deltas"] == {"vllm:request_arrivals_total": 6.0}  # the 3 warm-up requests are not in it
    assert sm["baseline_t_ns"] < sm["end_t_ns"]
