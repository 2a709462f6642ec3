"""Shared pytest fixtures (tests/ is a package: helpers import as `tests.emulators.*`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# --- NVML emulator ---
from tests.emulators.nvml import FakeNvml, build_fake_nvml, default_cache_dir
from tests.servers.vllm_server import (
    VllmServer,
    VllmVenv,
    build_model_dir,
    find_vllm_venv,
    running_vllm_server,
)


@pytest.fixture(scope="session")
def fake_nvml_library() -> Path:
    """The compiled NVML emulator, built once per source version."""
    return build_fake_nvml(default_cache_dir())


@pytest.fixture
def fake_nvml(fake_nvml_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """An emulator with one default GPU, wired to fastmeter by env; call `.configure(gpus, ...)` to change it."""
    return FakeNvml(fake_nvml_library, tmp_path / "fake_nvml", monkeypatch.setenv)


# --- end NVML emulator ---


# --- real vLLM server (venv from tests/servers/vllm_env.sh) ---


@pytest.fixture(scope="session")
def vllm_venv() -> VllmVenv:
    """The cached venv with vLLM; skips without it (fails instead when FASTMETER_REQUIRE_VLLM=1)."""
    return find_vllm_venv()


@pytest.fixture(scope="session")
def tiny_model_dir(vllm_venv: VllmVenv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama (config + locally trained tokenizer) that vLLM loads with random weights."""
    return build_model_dir(vllm_venv, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def vllm_server(
    vllm_venv: VllmVenv, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """vLLM's OpenAI server on a free loopback port: `.base_url`, `.model` (served name); stopped at the end."""
    with running_vllm_server(vllm_venv, tiny_model_dir, tmp_path_factory.mktemp("vllm") / "server.log") as s:
        yield s


# --- end real vLLM server ---
# --- recorded run directories for report tests ---
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
