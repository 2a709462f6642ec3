"""SIGTERM to `fastmeter bench` never orphans the server it launched: neither while the server is loading nor
while the load runs. bench runs as a real process here (signals are delivered to it)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.emulators.nvml import Constant, FakeNvml, GpuSpec
from tests.servers.launch_helpers import (
    launched_config,
    process_gone,
    read_json,
    scripted_launch,
    toml_value,
    worker_pid,
    write_config,
)
from tests.servers.vllm_server import free_loopback_port

WAIT_S = 60.0  # generous bounds for a loaded 2-core machine; the tests wait on events, never assert durations


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for(what: str, condition) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _bench(cfg: Path, out: Path, fake_nvml: FakeNvml) -> subprocess.Popen[str]:
    fake_nvml.configure([GpuSpec(waveform=Constant(150.0))])
    return subprocess.Popen(
        [sys.executable, "-m", "fastmeter.cli", "bench", str(cfg), "-o", str(out), "--allow-degraded"],
        env=fake_nvml.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigterm_while_the_server_loads_stops_it(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    cfg, port = launched_config(tmp_path, "--mode", "never-ready")
    bench = _bench(cfg, tmp_path / "run", fake_nvml)
    _wait_for("the server to listen", lambda: _answers(port))
    bench.send_signal(signal.SIGTERM)
    output, _ = bench.communicate(timeout=WAIT_S)
    assert bench.returncode == 143 and "terminated by signal 15; the launched server was stopped" in output, output
    assert not _answers(port)


def test_sigterm_during_the_load_writes_the_run_and_stops_the_server(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    flag = tmp_path / "load-running"
    cfg, port = launched_config(
        tmp_path, "--token-gap-ms", "50", "--worker", "--touch-on-request", str(flag), load={"num_requests": 1000}
    )
    out = tmp_path / "run"
    bench = _bench(cfg, out, fake_nvml)
    _wait_for("the load to start", flag.exists)
    bench.send_signal(signal.SIGTERM)
    output, _ = bench.communicate(timeout=WAIT_S)
    assert bench.returncode == 143, output
    assert read_json(out / "run.json")["interrupted_by_signal"] == signal.SIGTERM
    record = read_json(out / "launch.json")
    assert record["stop"]["signal"] == "SIGTERM" and record["exited_on_its_own"] is False
    assert not _answers(port) and process_gone(worker_pid(out / "server.log"))


def test_a_killed_bench_takes_its_server_down(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    """SIGKILL cannot be caught: the server learns of it from the kernel (its parent-death signal is SIGTERM)."""
    cfg, port = launched_config(tmp_path, "--mode", "never-ready")
    bench = _bench(cfg, tmp_path / "run", fake_nvml)
    _wait_for("the server to listen", lambda: _answers(port))
    bench.kill()
    bench.communicate(timeout=WAIT_S)
    _wait_for("the server to stop", lambda: not _answers(port))


def test_sigterm_in_a_matrix_writes_what_ran_and_stops_the_server(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    flag = tmp_path / "load-running"
    port = free_loopback_port()
    launch = scripted_launch(port, "--token-gap-ms", "50", "--touch-on-request", str(flag))
    cfg = write_config(tmp_path / "m.toml", {"base_url": "http://127.0.0.1:1"}, load={"num_requests": 1000})
    cfg.write_text(
        cfg.read_text() + "[matrix]\nconcurrency = [1, 2]\nbaseline_s = 0.1\n\n[[matrix.servers]]\n"
        f'name = "a"\nbase_url = "http://127.0.0.1:{port}"\nlaunch = {toml_value(launch)}\n'
    )
    out = tmp_path / "m"
    bench = _bench(cfg, out, fake_nvml)
    _wait_for("the load to start", flag.exists)
    bench.send_signal(signal.SIGTERM)
    output, _ = bench.communicate(timeout=WAIT_S)
    assert bench.returncode == 143, output
    doc = read_json(out / "matrix.json")
    assert doc["interrupted_by_signal"] == signal.SIGTERM and len(doc["cells"]) == 1
    assert read_json(out / doc["cells"][0]["dir"] / "run.json")["interrupted_by_signal"] == signal.SIGTERM
    assert read_json(out / "a" / "server-r1" / "launch.json")["stop"]["signal"] == "SIGTERM"
    assert not _answers(port)
