"""Log a training run directory to MLflow: per-step and per-epoch energy as metric histories, the summary and each
energy-to-target as metrics, the verdict as tags, and the run directory itself as an artifact.

    from fastmeter.integrations.mlflow import log_training_run
    with mlflow.start_run():
        ...train with a fastmeter callback writing runs/cnn...
        log_training_run("runs/cnn")

Metric keys (docs/format.md, "MLflow"): `fastmeter.step_energy_j` (MLflow step = the training step's index) and
`fastmeter.epoch_energy_j` (step = epoch), each stamped with the wall time of the interval's end, for the metering
rank's rows; `fastmeter.energy_j`, `fastmeter.energy_bound_j`, `fastmeter.steps_energy_j`,
`fastmeter.energy_per_item_j`; per target `fastmeter.energy_to_target_j.<metric>`,
`fastmeter.energy_to_target_bound_j.<metric>` and `fastmeter.target_step.<metric>`. Unknown values (NaN) are not
logged as numbers: tags `fastmeter.unknown_steps` and `fastmeter.validity` say what is missing and why.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.integrations.extras import require
from fastmeter.training.read import read_training_run

PREFIX = "fastmeter."
# MLflow accepts at most this many metrics in one log_batch call.
BATCH_LIMIT = 1000


def log_training_run(
    run_dir: str | Path,
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    client: Any = None,
    artifact_path: str = "fastmeter",
) -> str:
    """Log `run_dir` into MLflow run `run_id` (default: the active run) through `client` (an MlflowClient; default:
    one for `tracking_uri`). Returns the run id."""
    mlflow = require("mlflow", "mlflow", "fastmeter.integrations.mlflow")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    files = read_training_run(run_dir)
    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ConfigError("no active MLflow run: call inside `with mlflow.start_run():` or pass run_id=")
        run_id = active.info.run_id
    s = files.summary
    mono_ns, real_ns = s["realtime_anchor"]
    rank = s["ranks"][0] if s.get("ranks") else 0

    def wall_ms(t_ns: int) -> int:
        return (real_ns + t_ns - mono_ns) // 1_000_000

    metrics: list[Any] = []
    unknown = 0
    for key, table, index in (("step_energy_j", files.steps, "step"), ("epoch_energy_j", files.epochs, "epoch")):
        rows = table.to_pydict()
        for i, r, t1, e in zip(rows[index], rows["rank"], rows["t1_ns"], rows["energy_j"]):
            if r != rank:
                continue
            if e is None or math.isnan(e):
                unknown += key == "step_energy_j"
                continue
            metrics.append(Metric(PREFIX + key, float(e), wall_ms(t1), int(i)))
    now_ms = int(time.time() * 1000)
    summary = {k: s.get(k) for k in ("energy_j", "energy_bound_j", "steps_energy_j", "energy_per_item_j")}
    for t in s["targets"]:
        summary[f"energy_to_target_j.{t['metric']}"] = t["energy_j"]
        summary[f"energy_to_target_bound_j.{t['metric']}"] = t["bound_j"]
        summary[f"target_step.{t['metric']}"] = t["step"]
    for k, v in summary.items():
        if isinstance(v, (int, float)) and math.isfinite(v):
            metrics.append(Metric(PREFIX + k, float(v), now_ms, 0))
    client = client if client is not None else MlflowClient(tracking_uri)
    for i in range(0, len(metrics), BATCH_LIMIT):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH_LIMIT])
    validity = s.get("validity") or {}
    client.set_tag(run_id, PREFIX + "validity", validity.get("verdict", "unknown"))
    client.set_tag(run_id, PREFIX + "unknown_steps", str(unknown))
    codes = sorted({r["code"] for r in validity.get("reasons", [])})
    if codes:
        client.set_tag(run_id, PREFIX + "reason_codes", ",".join(codes))
    client.log_artifacts(run_id, str(Path(run_dir)), artifact_path)
    return run_id
