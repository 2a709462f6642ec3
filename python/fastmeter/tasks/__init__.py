"""In-process tasks: run a model over a data set while measuring energy per batch (`fastmeter bench task.toml`).

`record.BatchRecorder` is the small public piece other harnesses (training integrations) reuse: it times batches
on a running Meter and reads each one's energy from the Meter's curve. The runner and the task kinds import their
heavy dependencies (torch, torchvision, transformers, pycocotools) only when a task of that kind runs.
"""

from __future__ import annotations

from fastmeter.tasks.record import BATCHES_SCHEMA, Batch, BatchEnergy, BatchRecorder, OpenBatch

__all__ = ["BATCHES_SCHEMA", "Batch", "BatchEnergy", "BatchRecorder", "OpenBatch"]
