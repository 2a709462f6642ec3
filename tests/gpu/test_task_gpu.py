"""On a real NVIDIA GPU: a task run (`fastmeter bench TASK.toml`) whose batches are synchronized fp16 matmuls on
cuda:0 and, where torchvision is installed, ResNet-18 on cuda with random weights. The run is a measurement, every
measured batch has a finite positive energy, and the batches' energy fits inside the run's energy-to-solution."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main

pytestmark = pytest.mark.gpu

WORK = """
import torch

def run(items):
    dev = torch.device("cuda", 0)
    a = torch.randn(4096, 4096, device=dev, dtype=torch.float16)
    for _ in range(40 * len(items)):
        a = torch.matmul(a, a).clamp_(-1, 1)
    torch.cuda.synchronize(dev)
    return None
"""


def _run(tmp_path: Path, task: str) -> tuple[dict, list[dict]]:
    cfg = tmp_path / "task.toml"
    cfg.write_text(f'[task]\n{task}\n\n[bench]\nsources = ["nvml"]\ngpus = [0]\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["bench", str(cfg), "-o", str(out), "--allow-degraded"])
    assert result.exit_code == 0, result.output
    with pa.OSFile(str(out / "batches.arrow")) as f:
        batches = pa.ipc.open_file(f).read_all().to_pylist()
    return json.loads((out / "run.json").read_text()), batches


def _check(run: dict, batches: list[dict]) -> None:
    s = run["summary"]
    assert run["validity"]["verdict"] in ("measured", "degraded"), run["validity"]
    assert 20.0 < s["avg_power_w"] < 2000.0
    measured = [b for b in batches if not b["warmup"]]
    assert all(b["energy_j"] is not None and b["energy_j"] > 0 for b in measured), measured
    inside = math.fsum(b["energy_j"] for b in measured)
    slack = math.fsum(b["energy_bound_j"] for b in measured) + s["energy_bound_j"]
    assert inside <= s["energy_j"] + slack


def test_callable_task_on_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    (tmp_path / "work.py").write_text(WORK)
    run, batches = _run(
        tmp_path,
        f'kind = "callable"\nfunction = "{tmp_path / "work.py"}:run"\nnum_items = 12\n'
        "batch_size = 2\nwarmup_batches = 1",
    )
    _check(run, batches)


def test_resnet18_on_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    image = pytest.importorskip("PIL.Image")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    for c in range(4):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(64):
            pixels = (torch.rand(64, 64, 3) * 255).to(torch.uint8).numpy()
            image.fromarray(pixels).save(tmp_path / "data" / f"c{c}" / f"{i}.png")
    run, batches = _run(
        tmp_path,
        f'kind = "image-classification"\nmodel = "resnet18"\nweights = "random"\n'
        f'data = "{tmp_path / "data"}"\nimage_size = 64\nbatch_size = 32\n'
        'device = "cuda:0"\nprecision = "bf16"',
    )
    _check(run, batches)
    assert run["summary"]["items"] == 256 - 32
