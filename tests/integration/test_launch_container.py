"""The container path of a launched server: the exact `docker run` command line, the image identity recorded in
launch.json and the fingerprint, and refusal of images that are absent or not the pinned digest — against a
stand-in `docker` on PATH (tests/servers/stand_in_docker.py) that runs the scripted server as the container would.
A last test runs a real docker engine where one works (marker `docker`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fastmeter.launch.container import container_command
from fastmeter.load.config_types import ContainerConfig
from tests.emulators.nvml import FakeNvml
from tests.servers.launch_helpers import SCRIPTED, read_json, run_bench, toml_value, write_config
from tests.servers.vllm_server import free_loopback_port

STAND_IN = Path(__file__).resolve().parent.parent / "servers" / "stand_in_docker.py"
DIGEST = "sha256:" + "ab" * 32
IMAGE_ID = "sha256:" + "cd" * 32


@pytest.fixture
def stand_in_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker` on PATH is the stand-in; returns the file where it logs each invocation."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STAND_IN}" "$@"\n')
    (bin_dir / "docker").chmod(0o755)
    state = tmp_path / "standin"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "docker-calls.jsonl"))
    monkeypatch.setenv("STANDIN_DIR", str(state))
    image = {"Id": IMAGE_ID, "RepoDigests": [f"example.invalid/vllm@{DIGEST}"]}
    monkeypatch.setenv("STANDIN_IMAGES", json.dumps({f"example.invalid/vllm@{DIGEST}": image}))
    return tmp_path / "docker-calls.jsonl"


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _container_config(tmp_path: Path, port: int, **container: object) -> Path:
    table = {
        "image": f"example.invalid/vllm@{DIGEST}",
        "args": [sys.executable, str(SCRIPTED), "--port", str(port)],
        "env": {"HF_HUB_OFFLINE": "1"},
        "volumes": ["/models:/models:ro"],
        "run_args": ["--shm-size", "1g"],
        **container,
    }
    extra = "[server.container]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
    return write_config(
        tmp_path / "bench.toml", {"base_url": f"http://127.0.0.1:{port}", "stop_timeout_s": 5.0}, extra=extra
    )


def test_container_run_is_the_exact_command_and_the_image_id_is_recorded(
    tmp_path: Path, fake_nvml: FakeNvml, stand_in_docker: Path
) -> None:
    port = free_loopback_port()
    out = tmp_path / "run"
    r = run_bench(_container_config(tmp_path, port), out, fake_nvml, "--gpus", "0")
    assert r.exit_code == 0, r.output
    calls = _calls(stand_in_docker)
    assert calls[0] == ["docker", "image", "inspect", f"example.invalid/vllm@{DIGEST}"]
    run_call = calls[1]
    name = run_call[4]
    assert re.fullmatch(r"fastmeter-\d+-[0-9a-f]{8}", name)
    assert run_call == [
        "docker",
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--gpus",
        "device=0",
        "-e",
        "HF_HUB_OFFLINE=1",
        "-v",
        "/models:/models:ro",
        "--shm-size",
        "1g",
        f"example.invalid/vllm@{DIGEST}",
        sys.executable,
        str(SCRIPTED),
        "--port",
        str(port),
    ]
    assert calls[2] == ["docker", "stop", "-t", "5", name]  # stopped through the engine, by name
    record = read_json(out / "launch.json")
    assert record["command"] == run_call
    assert record["image"] == {
        "engine": "docker",
        "image": f"example.invalid/vllm@{DIGEST}",
        "image_id": IMAGE_ID,
        "repo_digests": [f"example.invalid/vllm@{DIGEST}"],
    }
    launch = read_json(out / "run.json")["fingerprint"]["controlled"]["server_launch"]
    assert launch["image_id"] == IMAGE_ID and launch["container"]["image"] == f"example.invalid/vllm@{DIGEST}"
    assert "name" not in json.dumps(launch)  # the per-launch container name is not a controlled variable


def test_an_image_that_is_not_present_is_refused_without_pulling(
    tmp_path: Path, fake_nvml: FakeNvml, stand_in_docker: Path
) -> None:
    r = run_bench(
        _container_config(tmp_path, free_loopback_port(), image="example.invalid/sglang:v1"),
        tmp_path / "run",
        fake_nvml,
    )
    assert r.exit_code == 2 and "fastmeter never pulls" in r.output and "No such image" in r.output
    assert [c[1] for c in _calls(stand_in_docker)] == ["image"]  # nothing was run or pulled


def test_a_local_image_that_is_not_the_pinned_digest_is_refused(
    tmp_path: Path, fake_nvml: FakeNvml, stand_in_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "sha256:" + "ef" * 32
    pinned = f"example.invalid/vllm@{other}"
    monkeypatch.setenv(
        "STANDIN_IMAGES", json.dumps({pinned: {"Id": IMAGE_ID, "RepoDigests": [f"example.invalid/vllm@{DIGEST}"]}})
    )
    r = run_bench(_container_config(tmp_path, free_loopback_port(), image=pinned), tmp_path / "run", fake_nvml)
    assert r.exit_code == 2 and f"pinned to {other}" in r.output


@pytest.mark.parametrize(
    ("engine", "gpus", "run_gpus", "expected"),
    [
        ("docker", "run", (), ["--gpus", "all"]),
        ("docker", "run", (0, 2), ["--gpus", "device=0,2"]),
        ("docker", "all", (1,), ["--gpus", "all"]),
        ("docker", "none", (1,), []),
        ("podman", "run", (), ["--device", "nvidia.com/gpu=all"]),
        ("podman", "run", (0, "GPU-1a"), ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=GPU-1a"]),
    ],
)
def test_gpu_flags_per_engine(engine: str, gpus: str, run_gpus: tuple[int | str, ...], expected: list[str]) -> None:
    argv = container_command(ContainerConfig(image="img", engine=engine, gpus=gpus), "n", run_gpus)
    assert argv == [engine, "run", "--rm", "--name", "n", "--network", "host", *expected, "img"]


def _docker_works() -> str | None:
    """None when a docker daemon answers here; otherwise why not."""
    if shutil.which("docker") is None:
        return "no docker executable"
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if done.returncode == 0 else f"no docker daemon ({done.stderr.strip()[:120]})"


@pytest.mark.docker
def test_real_docker_runs_measures_and_stops_the_server(tmp_path: Path, fake_nvml: FakeNvml) -> None:
    """A real engine: an image imported from a tiny rootfs (links into /usr, which is bind-mounted read-only from
    the host, so the host's python runs the scripted server inside the container), host network, `docker stop`."""
    why = _docker_works()
    if why is not None:
        if os.environ.get("FASTMETER_REQUIRE_DOCKER") == "1":  # .ci/docker.sh started a daemon: it must answer
            pytest.fail(f"docker does not run here: {why}")
        pytest.skip(f"docker does not run here: {why}")
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        for d in ("usr", "tmp", "srv", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for link, target in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("bin", "usr/bin")):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    tag = f"fastmeter-test/usr-host:{os.getpid()}"
    subprocess.run(["docker", "import", str(rootfs), tag], check=True, capture_output=True, timeout=120)
    try:
        image_id = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", tag], check=True, capture_output=True, text=True
        ).stdout.strip()
        port = free_loopback_port()
        cfg = _container_config(
            tmp_path,
            port,
            image=tag,
            gpus="none",
            env={},
            run_args=["--init"],
            volumes=["/usr:/usr:ro", f"{SCRIPTED.parent}:/srv:ro"],
            args=["/usr/bin/python3", "/srv/scripted_server.py", "--port", str(port)],
        )
        out = tmp_path / "run"
        r = run_bench(cfg, out, fake_nvml)
        assert r.exit_code == 0, r.output
        record = read_json(out / "launch.json")
        assert record["image"]["image_id"] == image_id
        assert record["stop"]["signal"] == "SIGTERM" and record["exited_on_its_own"] is False
        assert "listening on 127.0.0.1" in (out / "server.log").read_text()
        assert read_json(out / "run.json")["summary"]["requests_ok"] == 6
        name = record["command"][4]
        gone = subprocess.run(
            ["docker", "ps", "-a", "-q", "--filter", f"name={name}"], capture_output=True, text=True, check=True
        )
        assert gone.stdout.strip() == ""  # stopped and removed (--rm)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
