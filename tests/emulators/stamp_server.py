"""Build and run ``stamp_server.c``: an OpenAI-completions streaming server whose every chunk's text is its own
CLOCK_MONOTONIC send time in ns, so client receive stamps can be checked against the instant each chunk left."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "stamp_server.c"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")


def build_stamp_server(out_dir: Path) -> Path:
    """Compile the server (cached by a hash of its source and flags); returns the executable's path."""
    digest = hashlib.sha256(repr(CFLAGS).encode() + SOURCE.read_bytes()).hexdigest()[:16]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = out_dir / f"stamp_server-{digest}"
    if not exe.exists():
        tmp = out_dir / f"{exe.name}.{os.getpid()}.tmp"
        built = subprocess.run(["gcc", *CFLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"building the stamp server failed:\n{built.stderr}")
        os.replace(tmp, exe)  # atomic: concurrent sessions never see a half-written file
    return exe


class StampServer:
    """``with StampServer(exe, gap_s=0.001) as srv: srv.url``; chunks leave every ``gap_s`` after ``prefill_s``."""

    def __init__(self, exe: Path, gap_s: float, prefill_s: float = 0.0) -> None:
        self._cmd = [str(exe), str(round(gap_s * 1e6)), str(round(prefill_s * 1e6))]
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(10)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


def send_stamps_ns(text: str) -> list[int]:
    """The server's send times, in chunk order, from a record's joined text (" <t_ns>" per chunk)."""
    return [int(w) for w in text.split()]
