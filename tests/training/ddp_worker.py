"""One rank of a 2-process DDP job on CPU (gloo), run by test_training_ddp: a linear model trained for a few steps
with fastmeter's node step meter; local rank 0 meters the (emulated) GPUs and writes the run directory.
Usage: python -m tests.training.ddp_worker RUN_DIR (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT set)."""

from __future__ import annotations

import sys
import time

import torch
import torch.distributed as dist

from fastmeter.integrations.ddp import gather, node_step_meter
from fastmeter.training import TrainingRun

STEPS = 5


def main(run_dir: str) -> None:
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = node_step_meter(run_dir, sources="nvml")
    with steps.epoch():
        for _ in range(STEPS):
            with steps.step(items=4):
                loss = model(torch.randn(4, 8)).pow(2).mean()
                loss.backward()  # the gradient all-reduce: both ranks leave it together
                opt.step()
                opt.zero_grad()
                time.sleep(0.01 * (1 + dist.get_rank()))  # rank 1's steps run longer, then wait at the next one
    gather(steps)
    if isinstance(steps, TrainingRun):
        steps.finish()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
