"""fastmeter launches the server it measures: the scripted server process (tests/servers/scripted_server.py) is
started from [server].launch exactly as vLLM would be, in its own process group, and must be ready-checked,
logged, stopped (with escalation) and caught when it dies."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.emulators.nvml import FakeNvml
from tests.servers.launch_helpers import (
    launched_config,
    process_gone,
    read_json,
    run_bench,
    scripted_launch,
    worker_pid,
    write_config,
)


def test_launched_server_is_measured_logged_and_stopped_with_its_workers(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    cfg, port = launched_config(tmp_path, "--ready-after", "0.5", "--worker", launch_env={"SCRIPTED_FLAG": "on"})
    out = tmp_path / "run"
    r = run_bench(cfg, out, fake_nvml)
    assert r.exit_code == 0, r.output
    run = read_json(out / "run.json")
    assert run["summary"]["requests_ok"] == 6
    record = read_json(out / "launch.json")
    assert record["command"] == scripted_launch(port, "--ready-after", "0.5", "--worker")
    assert record["env_set"] == {"SCRIPTED_FLAG": "on"}
    assert record["ready_s"] >= 0.5  # it answered 503 until then
    assert record["ready_path"] in ("/v1/models", "/health")
    # A Python server dies of SIGTERM (exit status -15); it did not exit on its own.
    assert record["stop"]["signal"] == "SIGTERM" and record["exit_code"] == -15
    assert record["exited_on_its_own"] is False
    log = out / "server.log"
    assert f"listening on 127.0.0.1:{port}" in log.read_text()
    assert "POST /v1/completions" in log.read_text()  # stdout and stderr of the server are captured
    assert process_gone(worker_pid(log)), "the worker that ignores SIGTERM must die with its group"
    launch = run["fingerprint"]["controlled"]["server_launch"]
    assert launch["command"] == record["command"] and launch["env"] == {"SCRIPTED_FLAG": "on"}
    assert run["fingerprint"]["controlled"]["server"]["version"] == "0.0.1-scripted"


def test_server_that_never_becomes_ready_fails_in_bounded_time_with_its_log(
    tmp_path: Path, fake_nvml: FakeNvml
) -> None:
    cfg, port = launched_config(
        tmp_path, "--mode", "never-ready", "--worker", launch_ready_timeout_s=1.5, stop_timeout_s=5.0
    )
    out = tmp_path / "run"
    r = run_bench(cfg, out, fake_nvml)
    assert r.exit_code == 2, r.output
    assert "did not become ready" in r.output and "within 1.5 s" in r.output
    assert f"listening on 127.0.0.1:{port}" in r.output  # the last log lines are in the error
    assert "Traceback" not in r.output
    assert not out.exists()  # nothing was measured, so nothing was created
    log = Path(r.output.split("last lines of ")[1].split(":\n")[0])
    assert process_gone(worker_pid(log))


def test_server_that_crashes_at_start_reports_its_exit_code_and_error(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    cfg, _ = launched_config(tmp_path, "--mode", "crash-at-start")
    r = run_bench(cfg, tmp_path / "run", fake_nvml)
    assert r.exit_code == 2, r.output
    assert "exited with code 7" in r.output and "cannot allocate the KV cache" in r.output


def test_server_that_exits_mid_run_fails_the_run_and_keeps_what_was_measured(
    tmp_path: Path, fake_nvml: FakeNvml
) -> None:
    cfg, _ = launched_config(tmp_path, "--exit-after", "4", load={"concurrency": 1})  # one at a time: exact counts
    out = tmp_path / "run"
    r = run_bench(cfg, out, fake_nvml)
    assert r.exit_code == 2, r.output
    assert "exited (code 3) during the run" in r.output and "scripted exit after 4 requests" in r.output
    run = read_json(out / "run.json")
    codes = [reason["code"] for reason in run["validity"]["reasons"]]
    assert "server_exited" in codes and run["validity"]["verdict"] == "invalid"
    assert run["summary"]["requests_ok"] == 3  # 1 warm-up + 3 measured answered before the exit
    record = read_json(out / "launch.json")
    assert record["exited_on_its_own"] is True and record["exit_code"] == 3 and record["stop"]["signal"] is None


def test_server_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    cfg, _ = launched_config(tmp_path, "--mode", "ignore-term", stop_timeout_s=0.5)
    out = tmp_path / "run"
    r = run_bench(cfg, out, fake_nvml)
    assert r.exit_code == 0, r.output
    record = read_json(out / "launch.json")
    assert record["stop"]["signal"] == "SIGKILL" and record["exit_code"] == -9
    assert record["stop"]["stop_s"] >= 0.5
    assert "got SIGTERM and ignores it" in (out / "server.log").read_text()


def test_a_port_already_answering_is_refused_before_launch(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:  # listening: connections are accepted by the kernel
        port = other.getsockname()[1]
        cfg = write_config(
            tmp_path / "b.toml", {"base_url": f"http://127.0.0.1:{port}", "launch": scripted_launch(port)}
        )
        r = run_bench(cfg, tmp_path / "run", fake_nvml)
    assert r.exit_code == 2 and "something already listens at" in r.output


def test_launch_and_a_remote_base_url_are_refused(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    cfg = write_config(tmp_path / "b.toml", {"base_url": "http://10.1.2.3:8000", "launch": [sys.executable]})
    r = run_bench(cfg, tmp_path / "run", fake_nvml)
    assert r.exit_code == 2 and "base_url is on 10.1.2.3" in r.output


@pytest.mark.parametrize("launch", [[], ["/nonexistent/server-binary"]])
def test_a_bad_launch_command_is_one_clear_error(tmp_path: Path, fake_nvml: FakeNvml, launch: list[str]) -> None:
    cfg = write_config(tmp_path / "b.toml", {"base_url": "http://127.0.0.1:9", "launch": launch})
    r = run_bench(cfg, tmp_path / "run", fake_nvml)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "[server].launch" in r.output, r.output


def test_a_non_empty_run_directory_is_refused_before_the_server_starts(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    cfg, _ = launched_config(tmp_path, "--worker")
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    r = run_bench(cfg, out, fake_nvml)
    assert r.exit_code == 2 and "already exists and is not empty" in r.output
    assert "starting the server" not in r.output


def test_launch_and_container_together_are_refused(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    cfg = write_config(
        tmp_path / "b.toml",
        {"base_url": "http://127.0.0.1:9", "launch": [sys.executable]},
        extra='[server.container]\nimage = "img"\n',
    )
    r = run_bench(cfg, tmp_path / "run", fake_nvml)
    assert r.exit_code == 2 and "set either [server].launch or [server.container], not both" in r.output
