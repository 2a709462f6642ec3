"""Fixtures for the integration tests that need heavy extras."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """scikit-learn's digits written once as train/ and val/ ImageFolders and read back through torchvision:
    (train, val) TensorDatasets."""
    from tests.training.digits import load_image_folder, write_image_folder

    train, val = write_image_folder(tmp_path_factory.mktemp("digits"))
    return load_image_folder(train), load_image_folder(val)


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch counts GPUs through NVML: once fastmeter has loaded the emulator (soname libnvidia-ml.so.1), torch sees
    its GPUs and tries CUDA. These tests train on CPU, so hide them from torch (fastmeter does not read the
    variable)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
