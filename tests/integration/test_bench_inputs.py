"""`fastmeter bench` inputs end to end: a dataset smaller than the run says so (before the run and under its
summary), and a missing or malformed dataset fails before a run directory is created (so the retry is not
blocked by "already exists and is not empty")."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.emulators.openai_server import openai_server


def mtbench_file(path: Path, n: int) -> Path:
    rows = [{"question_id": 81 + i, "category": "writing", "turns": [f"Question {i}?", "Shorter."]} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def args(url: str, out: Path, questions: Path, num_requests: int, warmup: int) -> list[str]:
    # --allow-degraded: the NVML emulator is a chosen synthetic source (emulated_source)
    return ["bench", "-o", str(out), "--allow-degraded",
            "--server-kind", "openai", "--base-url", url, "--model", "tiny",
            "--endpoint", "chat", "--workload-kind", "mtbench", "--workload-path", str(questions), "--max-tokens", "4",
            "--concurrency", "2", "--num-requests", str(num_requests), "--warmup-requests", str(warmup),
            "--sources", "nvml", "--metrics-enabled", "false"]


def test_a_dataset_smaller_than_the_run_is_said(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.05, 0.5))])
    questions = mtbench_file(tmp_path / "question.jsonl", 3)
    with openai_server(token_gap_s=0.002, prefill_s=0.003) as server:
        r = CliRunner().invoke(main, args(server.url, tmp_path / "run", questions, num_requests=8, warmup=1))
    assert r.exit_code == 0, r.output
    note = "the workload has 3 prompts but the run sends 9 requests (warm-up included): prompts repeat, each about 3.0"
    assert r.stderr.count(note) == 2  # before the run, and again after its summary
    with pa.OSFile(str(tmp_path / "run" / "requests.arrow")) as f:
        assert pa.ipc.open_file(f).read_all().num_rows == 9

    with openai_server(token_gap_s=0.002, prefill_s=0.003) as server:
        r = CliRunner().invoke(main, args(server.url, tmp_path / "run2", questions, num_requests=2, warmup=1))
    assert r.exit_code == 0, r.output
    assert "prompts repeat" not in r.output


def test_a_bad_dataset_fails_before_the_run_directory_exists(tmp_path: Path) -> None:
    bad = tmp_path / "question.jsonl"
    bad.write_text('{"question_id": 1, "turns": [1, 2]}\n')
    out = tmp_path / "run"
    for questions in (tmp_path / "missing.jsonl", bad):
        r = CliRunner().invoke(main, args("http://127.0.0.1:9", out, questions, num_requests=4, warmup=0))
        assert r.exit_code == 2 and str(questions) in r.output and "Traceback" not in r.output
        assert not out.exists()


def test_an_unreachable_server_fails_before_the_run_directory_exists(tmp_path: Path) -> None:
    questions = mtbench_file(tmp_path / "question.jsonl", 3)
    out = tmp_path / "run"
    # Port 9 (discard) has no listener here: the readiness check retries until its deadline, then says so.
    r = CliRunner().invoke(main, [*args("http://127.0.0.1:9", out, questions, 2, 0), "--ready-timeout-s", "0.5"])
    assert r.exit_code == 2, r.output
    assert "cannot reach" in r.output and "start the server or fix base_url" in r.output
    assert "Traceback" not in r.output
    assert not out.exists()


@pytest.mark.parametrize(("client", "ran"), [("asyncio", "asyncio"), ("auto", "native")])
def test_requests_record_their_reads_and_bunching(fake_nvml: FakeNvml, tmp_path: Path, client: str, ran: str) -> None:
    fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.05, 0.5))])
    questions = mtbench_file(tmp_path / "question.jsonl", 4)
    with openai_server(token_gap_s=0.002, prefill_s=0.003) as server:
        flags = [*args(server.url, tmp_path / "run", questions, num_requests=4, warmup=0), "--client", client]
        r = CliRunner().invoke(main, flags)
    assert r.exit_code == 0, r.output
    with pa.OSFile(str(tmp_path / "run" / "requests.arrow")) as f:
        table = pa.ipc.open_file(f).read_all()
    # 4 tokens 2 ms apart arrive in separate reads: streamed, not bunched
    assert all(n >= 2 for n in table.column("reads").to_pylist())
    assert table.column("bunched").to_pylist() == [False] * 4
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    lag = run["send_lag_ns"]
    assert set(lag) == {"p50", "p99", "max"} and 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    assert run["load_client"] == ran and run["config"]["load"]["client"] == client
    # The transport thread asks for SCHED_FIFO as the sampler does: both get it, or neither.
    want = run["sampler_stats"]["sched_policy"] if ran == "native" else None
    assert run["load_client_sched_policy"] == want
