"""DDP on one node: one sampler per node. Local rank 0 owns a `TrainingRun` that meters every local GPU; the other
ranks keep a meter-less `StepMeter` that records their step boundaries on the same CLOCK_MONOTONIC (system-wide, so
every process on the node shares it). At the end `gather` sends those boundaries to local rank 0 over
torch.distributed (any backend, gloo included), which resolves them on its curve and writes one run directory with
every rank's rows.

    steps = node_step_meter("runs/ddp", targets={"val_acc": 0.9})   # on every rank
    ... steps.step() / steps.epoch() / steps.observe() ...
    gather(steps)                                                   # on every rank: a collective
    if isinstance(steps, TrainingRun): steps.finish()

Each rank's step energy is the node's counted energy over that rank's step: ranks overlap in time, so the run's
`steps_energy_j` sums local rank 0's steps only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.training.run import TrainingRun
from fastmeter.training.steps import StepMeter
from fastmeter.training.target import Target


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer; launch with torchrun or set it to the rank") from None


def node_ranks() -> tuple[int, int, int]:
    """(global rank, local rank, world size) from torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE), else from
    an initialized torch.distributed; (0, 0, 1) for a single process."""
    rank, local, world = _env_int("RANK"), _env_int("LOCAL_RANK"), _env_int("WORLD_SIZE")
    if rank is None or world is None:
        dist = _initialized_dist()
        if dist is None:
            return 0, 0, 1
        rank, world = dist.get_rank(), dist.get_world_size()
    local_world = _env_int("LOCAL_WORLD_SIZE")
    if local_world is not None and local_world != world:
        raise ConfigError(
            f"this job spans several nodes (WORLD_SIZE={world}, LOCAL_WORLD_SIZE={local_world}); fastmeter's DDP "
            "integration meters one node: give each node its own run directory and StepMeter"
        )
    return rank, rank if local is None else local, world


def node_step_meter(
    run_dir: str | os.PathLike[str],
    *,
    targets: Mapping[str, float | tuple[float, str]] | list[Target] | None = None,
    **run_options: Any,
) -> StepMeter:
    """A `TrainingRun` (opened) on local rank 0, a boundary-only `StepMeter` on the other local ranks. With a
    process group up this is a collective: no rank returns before the node's meter runs, so no step of any rank
    begins outside its record."""
    rank, local, _ = node_ranks()
    return step_meter_for(rank, local, run_dir, targets, run_options)


def step_meter_for(
    rank: int,
    local_rank: int,
    run_dir: str | os.PathLike[str],
    targets: Mapping[str, float | tuple[float, str]] | list[Target] | None,
    run_options: Mapping[str, Any],
) -> StepMeter:
    """`node_step_meter` for a rank the caller already knows (the framework callbacks)."""
    dist = _initialized_dist()
    if dist is not None:
        node_ranks()  # refuses a multi-node job before anything is measured
    if local_rank == 0:
        steps: StepMeter = TrainingRun(run_dir, targets=targets, rank=rank, **run_options).open()
    else:
        steps = StepMeter(None, targets=targets, rank=rank)
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier()
    return steps


def gather(steps: StepMeter) -> None:
    """Collective: every rank's closed steps and epochs reach local rank 0 (which resolves and writes them).
    A single process returns at once."""
    dist = _initialized_dist()
    if dist is None or dist.get_world_size() == 1:
        return
    node_ranks()  # refuses a multi-node job
    own = steps.marks()
    rank = dist.get_rank()
    received: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object((rank, own), received, dst=0)
    if received is None:
        return
    if steps.meter is None:
        raise ConfigError("global rank 0 has no meter: create the step meters with node_step_meter() on every rank")
    for other, (steps_, epochs_) in received:
        if other != steps.rank:
            steps.add_rank(other, steps_, epochs_)


def _initialized_dist() -> Any:
    """torch.distributed when a process group is up; None otherwise. A DDP job has imported torch already, so a
    process without it is a single process, not an error."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None
