"""Helpers for launch tests: a bench config whose [server] launches tests/servers/scripted_server.py, and a CLI
run of it against the NVML emulator."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from fastmeter.cli import main
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec
from tests.servers.vllm_server import free_loopback_port

SCRIPTED = Path(__file__).resolve().parent / "scripted_server.py"


def scripted_launch(port: int, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPTED), "--port", str(port), *extra]


def toml_value(v: Any) -> str:
    return (
        json.dumps(v)
        if not isinstance(v, dict)
        else "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    )


def write_config(path: Path, server: dict[str, Any], load: dict[str, Any] | None = None, extra: str = "") -> Path:
    """A small bench config: random prompts, 8 output tokens, 6 measured requests at concurrency 2."""
    tables = {
        "server": {"kind": "openai", "model": "tiny", **server},
        "workload": {"kind": "random", "input_tokens": 8, "output_tokens": 8},
        "load": {"concurrency": 2, "num_requests": 6, "warmup_requests": 1, **(load or {})},
        "bench": {"sources": ["nvml"], "period_us": 1000},
        "metrics": {"enabled": False},
    }
    text = "".join(
        f"[{t}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in kv.items()) + "\n" for t, kv in tables.items()
    )
    path.write_text(text + extra, encoding="utf-8")
    return path


def run_bench(config: Path, out: Path, fake_nvml: FakeNvml, *args: str) -> Result:
    fake_nvml.configure([GpuSpec(waveform=Constant(150.0))])
    return CliRunner().invoke(main, ["bench", str(config), "-o", str(out), "--allow-degraded", *args])


def launched_config(
    tmp_path: Path, *server_args: str, load: dict[str, Any] | None = None, **server: Any
) -> tuple[Path, int]:
    """A config that launches the scripted server with `server_args` on a free port; `server`: more [server] keys."""
    port = free_loopback_port()
    cfg = write_config(
        tmp_path / "bench.toml",
        {"base_url": f"http://127.0.0.1:{port}", "launch": scripted_launch(port, *server_args), **server},
        load,
    )
    return cfg, port


def process_gone(pid: int, wait_s: float = 10.0) -> bool:
    """True once `pid` no longer runs (gone, or a zombie waiting for its reaper), waiting up to `wait_s`: a SIGKILL
    is delivered asynchronously, so a process signalled a moment ago may still be on its way out."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def worker_pid(log: Path) -> int:
    for line in log.read_text().splitlines():
        if "worker pid" in line:
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no worker pid in {log}")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
