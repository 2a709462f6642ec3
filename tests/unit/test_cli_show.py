"""`fastmeter show` on what a newcomer hands it: a run directory, a short trace, a traced command with no exit code,
damaged metadata, and --plot without matplotlib (checked before anything is printed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.io.schema import METADATA_KEY
from fastmeter.meter import SAMPLES_SCHEMA


def write_trace(path: Path, t_ns: list[int], energy_j: list[float], power_w: list[float | None],
                meta: dict[str, Any] | bytes, columns: dict[str, pa.Array] | None = None) -> Path:
    n = len(t_ns)
    table = pa.Table.from_arrays([pa.array(t_ns, pa.int64()), pa.array(["gpu0"] * n).dictionary_encode(),
                                  pa.array(energy_j), pa.array(power_w, pa.float64())], schema=SAMPLES_SCHEMA)
    if columns is not None:
        table = pa.table(columns)
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    table = table.replace_schema_metadata({METADATA_KEY: raw})
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    return path


def show(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["show", *args])
    return r.exit_code, r.stdout, r.stderr


def test_three_samples_average_never_above_peak_and_no_exit_code_none(tmp_path: Path) -> None:
    # NVML reports a 1-second average as power: low readings while the counter climbs fast
    p = write_trace(tmp_path / "t.arrow", [0, 100_000_000, 200_000_000], [0.0, 30.0, 50.0], [80.0, 90.0, 95.0],
                    {"complete": True, "command": ["python", "train.py"], "exit_code": None,
                     "stopped_by_signal": 2})
    code, out, _ = show(str(p))
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.startswith("gpu0"))
    energy, avg, peak = (float(x) for x in row.split()[1:4])
    assert energy == pytest.approx(50.0) and avg == pytest.approx(250.0)
    assert peak >= avg
    assert peak == pytest.approx(300.0)  # the steepest step of the energy curve: 30 J in 0.1 s
    assert "None" not in out and "exit code not recorded (the trace was stopped by signal 2)" in out


@pytest.mark.parametrize(("meta", "columns", "message"), [
    (b"{not json", None, "the fastmeter metadata is not valid JSON"),
    ({"sampler_stats": {"rate_hz": "fast"}}, None, "'rate_hz' must be a number or null"),
    ({"command": "python x.py"}, None, "'command' must be a list of strings or null"),
    ({"complete": True}, {"t_ns": pa.array([1, 2]), "watts": pa.array([1.0, 2.0])},
     "lacks columns channel, energy_j, power_w"),
    ({"complete": True}, {"t_ns": pa.array(["a", "b"]), "channel": pa.array(["x", "x"]),
                          "energy_j": pa.array([1.0, 2.0]), "power_w": pa.array([1.0, 2.0])},
     "column 't_ns' must hold integers"),
])
def test_damaged_trace_is_one_clear_error(tmp_path: Path, meta: Any, columns: Any, message: str) -> None:
    p = write_trace(tmp_path / "bad.arrow", [0, 1], [0.0, 1.0], [None, None], meta, columns)
    code, out, err = show(str(p))
    assert code == 2 and out == ""
    assert err.startswith(f"Error: {p}") and message in err and len(err.strip().splitlines()) == 1


def test_show_on_a_run_directory_points_to_its_trace_and_report(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_trace(run / "samples.arrow", [0, 1], [0.0, 1.0], [None, None], {"complete": True})
    (run / "run.json").write_text("{}")
    code, _, err = show(str(run))
    assert code == 2
    assert f"`fastmeter show {run / 'samples.arrow'}` for its power trace" in err
    assert f"`fastmeter report {run}`" in err


def test_plot_without_matplotlib_fails_before_printing(tmp_path: Path) -> None:
    """A Python whose `import matplotlib` fails, as where it is not installed (a package that raises ImportError
    placed first on the path)."""
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("No module named matplotlib")\n')
    p = write_trace(tmp_path / "t.arrow", [0, 10**9], [0.0, 5.0], [None, None], {"complete": True})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "fastmeter.cli", "show", str(p), "--plot", str(tmp_path / "p.png")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2
    assert "duration" not in done.stdout and "gpu0" not in done.stdout  # the table was not printed first
    assert "--plot needs matplotlib" in done.stderr and "Traceback" not in done.stderr
