"""`fastmeter bench` under interruption and bad input, as a real process against a scripted server: exit codes
130/143 with in-flight requests closed at the signal and attributed, nothing lost to SIGKILL but the last flush,
input validated before the run directory exists, one rule for existing directories, and net energy that adds up."""

from __future__ import annotations

import json
import math
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.io import read_trace
from fastmeter.io.stream import read_stream_batches
from tests.emulators.openai_server import openai_server
from tests.integration.test_bench_ground_truth import bench_args

FASTMETER = [sys.executable, "-m", "fastmeter.cli"]
SLOW = {"token_gap_s": 0.05, "prefill_s": 0.02}  # 12 tokens: ~0.6 s per request


def synthetic_args(url: str, out: Path, **extra: str) -> list[str]:
    return bench_args(url, out, sources="synthetic", **{"num-requests": "60", **extra})


def read_any(path: Path) -> pa.Table:
    """A finished Arrow IPC file, or the stream a killed run left."""
    with pa.OSFile(str(path)) as f:
        if f.read(6) == b"ARROW1":
            return pa.ipc.open_file(pa.OSFile(str(path))).read_all()
    schema, batches = read_stream_batches(path)
    return pa.Table.from_batches(list(batches), schema=schema)


def wait_until(cond, proc: subprocess.Popen[str]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.05)


def streamed_requests(out: Path) -> int:
    try:
        return read_any(out / "requests.arrow").num_rows
    except (FileNotFoundError, pa.ArrowInvalid):  # not created yet, or its schema not yet flushed
        return 0


@contextmanager
def bench_process(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*FASTMETER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_exits_128_plus_n_with_in_flight_requests_cancelled_and_attributed(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "run"
    with openai_server(**SLOW) as server, bench_process(synthetic_args(server.url, out)) as proc:
        wait_until(lambda: streamed_requests(out) >= 5, proc)  # 2 warm-ups and some measured ones are done
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] and run["interrupted_by_signal"] == signum
    req = read_any(out / "requests.arrow").to_pandas()
    measured = req[~req.warmup]
    cancelled = measured[measured.status == "cancelled"]
    sent = cancelled[cancelled.send_ns.notna()]
    assert len(sent) >= 1 and (sent.end_ns == run["span_ns"][1]).all()  # closed at the interrupt instant
    assert (sent.energy_j > 0).all()  # and attributed
    assert (measured.status.isin(["ok", "cancelled"])).all()
    a = run["attribution"]
    assert math.fsum(measured.energy_j.dropna()) == pytest.approx(a["requests_j"], rel=1e-12)
    assert a["requests_j"] + a["idle_j"] == pytest.approx(a["total_j"], rel=1e-12)
    assert run["summary"]["requests_ok"] == int((measured.status == "ok").sum())
    chunks = read_any(out / "chunks.arrow").to_pandas()
    per_request = chunks.groupby("request_id").size()
    assert all(per_request.get(rid, 0) == n for rid, n in zip(req.request_id, req.n_chunks))


def test_a_second_signal_while_writing_does_not_tear_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with openai_server(**SLOW) as server, bench_process(synthetic_args(server.url, out)) as proc:
        wait_until(lambda: streamed_requests(out) >= 3, proc)
        proc.send_signal(signal.SIGINT)
        for _ in range(5):  # impatient Ctrl-Cs while it stops and writes
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    # 130, or death by SIGINT when a last Ctrl-C lands after everything was written: a shell shows 130 for both.
    assert proc.returncode in (128 + signal.SIGINT, -signal.SIGINT), err
    assert "Traceback" not in err
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted_by_signal"] == signal.SIGINT
    for name in ("requests.arrow", "chunks.arrow", "metrics.arrow", "samples.arrow"):  # all finished, none torn
        assert (out / name).read_bytes()[:6] == b"ARROW1", name


def test_sigkill_loses_at_most_the_last_flush(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with openai_server(**SLOW) as server, bench_process(synthetic_args(server.url, out)) as proc:
        wait_until(lambda: streamed_requests(out) >= 6, proc)
        finished = streamed_requests(out)
        proc.kill()
        proc.communicate(timeout=60)
    assert not (out / "run.json").exists()
    req = read_any(out / "requests.arrow").to_pandas()
    assert len(req) >= finished and (req.status == "ok").all() and req.end_ns.notna().all()
    chunks = read_any(out / "chunks.arrow").to_pandas()
    assert len(chunks) == int(req.n_chunks.sum()) == 12 * len(req)
    samples = read_trace(out / "samples.arrow")
    assert not samples.complete
    # The samples cover every streamed request: the trace reaches at least the last flush before the kill.
    assert samples.table.column("t_ns").to_numpy().max() >= req.end_ns.max() - 500_000_000


def _limit_file_size() -> None:
    """In the child: no file may grow past 512 KiB (a few batches of samples at 10 kHz); exceeding it is an error
    (EFBIG), not a fatal signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))


def test_a_full_disk_stops_the_load_and_writes_what_was_measured(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = synthetic_args("", out, **{"period-us": "100", "num-requests": "1000"})
    with openai_server(**SLOW) as server:
        args[args.index("--base-url") + 1] = server.url
        proc = subprocess.Popen(
            [*FASTMETER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limit_file_size
        )
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert len([ln for ln in err.splitlines() if ln.startswith("Error:")]) == 1
    assert "File too large" in err and "Traceback" not in err
    run = json.loads((out / "run.json").read_text())
    req = read_any(out / "requests.arrow").to_pandas()
    assert run["summary"]["requests_ok"] == int(((req.status == "ok") & ~req.warmup).sum()) > 0
    assert (req.status[~req.warmup].isin(["ok", "cancelled"])).all() and len(req) < 1002
    samples = read_trace(out / "samples.arrow")
    assert not samples.complete and samples.table.num_rows > 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.stat().st_size == 0]


def test_a_missing_workload_file_fails_before_the_run_directory_exists(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = bench_args("http://127.0.0.1:9", out, sources="synthetic")
    args += ["--workload-kind", "jsonl", "--workload-path", str(tmp_path / "missing.jsonl")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "missing.jsonl" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_a_run_with_no_successful_request_exits_nonzero_and_keeps_its_records(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with openai_server(fail=lambda i: True) as server:
        r = CliRunner().invoke(main, bench_args(server.url, out, sources="synthetic", **{"num-requests": "4"}))
    assert r.exit_code == 2 and "no request succeeded" in r.output
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["requests_ok"] == 0 and run["summary"]["requests_failed"] == 4
    assert read_any(out / "requests.arrow").num_rows == 6


def test_an_existing_run_directory_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with openai_server() as server:
        args = bench_args(server.url, out, sources="synthetic", **{"num-requests": "3"})
        assert CliRunner().invoke(main, args).exit_code == 0
        first = json.loads((out / "run.json").read_text())["span_ns"]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "--force" in r.output
        assert json.loads((out / "run.json").read_text())["span_ns"] == first
        r = CliRunner().invoke(main, [*args, "--force"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "run.json").read_text())["span_ns"][0] > first[1]


def test_net_energy_adds_up(tmp_path: Path) -> None:
    """Requests' net energy plus the idle time's net energy is the run's net energy, exactly."""
    out = tmp_path / "run"
    with openai_server(token_gap_s=0.004, prefill_s=0.01) as server:
        r = CliRunner().invoke(main, bench_args(server.url, out, sources="synthetic", **{"idle-baseline-s": "0.3"}))
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    s, a = run["summary"], run["attribution"]
    req = read_any(out / "requests.arrow").to_pandas()
    net = req[~req.warmup].net_energy_j.to_numpy()
    assert not np.isnan(net).any()
    assert math.fsum(net) + a["idle_net_energy_j"] == s["net_energy_j"]
    # ... and it is the run's energy above the idle baseline over the span.
    assert s["net_energy_j"] == pytest.approx(s["energy_j"] - s["idle_power_w"] * s["duration_s"], rel=1e-9)
