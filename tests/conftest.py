"""Shared pytest fixtures (tests/ is a package: helpers import as `tests.emulators.*`)."""

from __future__ import annotations

from pathlib import Path

import pytest

# --- NVML emulator (owner: nvml) ---
from tests.emulators.nvml import FakeNvml, build_fake_nvml, default_cache_dir


@pytest.fixture(scope="session")
def fake_nvml_library() -> Path:
    """The compiled NVML emulator, built once per source version."""
    return build_fake_nvml(default_cache_dir())


@pytest.fixture
def fake_nvml(fake_nvml_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """An emulator with one default GPU, wired to fastmeter by env; call `.configure(gpus, ...)` to change it."""
    return FakeNvml(fake_nvml_library, tmp_path / "fake_nvml", monkeypatch.setenv)


# --- end NVML emulator ---


# --- recorded run directories for report tests (owner: report) ---
@pytest.fixture(scope="session")
def report_runs(fake_nvml_library: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real run directories, recorded once per session: "low" (power x1, with an idle baseline), "high" (power
    x2) and "sweep" (concurrency 1 and 4, a TTFT SLO that both points meet)."""
    from tests.emulators.runs import record_run

    root = tmp_path_factory.mktemp("report_runs")
    with pytest.MonkeyPatch.context() as mp:  # the emulator's environment ends with the recording
        nvml = FakeNvml(fake_nvml_library, root / "fake_nvml", mp.setenv)
        return {
            "low": record_run(root / "low", nvml, extra={"idle-baseline-s": "0.1"}),
            "high": record_run(root / "high", nvml, power_scale=2.0),
            "sweep": record_run(root / "sweep", nvml, extra={"sweep-concurrency": "1,4", "slo-ttft-p99-ms": "5000"}),
        }


# --- end report runs ---
