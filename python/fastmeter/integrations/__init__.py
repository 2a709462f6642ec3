"""Integrations with training frameworks and tracking tools. Each module imports its framework lazily: importing
`fastmeter.integrations.lightning` without PyTorch Lightning raises one error naming the extra to install.

- `lightning`: `EnergyCallback` for PyTorch Lightning (`fastmeter[lightning]`).
- `hf`: `EnergyCallback`, a Hugging Face `TrainerCallback` (`fastmeter[hf]`).
- `ddp`: one node of a DDP job: local rank 0 meters every local GPU, the other ranks record step boundaries.
- `mlflow`: log a training run directory to MLflow (`fastmeter[mlflow]`).
- `codecarbon`: export a run directory as CodeCarbon's `emissions.csv` (no dependency).
"""
