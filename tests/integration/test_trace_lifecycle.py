"""`fastmeter trace -- CMD` under faults, as real processes with real signals: process groups, signal forwarding
and escalation, `--duration` with a command, a full disk (file size limit), a read-only directory, existing
outputs, and rotated parts read back as one trace."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.io import read_trace
from fastmeter.io.stream import read_stream_batches
from tests.emulators.unprivileged import NOBODY, world_readable_dir

FASTMETER = [sys.executable, "-m", "fastmeter.cli"]
# A command that ignores SIGINT and SIGTERM, says so in a file, then sleeps: only SIGKILL ends it.
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1], 'w').write('ready')\n"
    "time.sleep(120)\n"
)


def trace_proc(out: Path, *args: str, preexec_fn=None) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [*FASTMETER, "trace", "--source", "synthetic", "-o", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until `path` has content: the shell creates the file before `echo` writes to it."""
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_bytes().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running (not a zombie waiting for a reaper that may never come in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_sigterm_reaches_the_whole_process_group(tmp_path: Path) -> None:
    out, pidfile = tmp_path / "t.arrow", tmp_path / "grandchild.pid"
    proc = trace_proc(out, "--", "sh", "-c", f"sleep 37 & echo $! > {pidfile}; wait")
    wait_for(pidfile, proc)
    grandchild = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not alive(grandchild)
    t = read_trace(out)
    assert t.complete and t.metadata["stopped_by"] == "signal" and t.metadata["signals_sent"] == [signal.SIGTERM]


def test_a_command_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    out, ready = tmp_path / "t.arrow", tmp_path / "ready"
    proc = trace_proc(out, "--grace", "0.3", "--", sys.executable, "-c", STUBBORN, str(ready))
    wait_for(ready, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL, err
    t = read_trace(out)
    assert t.complete and t.metadata["signals_sent"] == [signal.SIGTERM, signal.SIGKILL]
    assert t.metadata["exit_code"] == 128 + signal.SIGKILL


def test_each_further_signal_escalates_at_once(tmp_path: Path) -> None:
    """With a grace period far longer than the test, only the user's signals can move the ladder on."""
    out, ready = tmp_path / "t.arrow", tmp_path / "ready"
    proc = trace_proc(out, "--grace", "600", "--", sys.executable, "-c", STUBBORN, str(ready))
    wait_for(ready, proc)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL, err
    t = read_trace(out)
    assert t.metadata["signals_sent"] == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    assert t.metadata["stopped_by_signal"] == signal.SIGINT


def test_duration_stops_the_command_and_traces_until_it_exits(tmp_path: Path) -> None:
    out = tmp_path / "t.arrow"
    r = subprocess.run(
        [*FASTMETER, "trace", "--source", "synthetic", "-o", str(out), "--duration", "0.5", "--", "sleep", "30"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    t = read_trace(out)
    assert t.complete and t.metadata["stopped_by"] == "duration"
    t_ns = t.table.column("t_ns").to_numpy()
    assert (t_ns[-1] - t_ns[0]) * 1e-9 >= 0.5


def test_flushing_goes_on_while_a_stopped_command_takes_its_grace_period(tmp_path: Path) -> None:
    """Stopped at 0.3 s, the command ignores SIGTERM, so SIGKILL comes only after the 0.6 s grace period: the trace
    covers all of that, not just the duration."""
    out, ready = tmp_path / "t.arrow", tmp_path / "ready"
    r = subprocess.run(
        [
            *FASTMETER,
            "trace",
            "--source",
            "synthetic",
            "-o",
            str(out),
            "--duration",
            "0.3",
            "--grace",
            "0.6",
            "--",
            sys.executable,
            "-c",
            STUBBORN,
            str(ready),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 128 + signal.SIGKILL, r.stderr
    t = read_trace(out)
    assert t.complete and t.metadata["signals_sent"] == [signal.SIGTERM, signal.SIGKILL]
    t_ns = t.table.column("t_ns").to_numpy()
    assert (t_ns[-1] - t_ns[0]) * 1e-9 >= 0.3 + 0.6


@pytest.mark.parametrize(
    ("flag", "value"), [("--duration", "nan"), ("--duration", "inf"), ("--grace", "-1"), ("--idle-baseline", "nan")]
)
def test_non_finite_seconds_are_refused(tmp_path: Path, flag: str, value: str) -> None:
    r = CliRunner().invoke(main, ["trace", "--source", "synthetic", "-o", str(tmp_path / "t.arrow"), flag, value])
    assert r.exit_code == 2 and ("not a finite number" in r.output or "not in the range" in r.output)
    assert not (tmp_path / "t.arrow").exists()


def test_a_command_that_does_not_exist_fails_before_recording(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["trace", "--source", "synthetic", "-o", str(tmp_path / "t.arrow"), "--", "no-such-command-fastmeter"]
    )
    assert r.exit_code == 2 and "cannot run 'no-such-command-fastmeter'" in r.output
    assert not (tmp_path / "t.arrow").exists()


def _limit_file_size() -> None:
    """In the child: files may not grow past 512 KiB (a few batches of samples at 10 kHz), and exceeding it is an
    error (EFBIG), not a fatal signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))


@pytest.mark.parametrize("suffix", [".arrow", ".parquet"])
def test_full_disk_gives_one_error_stops_the_command_and_keeps_what_was_flushed(tmp_path: Path, suffix: str) -> None:
    out, pidfile = tmp_path / f"t{suffix}", tmp_path / "cmd.pid"
    proc = trace_proc(
        out, "--period-us", "100", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60", preexec_fn=_limit_file_size
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert len(error_lines(err)) == 1 and "File too large" in err and "Traceback" not in err
    assert not alive(int(pidfile.read_text()))
    kept = read_trace(out)  # a .parquet output's stream is read from its .partial.arrow
    assert not kept.complete and kept.table.num_rows > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or p.stat().st_size == 0]


def test_read_only_directory_fails_before_the_command_starts() -> None:
    """As nobody, in a directory owned by root: the output cannot be created."""
    base = world_readable_dir()
    marker = base / "ran"
    child = (
        "import difflib, os, sys\nfrom fastmeter.cli import main\n"  # difflib: click needs it, nobody cannot read it
        f"if os.geteuid() == 0:\n    os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "main(sys.argv[1:])\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            child,
            "trace",
            "--source",
            "synthetic",
            "-o",
            str(base / "t.arrow"),
            "--",
            "touch",
            str(marker),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    if os.geteuid() != 0 and os.access(base, os.W_OK):
        pytest.skip("this user can write the directory")
    assert r.returncode == 2, r.stderr
    assert len(error_lines(r.stderr)) == 1 and "Permission denied" in r.stderr and "Traceback" not in r.stderr
    assert not (base / "t.arrow").exists() and not marker.exists()


def test_existing_output_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "t.arrow"
    args = ["trace", "--source", "synthetic", "--duration", "0.1", "-o", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = read_trace(out).table.column("t_ns").to_numpy()[0]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    assert read_trace(out).table.column("t_ns").to_numpy()[0] == first  # untouched
    r = CliRunner().invoke(main, [*args, "--force"])
    assert r.exit_code == 0, r.output
    assert read_trace(out).table.column("t_ns").to_numpy()[0] > first


def test_a_killed_rotated_parquet_trace_reads_back_up_to_its_last_flush(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    proc = trace_proc(out, "--rotate", "0.3")
    wait_for(tmp_path / "t.0001.parquet", proc)
    proc.kill()
    proc.communicate(timeout=30)
    finished = sorted(tmp_path.glob("t.*.parquet"))
    # The part being written when it died (none if it died between finishing one part and opening the next).
    unfinished = [p for p in tmp_path.glob("t.*.partial.arrow") if p.stat().st_size > 0]
    partial_rows = sum(b.num_rows for p in unfinished for b in read_stream_batches(p)[1])
    t = read_trace(out)
    assert not t.complete and t.metadata["part"] == len(finished) - 1 + len(unfinished)
    assert t.table.num_rows == sum(pq.read_metadata(p).num_rows for p in finished) + partial_rows
    t_ns = t.table.column("t_ns").to_numpy()
    assert (t_ns[1:] >= t_ns[:-1]).all()
    shown = CliRunner().invoke(main, ["show", str(out)])
    assert shown.exit_code == 0 and "INCOMPLETE" in shown.output and f"samples {t.table.num_rows}" in shown.output


def test_rotated_parts_read_back_as_one_trace(tmp_path: Path) -> None:
    out = tmp_path / "t.arrow"
    r = CliRunner().invoke(
        main,
        [
            "trace",
            "--source",
            "synthetic",
            "--duration",
            "1.2",
            "--rotate",
            "0.3",
            "--period-us",
            "500",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    parts = sorted(tmp_path.glob("t.*.arrow"))
    assert len(parts) >= 3 and not out.exists()
    rows = 0
    for i, p in enumerate(parts):
        with pa.OSFile(str(p)) as f:  # each part is a complete Arrow IPC file on its own
            rows += pa.ipc.open_file(f).read_all().num_rows
    whole = read_trace(out)
    assert whole.complete and whole.metadata["parts"] == len(parts)
    assert whole.table.num_rows == rows
    t_ns = whole.table.column("t_ns").to_numpy()
    assert (t_ns[1:] >= t_ns[:-1]).all()
    e = whole.table.column("energy_j").to_numpy()
    assert (e[1:] >= e[:-1]).all()  # one cumulative curve across the part boundaries
    assert read_trace(parts[1]).table.num_rows == rows  # any part opens the whole trace
    shown = CliRunner().invoke(main, ["show", str(out)])
    assert shown.exit_code == 0 and f"samples {rows}" in shown.output
