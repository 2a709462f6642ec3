"""DDP on one node with 2 CPU processes (gloo): local rank 0 meters every emulated GPU, rank 1 only records its step
boundaries; both ranks' rows land in one run directory on one clock, each with the node's analytic energy."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastmeter.training.read import read_training_run
from tests.emulators.nvml import Constant, FakeNvml, GpuSpec, Square
from tests.extras import need

pytestmark = pytest.mark.extras
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_share_one_meter(fake_nvml: FakeNvml, tmp_path: Path) -> None:  # CPU only: GPUs hidden from torch
    need("torch", "lightning")
    gpus = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.011, 0.5)), GpuSpec(waveform=Constant(80.0))])
    env = fake_nvml.subprocess_env()
    env.update(
        CUDA_VISIBLE_DEVICES="",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.training.ddp_worker", str(tmp_path / "run")],
            cwd=REPO,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for r in (0, 1)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    files = read_training_run(tmp_path / "run")
    steps = files.steps.to_pylist()
    by_rank = {r: [s for s in steps if s["rank"] == r] for r in (0, 1)}
    assert [len(by_rank[0]), len(by_rank[1])] == [5, 5] and files.summary["ranks"] == [0, 1]
    for s in steps:
        truth = sum(g.energy_j(s["t0_ns"], s["t1_ns"]) for g in gpus)
        assert abs(s["energy_j"] - truth) <= s["bound_j"], s
        by_gpu = dict(s["energy_by_channel_j"])  # each GPU's share: its own truth within the step's bound
        assert sorted(by_gpu) == ["gpu0", "gpu1"]
        for name, g in zip(("gpu0", "gpu1"), gpus):
            assert abs(by_gpu[name] - g.energy_j(s["t0_ns"], s["t1_ns"])) <= s["bound_j"], (name, s)
    # One clock: the gradient all-reduce inside every step makes the two ranks' steps overlap in time.
    for a, b in zip(by_rank[0], by_rank[1]):
        assert a["t0_ns"] < b["t1_ns"] and b["t0_ns"] < a["t1_ns"]
    assert files.summary["steps"] == 5  # the run's own totals count local rank 0's steps only
    assert (tmp_path / "run" / "samples.arrow").is_file()
