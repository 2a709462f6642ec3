"""A launched server for the length of a benchmark: checks that nothing else already answers at the base URL,
resolves the container image's identity, starts the server, waits until it is ready, and — whatever happens to
the run — stops it and writes what it did (launch.json) next to the server's log (server.log).

The launch identity (the command or container spec, the variables set and the image ID) is a controlled variable:
bench puts it in the fingerprint, so `compare` refuses two runs of different server builds unless told.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastmeter.bench.run_files import write_run_json
from fastmeter.errors import ConfigError
from fastmeter.launch.container import container_command, inspect_image, stop_command
from fastmeter.launch.process import ServerLaunchError, ServerProcess
from fastmeter.load.config import BenchConfig, ServerConfig
from fastmeter.validity import SERVER_EXIT_NOTICE_SLACK_NS, Reason, Validity, Verdict, combine

LOG_NAME = "server.log"
RECORD_NAME = "launch.json"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_launched(server: ServerConfig) -> bool:
    return server.launch is not None or server.container is not None


def launch_identity(server: ServerConfig) -> dict[str, Any]:
    """What the launch spec says, less what is unique to one launch (the container's name): the controlled part."""
    c = server.container
    return {
        "command": list(server.launch) if server.launch else None,
        "env": dict(server.launch_env or {}),
        "container": None if c is None else {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(c).items()},
    }


def check_launch_config(cfg: BenchConfig) -> None:
    """ConfigError for a launch spec that cannot work, before anything starts."""
    server = cfg.server
    if server.launch is not None and server.container is not None:
        raise ConfigError(f"{cfg.source}: set either [server].launch or [server.container], not both")
    host = urlsplit(server.base_url).hostname
    if host not in _LOOPBACK:
        raise ConfigError(
            f"{cfg.source}: a launched server runs on this machine, but [server].base_url is on "
            f"{host}: set it to http://127.0.0.1:PORT with the port the server listens on"
        )


def _answers(base_url: str) -> bool:
    """Whether something already accepts connections at the URL's host and port."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


class LaunchInterrupted(ServerLaunchError):
    """SIGTERM arrived while fastmeter held the launched server outside a measurement (which handles its own
    signals); the server was stopped. `signum`: for the 128 + N exit status."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}; the launched server was stopped")
        self.signum = signum


@contextmanager
def _sigterm_raises() -> Iterator[Callable[[], None]]:
    """SIGTERM raises while the server is ours, so it is stopped instead of orphaned (its own session outlives us);
    yields a function that re-arms it (a bench run's own signal handling resets SIGTERM to the default)."""

    def handler(signum: int, frame: Any) -> None:
        raise LaunchInterrupted(signum)

    def arm() -> None:
        signal.signal(signal.SIGTERM, handler)

    previous = signal.getsignal(signal.SIGTERM)
    arm()
    try:
        yield arm
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class LaunchedServer:
    """A running server of a launch spec; `record` is what launch.json holds."""

    process: ServerProcess
    identity: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    rearm: Callable[[], None] = lambda: None

    @property
    def exited(self) -> bool:
        return not self.process.alive and not self.process.stopping

    def exit_validity(self, span_ns: tuple[int, int]) -> Validity:
        """Invalid when the server exited on its own before the span's end (the run measured a dead server), the
        exit's stamp allowed SERVER_EXIT_NOTICE_SLACK_NS of lateness."""
        t = self.process.exited_ns
        if t is None or self.process.stopping or t - SERVER_EXIT_NOTICE_SLACK_NS > span_ns[1]:
            return Validity()
        return Validity(
            (
                Reason(
                    "server_exited",
                    f"the launched server exited (code {self.process.exit_code}) during the run",
                    Verdict.INVALID,
                    t_ns=t,
                ),
            )
        )


def _argv(cfg: BenchConfig) -> tuple[list[str], list[str] | None, dict[str, str], dict[str, Any] | None]:
    """(command, stop command or None, variables set, image identity or None)."""
    server, gpus = cfg.server, cfg.bench.gpus
    env = dict(server.launch_env or {})
    c = server.container
    if c is None:
        assert server.launch is not None
        if gpus and "CUDA_VISIBLE_DEVICES" not in env:  # the GPUs the run measures are the GPUs the server gets
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        return list(server.launch), None, env, None
    image = inspect_image(c.engine, c.image)
    name = f"fastmeter-{os.getpid()}-{secrets.token_hex(4)}"
    return container_command(c, name, gpus), stop_command(c.engine, name, server.stop_timeout_s), env, image


@contextmanager
def launched_server(
    cfg: BenchConfig, log_dir: Path, notify: Callable[[str, str], None] = lambda k, t: None
) -> Iterator[LaunchedServer]:
    """Start the server of `cfg` (logging to log_dir/server.log), wait until it is ready, yield it; stop it and
    write log_dir/launch.json on the way out, whatever happened."""
    check_launch_config(cfg)
    server = cfg.server
    if _answers(server.base_url):
        raise ConfigError(
            f"something already listens at {server.base_url}: a launched server would not be the one "
            "measured; stop it, or choose another port (in [server].base_url and the launch command)"
        )
    argv, stop_argv, env, image = _argv(cfg)
    log_dir.mkdir(parents=True, exist_ok=True)
    identity = {**launch_identity(server), "env": env, "image_id": image["image_id"] if image else None}
    with _sigterm_raises() as rearm:
        notify("phase", f"starting the server: {' '.join(argv)}")
        process = ServerProcess(argv, env, log_dir / LOG_NAME, stop_argv)
        launched = LaunchedServer(process, identity, rearm=rearm)
        launched.record = {
            "command": argv,
            "env_set": env,
            "image": image,
            "pid": process.pid,
            "started_ns": process.started_ns,
            "log": LOG_NAME,
        }
        try:
            path = process.wait_ready(server.base_url, server.launch_ready_timeout_s)
            ready_ns = time.monotonic_ns()
            launched.record.update(ready_path=path, ready_ns=ready_ns, ready_s=(ready_ns - process.started_ns) * 1e-9)
            notify("phase", f"server ready after {launched.record['ready_s']:.1f} s")
            yield launched
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the stop short
            crashed = launched.exited
            stop = process.stop(server.stop_timeout_s)
            launched.record.update(
                stop=stop, exit_code=process.exit_code, exited_ns=process.exited_ns, exited_on_its_own=crashed
            )
            _write_record(log_dir / RECORD_NAME, launched.record)


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def mark_exit(run_json: Path, launched: LaunchedServer) -> bool:
    """Make a written run invalid when the server died before its span ended; True when it did."""
    run = json.loads(run_json.read_text(encoding="utf-8"))
    span = run.get("span_ns") or [0, 0]
    extra = launched.exit_validity((int(span[0] or 0), int(span[1] or 0)))
    if extra.verdict is Verdict.MEASURED:
        return False
    run["validity"] = combine([Validity.from_dict(run["validity"]), extra]).to_dict()
    write_run_json(run_json.parent, run)
    return True


def move_logs(log_dir: Path, run_dir: Path) -> None:
    """server.log and launch.json into the run directory (they were written beside it while it did not exist)."""
    for name in (LOG_NAME, RECORD_NAME):
        if (log_dir / name).exists():
            shutil.move(str(log_dir / name), str(run_dir / name))
