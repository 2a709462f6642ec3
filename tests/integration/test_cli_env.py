"""`fastmeter env` end to end: table, JSON, save, check against a baseline (driver, power limit and package
version changes), error handling; GPUs come from the NVML emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastmeter.cli import main

EMULATOR_DIR = Path(__file__).resolve().parents[1] / "emulators"

CONFIG = """\
driver {driver}
cuda_driver 12040
gpu
name NVIDIA H200
uuid GPU-00000000-aaaa
power_limit_w {power_limit_w}
temperature_c 30
"""


class Host:
    """One emulated GPU host whose driver and power limit a test can change between runs."""

    def __init__(self, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.config = tmp_path / "nvml.conf"
        self.tmp_path = tmp_path
        self.set(driver="550.54.15", power_limit_w=700)
        monkeypatch.setenv("FASTMETER_NVML_LIBRARY", str(library))
        monkeypatch.setenv("FAKE_NVML_CONFIG", str(self.config))

    def set(self, *, driver: str, power_limit_w: int) -> None:
        self.config.write_text(CONFIG.format(driver=driver, power_limit_w=power_limit_w))


@pytest.fixture
def host(fake_nvml_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    return Host(fake_nvml_library, tmp_path, monkeypatch)


def _run(*args: str):
    return CliRunner().invoke(main, ["env", *args], catch_exceptions=False)


def test_table_groups_controlled_and_observed(host: Host) -> None:
    result = _run()
    assert result.exit_code == 0
    out = result.stdout
    assert out.index("Controlled (must match between compared runs)") < out.index("Observed (state now)")
    assert "    driver_version" in out and "550.54.15" in out
    assert "devices.0.power_limit_w" in out and "NVIDIA H200" in out
    assert "GPU-00000000-aaaa" in out.split("Observed")[1]


def test_json_output_is_the_fingerprint(host: Host) -> None:
    result = _run("--json")
    assert result.exit_code == 0
    fp = json.loads(result.stdout)
    assert fp["schema_version"] == 1
    assert fp["controlled"]["gpu"]["devices"][0]["power_limit_w"] == 700.0


def test_save_then_check_unchanged_exits_0(host: Host) -> None:
    baseline = host.tmp_path / "baseline.json"
    saved = _run("--save", str(baseline))
    assert saved.exit_code == 0 and f"saved fingerprint to {baseline}" in saved.stderr
    check = _run("--check", str(baseline))
    assert check.exit_code == 0
    assert check.stdout == f"environment matches {baseline} (all controlled variables equal)\n"


def test_check_catches_driver_and_power_limit_change(host: Host) -> None:
    baseline = host.tmp_path / "baseline.json"
    assert _run("--save", str(baseline)).exit_code == 0
    host.set(driver="560.28.03", power_limit_w=500)
    check = _run("--check", str(baseline))
    assert check.exit_code == 1
    lines = check.stdout.splitlines()
    assert lines[0] == f"3 controlled variable(s) differ from {baseline}:"
    assert [line.split()[0] for line in lines[1:]] == [
        "gpu.devices.0.enforced_power_limit_w",
        "gpu.devices.0.power_limit_w",
        "gpu.driver_version",
    ]
    assert "baseline: 700.0  now: 500.0" in lines[2]
    assert "baseline: 550.54.15  now: 560.28.03" in lines[3]


def test_check_catches_package_version_change_as_json(host: Host) -> None:
    baseline = host.tmp_path / "baseline.json"
    assert _run("--save", str(baseline)).exit_code == 0
    fp = json.loads(baseline.read_text())
    current_numpy = fp["controlled"]["packages"]["numpy"]
    fp["controlled"]["packages"]["numpy"] = "1.0.0"
    baseline.write_text(json.dumps(fp))
    check = _run("--check", str(baseline), "--json")
    assert check.exit_code == 1
    assert json.loads(check.stdout) == {
        "baseline": str(baseline),
        "matches": False,
        "differences": [{"key": "packages.numpy", "baseline": "1.0.0", "current": current_numpy}],
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("{oops", "is not valid JSON"),
        ('{"schema_version": 7}', "schema_version 7"),
    ],
)
def test_bad_baseline_is_one_line_error_exit_2(host: Host, content: str | None, message: str) -> None:
    baseline = host.tmp_path / "baseline.json"
    if content is not None:
        baseline.write_text(content)
    result = CliRunner().invoke(main, ["env", "--check", str(baseline)])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and message in line


def test_noise_warnings_go_to_stderr(host: Host) -> None:
    host.config.write_text(
        CONFIG.format(driver="550.54.15", power_limit_w=700).replace("30", "75") + "process 4242 1\n"
    )
    result = _run("--json")
    assert result.exit_code == 0
    json.loads(result.stdout)  # stdout stays pure JSON
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: GPU 0")]
    assert warnings[0].startswith("warning: GPU 0 is in use by other processes: 4242 ")
    assert warnings[1] == (
        "warning: GPU 0 is at 75 C (> 50 C): still warm from earlier work; let it cool or run a warm-up first"
    )


def test_installed_console_script(host: Host) -> None:
    script = Path(sys.executable).parent / "fastmeter"
    assert script.exists(), f"console script not installed next to {sys.executable}"
    baseline = host.tmp_path / "baseline.json"
    saved = subprocess.run(
        [str(script), "env", "--save", str(baseline), "--json"], check=False, capture_output=True, text=True
    )
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout) == json.loads(baseline.read_text())
    baseline.write_text("not json")
    bad = subprocess.run(
        [str(script), "env", "--check", str(baseline)], check=False, capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    (line,) = bad.stderr.splitlines()
    assert line.startswith(f"Error: fingerprint {baseline} is not valid JSON")
