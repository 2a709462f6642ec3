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
