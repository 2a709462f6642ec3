"""`fastmeter trace` and `fastmeter show` as users run them: CliRunner and real processes with real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.io import read_trace

FASTMETER = [sys.executable, "-m", "fastmeter.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FASTMETER, *args], capture_output=True, text=True, timeout=60)


def start_trace(out: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*FASTMETER, "trace", "--source", "synthetic", "-o", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until at least one flush has reached the file.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
        time.sleep(0.05)
    assert out.exists(), proc.stderr.read() if proc.poll() is not None else "no output file"
    return proc


@pytest.mark.parametrize("suffix", [".arrow", ".parquet"])
def test_trace_for_a_duration_writes_a_complete_file(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"t{suffix}"
    r = CliRunner().invoke(
        main, ["trace", "--source", "synthetic", "--duration", "0.4", "--period-us", "2000", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    t = read_trace(out)
    assert t.complete and t.channels == ["synthetic0"]
    assert 100 < t.table.num_rows < 400  # 0.4 s at 500 Hz, plus the start and stop polls
    meta = t.metadata
    assert meta["format_version"] == 1 and meta["sampler"]["period_us"] == 2000
    assert meta["sampler_stats"]["dropped"] == 0
    assert meta["fingerprint"]["schema_version"] == 1
    assert meta["realtime_anchor"]["realtime_ns"] > meta["realtime_anchor"]["monotonic_ns"]
    assert not (tmp_path / "t.partial.arrow").exists()
    # Energy in the file equals the synthetic wave's integral: 100 W + 50 W sine over ~0.4 s.
    e = t.table.column("energy_j").to_numpy()
    dt_s = (t.table.column("t_ns").to_numpy()[-1] - t.table.column("t_ns").to_numpy()[0]) * 1e-9
    assert 50 * dt_s <= e[-1] - e[0] <= 150 * dt_s


def test_files_read_in_pandas_and_duckdb(tmp_path: Path) -> None:
    for suffix in (".arrow", ".parquet"):
        r = CliRunner().invoke(
            main, ["trace", "--source", "synthetic", "--duration", "0.2", "-o", str(tmp_path / f"t{suffix}")]
        )
        assert r.exit_code == 0, r.output
    with pa.OSFile(str(tmp_path / "t.arrow")) as f:
        table = pa.ipc.open_file(f).read_all()
    df = pd.read_feather(tmp_path / "t.arrow")
    assert len(df) == table.num_rows and list(df.columns) == ["t_ns", "channel", "energy_j", "power_w"]
    assert (df["channel"] == "synthetic0").all()
    con = duckdb.connect()
    con.register("samples", table)
    assert con.execute("select count(*) from samples").fetchone()[0] == table.num_rows
    n_pq, max_e = con.execute(
        f"select count(*), max(energy_j) from read_parquet('{tmp_path / 't.parquet'}')"
    ).fetchone()
    assert n_pq > 100 and max_e > 0


def test_trace_of_a_command_returns_its_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "cmd.arrow"
    r = run_cli(
        "trace",
        "--source",
        "synthetic",
        "-o",
        str(out),
        "--",
        sys.executable,
        "-c",
        "import time, sys; time.sleep(0.3); sys.exit(3)",
    )
    assert r.returncode == 3, r.stderr
    t = read_trace(out)
    assert t.complete and t.metadata["exit_code"] == 3
    assert t.metadata["command"][0] == sys.executable
    duration_s = (t.table.column("t_ns").to_numpy()[-1] - t.table.column("t_ns").to_numpy()[0]) * 1e-9
    assert duration_s >= 0.3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly_with_a_complete_file(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "sig.arrow"
    proc = start_trace(out)
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    t = read_trace(out)
    assert t.complete and t.metadata["stopped_by_signal"] == signum
    assert t.table.num_rows > 100


def test_sigkill_leaves_a_readable_file_up_to_the_last_flush(tmp_path: Path) -> None:
    out = tmp_path / "killed.arrow"
    proc = start_trace(out)
    time.sleep(1.2)
    proc.kill()
    proc.communicate(timeout=10)
    t = read_trace(out)
    assert not t.complete
    assert t.table.num_rows >= 500  # at least the first flush at 1 kHz
    assert t.metadata["sampler"]["sources"] == ["synthetic"]
    r = run_cli("show", str(out))
    assert r.returncode == 0 and "INCOMPLETE" in r.stdout


def test_idle_baseline_gives_net_energy(tmp_path: Path) -> None:
    out = tmp_path / "idle.arrow"
    r = CliRunner().invoke(
        main, ["trace", "--source", "synthetic", "--duration", "0.3", "--idle-baseline", "0.2", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    t = read_trace(out)
    idle_w = t.metadata["idle_baseline_w"]["synthetic0"]
    assert 50 <= idle_w <= 150  # the synthetic wave swings between 50 W and 150 W
    shown = CliRunner().invoke(main, ["show", str(out)])
    assert shown.exit_code == 0
    row = next(line for line in shown.output.splitlines() if line.startswith("synthetic0"))
    energy, avg, peak, idle, net = (float(x) for x in row.split()[1:])
    assert idle == pytest.approx(idle_w, abs=0.01)
    assert net == pytest.approx(energy - idle_w * energy / avg, rel=1e-3, abs=1e-3)
    # the sampler's own health over the run: its memory and how fast it answered (the idle baseline queried it)
    stats = t.metadata["sampler_stats"]
    memory = next(line for line in shown.output.splitlines() if line.strip().startswith("memory"))
    assert f"RSS {stats['rss_bytes'] / 2**20:.0f} MiB" in memory and f"{stats['knots']} knots" in memory
    assert stats["queries"] > 0 and f"{stats['queries']} queries p50" in memory
    assert f"history {stats['history_disk_bytes'] / 2**20:.1f} MiB on disk" in memory


def test_show_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.arrow"
    assert (
        CliRunner().invoke(main, ["trace", "--source", "synthetic", "--duration", "0.2", "-o", str(out)]).exit_code == 0
    )
    png = tmp_path / "p.png"
    r = CliRunner().invoke(main, ["show", str(out), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trace", "--source", "synthetic", "-o", "x.csv", "--duration", "0.1"], "must end in one of .arrow, .parquet"),
        (["trace", "--source", "synthetic", "--period-us", "5", "--duration", "0.1"], "period_us=5 is out of range"),
        (["trace", "--source", "bogus"], "'bogus' is not one of"),
        (["trace", "--source", "synthetic", "-o", "/nonexistent-dir/x.arrow"], "does not exist"),
    ],
)
def test_bad_flags_give_one_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_show_rejects_unreadable_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.arrow"
    junk.write_bytes(b"not arrow at all")
    r = CliRunner().invoke(main, ["show", str(junk)])
    assert r.exit_code == 2 and "not a readable fastmeter trace" in r.output
    r = CliRunner().invoke(main, ["show", str(tmp_path / "missing.arrow")])
    assert r.exit_code == 2 and "no trace file" in r.output
    plain = tmp_path / "plain.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), str(plain))
    r = CliRunner().invoke(main, ["show", str(plain)])
    assert r.exit_code == 2 and "not a fastmeter trace" in r.output


def test_sources_lists_every_source_with_reasons(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(tmp_path / "nope.so"))
    r = CliRunner().invoke(main, ["sources", "--seconds", "0.1"])
    assert r.exit_code == 0, r.output
    for name in ("nvml", "rapl", "rapl-msr", "synthetic"):
        assert name in r.output
    assert "FASTMETER_NVML_LIBRARY" in r.output
    assert "unavailable (unavailable)" not in r.output
    nvml = next(ln for ln in r.output.splitlines() if ln.startswith("nvml "))
    assert nvml.split(None, 1)[1] == "not available on this machine"
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("synthetic0"))
    assert 50 <= float(line.split()[1]) <= 150


def test_unreadable_rapl_is_named_with_its_fix_not_silently_dropped() -> None:
    """As a non-root user (the child drops to nobody after importing), RAPL counters are root-only: "auto" falls
    back to what it can read and names the source it left out with the fix, which trace and bench print."""
    from tests.emulators.powercap import FakePowercap
    from tests.emulators.unprivileged import NOBODY, world_readable_dir

    base = world_readable_dir()
    fake = FakePowercap(base / "powercap")
    fake.deny_energy_uj(fake.add_package(0, energy_uj=1000))
    child = (
        "import json, os\nimport fastmeter\nfrom fastmeter.sources import permission_warnings\n"
        f"if os.geteuid() == 0:\n    os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "m = fastmeter.Meter('auto')\n"
        "print(json.dumps([m.sources, permission_warnings(m.skipped_sources)]))\n"
    )
    env = {**os.environ, "FASTMETER_POWERCAP_ROOT": str(fake.root), "FASTMETER_MSR_ROOT": str(base / "no-msr"),
           "FASTMETER_NVML_LIBRARY": str(base / "no-nvml.so")}
    r = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    sources, warnings = json.loads(r.stdout)
    assert sources == ["synthetic"]
    assert len(warnings) == 1 and warnings[0].startswith("rapl is not measured: ")
    assert "energy_uj" in warnings[0] and "chmod" in warnings[0]
